"""Importing a package seglab exported: the same model back (round trip), never code, clear refusals."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import yaml

from seglab.bmz import export_bmz, import_bmz, load_bmz
from seglab.bmz.export import TEST_INPUT
from seglab.errors import SeglabError
from seglab.inference import segment
from seglab.models.storage import load_model
from bmz_helpers import untrained_star


@pytest.fixture(scope="module")
def star_package(tmp_path_factory):
    """A package of a tiny StarDist-style model that finds objects in its test image, and the model."""
    model = untrained_star()
    path = tmp_path_factory.mktemp("bmz") / "star.zip"
    export_bmz(model, path, validate=False)
    return path, model


def _rewrite(src, dst, drop=(), replace=None):
    """Copy a package, leaving out members ``drop`` and replacing members by ``replace`` {name: bytes}."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            zout.writestr(name, replace.get(name, zin.read(name)))
    return dst


def _rdf_bytes(path, change):
    with zipfile.ZipFile(path) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    change(rdf)
    return yaml.safe_dump(rdf).encode()


def test_round_trip_gives_the_same_labels_on_the_test_image(star_package, tmp_path):
    path, original = star_package
    folder = import_bmz(path, "star-back", models_dir=tmp_path / "models")
    assert folder == tmp_path / "models" / "star-back"
    back = load_model(folder)
    assert back.config.name == "star-back" and back.config.training["imported_from_bmz"]["model"] == "tiny-star"
    assert back.config.architecture == original.config.architecture
    assert back.config.thresholds == original.config.thresholds
    with zipfile.ZipFile(path) as zf:
        image = np.load(io.BytesIO(zf.read(TEST_INPUT)))[0, 0]
    expected = segment(original, image, amp=False, diameter=None).labels
    assert expected.max() > 1
    np.testing.assert_array_equal(segment(back, image, amp=False, diameter=None).labels, expected)


def test_import_reads_safetensors_and_config_never_the_torchscript(star_package, tmp_path, monkeypatch):
    path, original = star_package
    import torch

    def no_torchscript(*a, **k):
        raise AssertionError("the import must not load TorchScript")

    monkeypatch.setattr(torch.jit, "load", no_torchscript)
    stripped = _rewrite(path, tmp_path / "no-ts.zip", drop=("weights_torchscript.pt", "test_output.npy"))
    model = load_bmz(stripped)
    for k, v in original.network.state_dict().items():
        assert torch.equal(model.network.state_dict()[k], v), k


def test_import_refuses_names_in_use(star_package, tmp_path):
    path, _ = star_package
    models = tmp_path / "models"
    import_bmz(path, models_dir=models)  # the model's own name
    with pytest.raises(SeglabError, match="already exists"):
        import_bmz(path, models_dir=models)
    assert import_bmz(path, models_dir=models, overwrite=True) == models / "tiny-star"
    with pytest.raises(SeglabError, match="built-in"):
        import_bmz(path, "unet-nuclei", models_dir=models)
    with pytest.raises(SeglabError, match="not a usable model name"):
        import_bmz(path, "../escape", models_dir=models)


@pytest.mark.parametrize("case, message", [
    ("text", "not a zip file"),
    ("folder", "is a folder"),
    ("missing", "does not exist"),
    ("no-rdf", "no rdf.yaml"),
    ("not-yaml", "not valid YAML"),
    ("not-seglab", "not exported by seglab"),
    ("spec-0.4", "spec 0.4"),
    ("dataset", "not a model"),
    ("future-format", "package format 99"),
    ("no-weights", "lacks the file 'seglab_weights.safetensors'"),
    ("bad-weights", "cannot read seglab_weights.safetensors"),
    ("bad-config", "seglab_config.json is not valid JSON"),
    ("wrong-shapes", "do not fit the architecture"),
])
def test_bad_packages_give_one_clear_error(star_package, tmp_path, case, message):
    path, _ = star_package
    bad = tmp_path / "bad.zip"
    if case == "text":
        bad.write_text("hello")
    elif case == "folder":
        bad.mkdir()
    elif case == "missing":
        bad = tmp_path / "nothing.zip"
    elif case == "no-rdf":
        _rewrite(path, bad, drop=("rdf.yaml",))
    elif case == "not-yaml":
        _rewrite(path, bad, replace={"rdf.yaml": b"a: [unclosed"})
    elif case == "not-seglab":
        _rewrite(path, bad, replace={"rdf.yaml": _rdf_bytes(path, lambda r: r["config"].pop("seglab"))})
    elif case == "spec-0.4":
        _rewrite(path, bad, replace={"rdf.yaml": _rdf_bytes(path, lambda r: r.update(format_version="0.4.10"))})
    elif case == "dataset":
        _rewrite(path, bad, replace={"rdf.yaml": _rdf_bytes(path, lambda r: r.update(type="dataset"))})
    elif case == "future-format":
        _rewrite(path, bad, replace={"rdf.yaml": _rdf_bytes(path, lambda r: r["config"]["seglab"].update(format=99))})
    elif case == "no-weights":
        _rewrite(path, bad, drop=("seglab_weights.safetensors",))
    elif case == "bad-weights":
        _rewrite(path, bad, replace={"seglab_weights.safetensors": b"\x00" * 64})
    elif case == "bad-config":
        _rewrite(path, bad, replace={"seglab_config.json": b"{not json"})
    elif case == "wrong-shapes":
        with zipfile.ZipFile(path) as zf:
            cfg = json.loads(zf.read("seglab_config.json"))
        cfg["architecture"]["head_width"] = 12
        _rewrite(path, bad, replace={"seglab_config.json": json.dumps(cfg).encode()})
    with pytest.raises(SeglabError, match=message):
        load_bmz(bad)
