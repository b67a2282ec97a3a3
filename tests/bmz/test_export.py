"""bioimage.io packages of all three families: valid for bioimageio.spec, reproduced by bioimageio.core."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("bioimageio.spec")

from seglab.bmz import export_bmz  # noqa: E402
from seglab.bmz.export import TEST_INPUT, TEST_OUTPUT, TORCHSCRIPT, read_rdf  # noqa: E402
from seglab.bmz.validation import core_reproduce, core_test, offline_validation  # noqa: E402
from seglab.errors import SeglabError  # noqa: E402
from seglab.inference.tiling import tile_context  # noqa: E402
from seglab.models.storage import load_model  # noqa: E402
from bmz_helpers import untrained_star  # noqa: E402


def _rdf(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return read_rdf(zf)


def _npy(path, name) -> np.ndarray:
    import io

    with zipfile.ZipFile(path) as zf:
        return np.load(io.BytesIO(zf.read(name)), allow_pickle=False)


def _assert_core_reproduces(path) -> None:
    summary = core_test(path)
    failed = [d.name for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed


def test_unet_package_is_valid_and_bioimageio_core_reproduces_its_test_output(tmp_path, tiny_model):
    result = export_bmz(tiny_model, tmp_path / "unet.zip")
    assert result.validated and result.family == "unet"
    descr = offline_validation(result.path)  # bioimageio.spec's own validator, files and hashes checked
    assert descr.name == "seglab tiny-unet"
    rdf = _rdf(result.path)
    assert rdf["format_version"].startswith("0.5.")
    assert rdf["weights"]["torchscript"]["source"] == "weights_torchscript.pt"
    pre = rdf["inputs"][0]["preprocessing"][-1]
    assert pre == {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 1.0,
                                                    "max_percentile": 99.8, "eps": 1e-6}}
    assert rdf["outputs"][0]["postprocessing"] == [{"id": "sigmoid"}]
    seglab_cfg = rdf["config"]["seglab"]
    assert seglab_cfg["model"]["architecture"] == tiny_model.config.architecture
    assert "watershed" in seglab_cfg["postprocessing"]["method"]
    # the test output is seglab's own model on the test input (its normalisation, its maps)
    from seglab.inference.normalize import percentile_normalize

    x = percentile_normalize(_npy(result.path, TEST_INPUT)[0])
    import torch

    with torch.no_grad():
        maps = tiny_model.forward_tiles(torch.from_numpy(x)[None]).numpy()
    np.testing.assert_allclose(_npy(result.path, TEST_OUTPUT), maps, atol=1e-6)
    _assert_core_reproduces(result.path)


def test_stardist_package_is_reproduced_and_its_card_names_data_licence_and_citations(tmp_path):
    result = export_bmz(untrained_star(), tmp_path / "star.zip", authors=["A. Person", "B. Person"],
                        license="CC-BY-4.0")
    assert result.n_objects > 0
    rdf = _rdf(result.path)
    assert [a["name"] for a in rdf["authors"]] == ["A. Person", "B. Person"]
    assert rdf["license"] == "CC-BY-4.0"
    out = rdf["outputs"][0]
    assert out["axes"][2]["scale"] == 2.0 and len(out["axes"][1]["channel_names"]) == 1 + 16
    assert any("Schmidt" in c["text"] for c in rdf["cite"])
    with zipfile.ZipFile(result.path) as zf:
        readme = zf.read("README.md").decode()
        assert zf.read("cover.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tiny-star" in readme and "config.seglab" in readme
    _assert_core_reproduces(result.path)


@pytest.mark.slow
def test_maskrcnn_package_gives_seglab_labels_and_is_reproduced(tmp_path):
    from maskrcnn_helpers import tiny_maskrcnn

    # untrained, its scores and mask probabilities sit near 0.5, above or below it by the draw of
    # the initial weights: thresholds below both keep a few hundred detections whatever the draw
    torch.manual_seed(0)
    model = tiny_maskrcnn(thresholds={"score_thresh": 0.1, "mask_thresh": 0.2, "nms_thresh": 0.5, "min_area": 5.0})
    result = export_bmz(model, tmp_path / "mrcnn.zip")
    labels = _npy(result.path, TEST_OUTPUT)
    assert labels.dtype == np.int32 and labels.shape == (1, 1, 256, 256)
    assert labels.max() == result.n_objects > 0
    assert _rdf(result.path)["outputs"][0]["id"] == "labels"
    # bioimageio.core's pipeline (scale_range, the scripted detector and paste) gives seglab's labels
    reproduced, expected = core_reproduce(result.path)["labels"]
    np.testing.assert_array_equal(reproduced, labels)
    np.testing.assert_array_equal(expected, labels)
    # ... in a process that imported torchvision (as this one has); its card says so, and without
    # torchvision's operators the weights do not load (what the card tells deepImageJ users)
    assert "`import torchvision` before loading" in zipfile.ZipFile(result.path).read("README.md").decode()
    weights = tmp_path / "weights.pt"
    weights.write_bytes(zipfile.ZipFile(result.path).read(TORCHSCRIPT))
    for first, loads in (("", False), ("import torchvision; ", True)):
        run = subprocess.run([sys.executable, "-c", f"{first}import torch; torch.jit.load({str(weights)!r})"],
                             capture_output=True, text=True)
        assert (run.returncode == 0) == loads, run.stderr[-500:]
        assert loads or "torchvision::" in run.stderr


def test_builtin_licences_and_data_citations_come_from_the_training_data():
    from seglab.bmz import card
    from seglab.models.registry import BUILTIN_DIR
    from seglab.models.storage import read_config

    he = card.training_data(read_config(BUILTIN_DIR / "stardist-he"))
    assert he["datasets"] == ["dsb2018", "monuseg"] and card.license_for(he) == "CC-BY-NC-SA-4.0"
    cites = card.citations("stardist", he)
    assert cites[0]["doi"] == "10.1038/s41592-019-0612-7" and cites[1]["doi"] == "10.1109/TMI.2017.2677499"
    for name in ("unet-nuclei", "stardist-nuclei", "maskrcnn-nuclei"):
        data = card.training_data(read_config(BUILTIN_DIR / name))
        assert data["datasets"] == ["dsb2018"] and card.license_for(data) == "CC0-1.0", name
    # a model fine-tuned from stardist-he inherits the non-commercial licence through its parent
    cfg = read_config(BUILTIN_DIR / "stardist-nuclei")
    cfg.name, cfg.description = "mine", "fine-tuned"
    cfg.training = {"parent": {"name": "stardist-he"}, "pairs": [{"image": "a"}]}
    data = card.training_data(cfg)
    assert "monuseg" in data["datasets"] and data["user_images"] and card.license_for(data) == "CC-BY-NC-SA-4.0"


def test_builtin_model_card_is_the_package_documentation():
    from seglab.bmz.card import existing_card
    from seglab.models.registry import BUILTIN_DIR

    text = existing_card(BUILTIN_DIR / "stardist-he", "stardist-he")
    assert text is not None and text.startswith("# Model card: `stardist-he`") and "CC BY-NC-SA" in text


def test_export_refuses_bad_outputs_and_writes_nothing_on_failure(tmp_path, tiny_model, monkeypatch):
    with pytest.raises(SeglabError, match="ends in .zip|ending in .zip"):
        export_bmz(tiny_model, tmp_path / "model.yaml")
    existing = tmp_path / "there.zip"
    existing.write_bytes(b"keep")
    with pytest.raises(SeglabError, match="already exists"):
        export_bmz(tiny_model, existing)
    assert existing.read_bytes() == b"keep"
    with pytest.raises(SeglabError, match="unknown model"):
        export_bmz("no-such-model", tmp_path / "x.zip")

    from seglab.bmz import cover

    def broken(*a, **k):
        raise SeglabError("cover failed")

    monkeypatch.setattr(cover, "render_cover", broken)
    with pytest.raises(SeglabError, match="cover failed"):
        export_bmz(tiny_model, existing, overwrite=True)
    assert existing.read_bytes() == b"keep"  # atomic: the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.zip"]  # and no temporary left behind


def test_invalid_package_is_refused_before_it_is_written(tmp_path, tiny_model, monkeypatch):
    from seglab.bmz import export

    original = export.description

    def bad_licence(*args, **kwargs):
        rdf = original(*args, **kwargs)
        rdf["license"] = "not-a-licence"
        return rdf

    monkeypatch.setattr(export, "description", bad_licence)
    with pytest.raises(SeglabError, match="bioimageio.spec found the package invalid.*license"):
        export_bmz(tiny_model, tmp_path / "bad.zip")
    assert not (tmp_path / "bad.zip").exists()


def test_package_config_json_is_the_models_config(tmp_path, tiny_model_dir):
    result = export_bmz(str(tiny_model_dir), tmp_path / "p.zip")
    with zipfile.ZipFile(result.path) as zf:
        packed = json.loads(zf.read("seglab_config.json"))
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    assert packed == load_model(tiny_model_dir).config.to_dict() == rdf["config"]["seglab"]["model"]


def test_given_test_image_is_used_and_a_stack_is_refused(tmp_path):
    from seglab.models.storage import new_model
    from seglab.samples import load_sample

    model = new_model("unet", "no-context", architecture={"widths": [4, 8], "convs_per_block": 1}, tile_context=0)
    rgb = load_sample("stained")[0]  # (256, 320, 3) colour: luma for a one-channel model
    result = export_bmz(model, tmp_path / "p.zip", image=rgb)
    raw = _npy(result.path, TEST_INPUT)
    luma = rgb[:, 32:288].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(raw[0, 0], luma, rtol=1e-5)
    # config.tile_context 0, but the halo is the context the engine gives each tile: the receptive radius
    assert _rdf(result.path)["outputs"][0]["axes"][2]["halo"] == tile_context(model) >= model.network.receptive_radius() > 0
    with pytest.raises(SeglabError, match="one plane"):
        export_bmz(model, tmp_path / "q.zip", image=np.zeros((5, 64, 64), np.uint8))


def test_the_package_readme_says_when_seglab_fills_black_padding():
    from seglab.bmz.card import package_notes
    from seglab.models.config import ModelConfig

    he = ModelConfig(name="he", family="stardist", input_channels=3,
                     normalization={"kind": "percentile", "low": 1.0, "high": 99.8, "fill_black": True})
    grey = ModelConfig(name="grey", family="stardist")
    bright = ModelConfig(name="bf", family="stardist", normalization={"low": 1.0, "high": 99.8, "fill_black": "brightfield"})
    assert "seglab fills black padding (pixels" in package_notes(he, "maps", "CC0-1.0", 32)
    assert "seglab fills black padding beside a bright (brightfield) background" in package_notes(bright, "maps", "CC0-1.0", 32)
    assert "black padding" not in package_notes(grey, "maps", "CC0-1.0", 32)


def test_the_package_readme_says_when_seglab_ignores_bright_debris():
    from seglab.bmz.card import package_notes
    from seglab.models.config import ModelConfig

    grey = ModelConfig(name="grey", family="stardist", normalization={"low": 1.0, "high": 99.8, "bright_outliers": True})
    assert "lowers the high percentile when bright debris" in package_notes(grey, "maps", "CC0-1.0", 32)
    plain = ModelConfig(name="plain", family="stardist")
    assert "debris" not in package_notes(plain, "maps", "CC0-1.0", 32)
    assert "too few" not in package_notes(grey, "maps", "CC0-1.0", 32)
    sparse = ModelConfig(name="sparse", family="stardist", normalization={"low": 1.0, "high": 99.8, "sparse_objects": True})
    text = package_notes(sparse, "maps", "CC0-1.0", 32)
    assert "raises the high percentile when the objects are too few" in text and "debris" not in text


def test_the_package_readme_says_when_seglab_smooths_noisy_planes():
    from seglab.bmz.card import package_notes
    from seglab.models.config import ModelConfig

    grey = ModelConfig(name="grey", family="stardist", denoise={"steps": [[0.05, 0.7], [0.09, 1.5]]})
    text = package_notes(grey, "maps", "CC0-1.0", 32)
    assert "seglab smooths a noisy (low-light) plane" in text
    assert "sigma 0.7 px from noise 0.05, sigma 1.5 px from noise 0.09" in text
    assert "smooths" not in package_notes(ModelConfig(name="he", family="stardist"), "maps", "CC0-1.0", 32)
