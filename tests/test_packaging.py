"""The root napari.yaml is the manifest napari loads, from an editable and from a wheel install."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_is_the_root_file_and_validates():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest("napari-seglab")
    import seglab

    pkg_yaml = Path(seglab.__file__).parent / "napari.yaml"
    assert pkg_yaml.resolve() == (ROOT / "napari.yaml").resolve()
    r = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-seglab"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {c.id for c in mf.contributions.commands} >= {"napari-seglab.segment_widget", "napari-seglab.get_reader",
                                                        "napari-seglab.write_labels"}


@pytest.mark.slow
def test_wheel_carries_manifest_models_and_samples(tmp_path):
    pytest.importorskip("build")
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("seglab/napari.yaml") == (ROOT / "napari.yaml").read_bytes()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        assert "napari-seglab = seglab:napari.yaml" in z.read(entry).decode()
    assert "seglab/models/builtin/unet-nuclei/config.json" in names
    assert "seglab/models/builtin/unet-nuclei/weights.safetensors" in names
    for part in ("images", "labels"):
        assert sum(n.startswith(f"seglab/models/replay/dsb2018-train/{part}/") for n in names) == 54
    assert "seglab/models/replay/dsb2018-train/README.md" in names
    assert sum(n.startswith("seglab/sample_data/images/") for n in names) == 4
    assert sum(n.startswith("seglab/sample_data/labels/") for n in names) == 4
    # the built-in weights stay small enough to ship
    assert (ROOT / "src/seglab/models/builtin/unet-nuclei/weights.safetensors").stat().st_size <= 10 * 2**20
