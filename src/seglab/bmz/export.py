"""Export a seglab model as a bioimage.io model package (spec 0.5, a zip).

The package holds: ``rdf.yaml`` (the description), TorchScript weights for bioimage.io
consumers, test input/output tensors computed by seglab's own model, a cover, the model
card as ``README.md``, and as attachments the model's own ``config.json`` and safetensors
weights (``seglab_config.json``, ``seglab_weights.safetensors``), which is what seglab reads
when it imports the package (:mod:`seglab.bmz.importer`). ``bioimageio.spec`` is not needed
to write a package; when it is installed the package is validated before it is written.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import seglab
from seglab.errors import SeglabError
from seglab.inference.tiling import tile_context
from seglab.models.base import SegmentationModel

FORMAT_VERSION = "0.5.12"
RDF = "rdf.yaml"
SEGLAB_CONFIG = "seglab_config.json"
SEGLAB_WEIGHTS = "seglab_weights.safetensors"
TORCHSCRIPT = "weights_torchscript.pt"
TEST_INPUT = "test_input.npy"
TEST_OUTPUT = "test_output.npy"
COVER = "cover.png"
#: the test tensors as TIFF (without the batch axis), for people and image viewers (spec ``sample_tensor``)
SAMPLE_INPUT = "sample_input.tif"
SAMPLE_OUTPUT = "sample_output.tif"
README = "README.md"
#: ``config.seglab.format``: what :mod:`seglab.bmz.importer` understands
SEGLAB_PACKAGE_FORMAT = 1
#: side of the square test image (at least the model's minimum input size)
TEST_SIZE = 256

POSTPROCESSING = {
    "unet": ("seglab.models.unet.instances_from_maps: foreground = prob > prob_thresh; seeds = h-maxima "
             "(height seed_h) of the smoothed normalised distance above seed_thresh, per connected "
             "foreground component; seeded watershed of -distance within each component; seedless "
             "components are objects of their own; objects under min_area pixels dropped"),
    "stardist": ("seglab.models.stardist.StarDistModel.postprocess: candidates where prob > prob_thresh, "
                 "centres at grid * (row, column); star-convex polygons with ray k at angle 2*pi*k/n_rays "
                 "((dy, dx) = (sin, cos)), distances in input pixels (StarDist's convention); greedy "
                 "polygon NMS by score, overlap = exact intersection area over the smaller polygon's "
                 "area > nms_thresh; kept polygons painted best-last (the better object wins overlaps), "
                 "ids 1..n by score"),
    "maskrcnn": ("in the TorchScript (and seglab.models.detections.paste_detections_iter): detections "
                 "above score_thresh, per-class box NMS at nms_thresh, 28x28 mask probabilities resampled "
                 "bilinearly over each box and thresholded at mask_thresh, pasted by decreasing score "
                 "(higher score wins overlaps); objects keeping fewer than min_area pixels or less than "
                 "half of their own mask dropped; ids 1..n by score. seglab also tiles large images, keeping "
                 "each detection in the tile whose core holds its box centre"),
}


@dataclass
class ExportResult:
    """What :func:`export_bmz` wrote."""

    path: Path
    name: str
    family: str
    license: str
    validated: bool  # checked by bioimageio.spec's validator before writing
    n_objects: int  # objects seglab finds in the test image


# ---------------------------------------------------------------- inputs
def resolve_model(model: SegmentationModel | str | os.PathLike) -> tuple[SegmentationModel, Path | None]:
    """A loaded model and its folder (None for a model given as an object)."""
    if isinstance(model, SegmentationModel):
        return model, None
    from seglab.models.registry import ModelRegistry

    reg = ModelRegistry()
    folder = reg.resolve(model)
    return reg.load(folder), folder


def _min_input_size(model: SegmentationModel) -> int:
    d = max(int(model.size_divisor), 1)
    halo_px = tile_context(model) if model.family != "maskrcnn" else 0
    need = max(2 * halo_px + d, 2 * d, 32)
    return int(math.ceil(need / d) * d)


def example_input(model: SegmentationModel, image: np.ndarray | None = None) -> np.ndarray:
    """The raw test input ``(C, H, W)`` float32: ``image`` (a plane ``(H, W)`` or ``(H, W, C)``
    colour, or ``(C, H, W)``) or a shipped sample (grey fluorescence, or the RGB stained sample for a
    three-channel model), its centre cropped to a square of at most 256 px (or the model's minimum
    input size) and padded to a size the model takes."""
    from seglab.inference.normalize import select_channels

    if image is None:
        from seglab.samples import load_sample

        key = "stained" if model.config.input_channels == 3 else "fluorescence"
        image = load_sample(key)[0]
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and min(arr.shape[0], arr.shape[-1]) > 4):
        raise SeglabError(f"the test image must be one plane, (height, width) or with a channel axis of at most "
                          f"4 entries, not shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[0] == model.config.input_channels and arr.shape[-1] not in (3, 4):
        x = select_channels(arr, model.config.input_channels, channel_axis=0, rgb=False)
    elif arr.ndim == 3:
        x = select_channels(arr, model.config.input_channels, channel_axis=2, rgb=arr.shape[2] in (3, 4))
    else:
        x = select_channels(arr, model.config.input_channels)
    d = max(int(model.size_divisor), 1)
    h, w = x.shape[1:]
    size = max(min(TEST_SIZE, max(h, w)), _min_input_size(model))
    size = int(math.ceil(size / d) * d)
    y0, x0 = max((h - size) // 2, 0), max((w - size) // 2, 0)
    x = x[:, y0 : y0 + size, x0 : x0 + size]
    ph, pw = size - x.shape[1], size - x.shape[2]
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(x.shape[1:]) > max(ph, pw) else "edge")
    return np.ascontiguousarray(x, dtype=np.float32)


def normalised(model: SegmentationModel, raw: np.ndarray) -> np.ndarray:
    """seglab's normalisation of a ``(C, H, W)`` image (per channel percentiles), without the
    mending of edge artifact lines, which the package's ``scale_range`` cannot express."""
    from seglab.inference.normalize import percentile_normalize

    norm = model.config.normalization
    return percentile_normalize(raw, float(norm.get("low", 1.0)), float(norm.get("high", 99.8)), mend=False)


# ---------------------------------------------------------------- our own outputs
@torch.no_grad()
def seglab_outputs(model: SegmentationModel, x: np.ndarray, thresholds: dict[str, float]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """seglab's own model on the normalised test input ``(C, H, W)``: (the package's test output
    ``(1, K, h, w)``, instance labels ``(H, W)`` after seglab's post-processing)."""
    model.network.eval()
    t = torch.from_numpy(x)[None]
    shape = (x.shape[1], x.shape[2])
    if model.family in ("unet", "stardist"):
        maps = model.forward_tiles(t).float().numpy()
        pred = model.postprocess(maps[0], thresholds, shape)
        return maps.astype(np.float32), np.asarray(pred.labels)
    if model.family == "maskrcnn":
        from seglab.models.detections import Detections, paste_detections
        from seglab.models.roi_align import use_torchvision_poolers

        # with the package's RoIAlign (torchvision's; seglab's own gives the same values within
        # float rounding), so that the package's detector reproduces these labels exactly
        net = copy.deepcopy(model.network)
        use_torchvision_poolers(net.maskrcnn.roi_heads)
        d = net.detect(t, thresholds["score_thresh"], thresholds["nms_thresh"])[0]
        labels = paste_detections(Detections.from_torch(d, shape), shape, thresholds).labels
        return labels.astype(np.int32)[None, None], labels
    raise SeglabError(f"models of family {model.family!r} cannot be exported to the BioImage Model Zoo")


def check_reproduced(scripted: torch.jit.ScriptModule, model: SegmentationModel, x: np.ndarray,
                     expected: np.ndarray) -> None:
    """The TorchScript must give the test output seglab's model gave (else the export is refused)."""
    with torch.no_grad():
        out = scripted(torch.from_numpy(x)[None])
    out = (torch.sigmoid(out) if model.family == "unet" else out).numpy()
    if out.shape != expected.shape:
        raise SeglabError(f"the exported network gives shape {out.shape}, seglab's model {expected.shape}")
    if model.family == "maskrcnn":
        bad = int(np.count_nonzero(out != expected))
        if bad > max(10, expected.size // 10_000):
            raise SeglabError(f"the exported Mask R-CNN labels differ from seglab's in {bad} pixels")
    elif not np.allclose(out, expected, rtol=1e-3, atol=1e-3):
        raise SeglabError(f"the exported network differs from seglab's model by up to "
                          f"{float(np.abs(out - expected).max()):.3g}")


# ---------------------------------------------------------------- description
def _space(axis: str, size: Any, **extra: Any) -> dict[str, Any]:
    if extra.get("halo") == 0:  # the spec's halo is at least 1: none at all is no halo field
        del extra["halo"]
    return {"type": "space", "id": axis, "size": size, **extra}


def tensors(model: SegmentationModel) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Spec 0.5 input and output tensor descriptions, and a sentence on the output for the card."""
    cfg = model.config
    d = max(int(model.size_divisor), 1)
    low, high = float(cfg.normalization.get("low", 1.0)), float(cfg.normalization.get("high", 99.8))
    names = ["grey"] if cfg.input_channels == 1 else (
        ["red", "green", "blue"] if cfg.input_channels == 3 else [f"channel{i}" for i in range(cfg.input_channels)])
    size = {"min": _min_input_size(model), "step": d}
    inp = {
        "id": "raw",
        "description": "image pixel values as they are (normalised by the package's preprocessing)",
        "axes": [{"type": "batch"}, {"type": "channel", "channel_names": names},
                 _space("y", dict(size)), _space("x", dict(size))],
        "test_tensor": {"source": TEST_INPUT},
        "sample_tensor": {"source": SAMPLE_INPUT},
        "data": {"type": "float32"},
        "preprocessing": [
            {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
            {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": low, "max_percentile": high,
                                             "eps": 1e-6}},
        ],
    }
    ref = lambda a: {"tensor_id": "raw", "axis_id": a}  # noqa: E731
    if model.family == "unet":
        halo = tile_context(model)
        out = {
            "id": "maps",
            "description": "foreground probability; distance to the object border normalised per object (1: centre)",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["foreground", "distance"]},
                     _space("y", ref("y"), halo=halo), _space("x", ref("x"), halo=halo)],
            "test_tensor": {"source": TEST_OUTPUT},
            "sample_tensor": {"source": SAMPLE_OUTPUT},
            "data": {"type": "float32"},
            "postprocessing": [{"id": "sigmoid"}],
        }
        text = ("`maps` `(batch, channel, y, x)`: foreground probability and normalised distance to the "
                "border (the network's logits, then `sigmoid` in the package); seglab's seeded watershed "
                "turns them into instances.")
    elif model.family == "stardist":
        grid = int(cfg.architecture.get("grid", 2))
        n_rays = int(cfg.architecture.get("n_rays", 32))
        halo = int(math.ceil(tile_context(model) / grid))
        out = {
            "id": "prob_dist",
            "description": f"object probability; distances (input pixels) to the border along {n_rays} rays",
            "axes": [{"type": "batch"},
                     {"type": "channel", "channel_names": ["prob", *(f"dist{k:02d}" for k in range(n_rays))]},
                     _space("y", ref("y"), halo=halo, scale=float(grid)),
                     _space("x", ref("x"), halo=halo, scale=float(grid))],
            "test_tensor": {"source": TEST_OUTPUT},
            "sample_tensor": {"source": SAMPLE_OUTPUT},
            "data": {"type": "float32"},
        }
        text = (f"`prob_dist` `(batch, channel, y, x)` at 1/{grid} of the input size: object probability, then "
                f"{n_rays} radial distances, StarDist's layout and ray convention (rays at 2*pi*k/{n_rays}, "
                f"(dy, dx) = (sin, cos)); seglab's polygon NMS turns them into instances (StarDist's own "
                f"`stardist_postprocessing` with prob_threshold/nms_threshold would too, but it needs the "
                f"`stardist` package, so the package keeps the maps as its output).")
    else:
        out = {
            "id": "labels",
            "description": "instance labels (0 background, objects 1..n by decreasing detection score)",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["labels"]},
                     _space("y", ref("y")), _space("x", ref("x"))],
            "test_tensor": {"source": TEST_OUTPUT},
            "sample_tensor": {"source": SAMPLE_OUTPUT},
            "data": {"type": "int32"},
        }
        text = ("`labels` `(batch, channel, y, x)` int32: instance labels. The TorchScript runs torchvision's "
                "Mask R-CNN and seglab's paste of the masks (thresholds fixed at export). " + torchvision_ops_note())
    return inp, out, text


def torchvision_ops_note() -> str:
    """What a Mask R-CNN package needs of its consumer: the scripted detector calls torchvision's
    compiled operators, which TorchScript looks up when the weights are loaded."""
    from importlib.metadata import version

    return (f"It calls torchvision's compiled operators (`torchvision::nms`, `torchvision::roi_align`; exported "
            f"with torchvision {version('torchvision')}): in Python, `import torchvision` before loading the weights "
            "(bioimageio.core in an environment with torchvision); tools that load TorchScript without "
            "torchvision's operators (deepImageJ, for one) cannot run this package.")


def description(model: SegmentationModel, card: dict[str, Any], inp: dict, out: dict) -> dict[str, Any]:
    """The ``rdf.yaml`` content (plain data)."""
    cfg = model.config
    tol = ({"relative_tolerance": 0.0, "absolute_tolerance": 0.0, "mismatched_elements_per_million": 1000}
           if model.family == "maskrcnn" else
           {"relative_tolerance": 1e-3, "absolute_tolerance": 1e-3, "mismatched_elements_per_million": 100})
    n_params = int(sum(p.numel() for p in model.network.parameters()))
    summary = (cfg.description or f"seglab {cfg.family} model").splitlines()[0]
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": card["name"],
        "description": summary[:1000],
        "authors": [{"name": a} for a in card["authors"]],
        "cite": card["cite"],
        "license": card["license"],
        "documentation": {"source": README},
        "covers": [{"source": COVER}],
        "tags": ["segmentation", "instance-segmentation", "nuclei", "2d", "pytorch", "seglab", cfg.family],
        "inputs": [inp],
        "outputs": [out],
        "weights": {"torchscript": {"source": TORCHSCRIPT, "pytorch_version": torch.__version__.split("+")[0]}},
        "attachments": [{"source": SEGLAB_CONFIG}, {"source": SEGLAB_WEIGHTS}],
        "config": {
            "bioimageio": {
                "reproducibility_tolerance": [{**tol, "output_ids": [out["id"]], "weights_formats": ["torchscript"]}],
                "architecture_type": {"unet": "U-Net", "stardist": "StarDist-style U-Net",
                                      "maskrcnn": "Mask R-CNN (FPN)"}[cfg.family],
                "task": "instance segmentation",
                "target_structure": ["nuclei"],
                "model_parameter_count": n_params,
            },
            "seglab": {
                "format": SEGLAB_PACKAGE_FORMAT,
                "seglab_version": seglab.__version__,
                "family": cfg.family,
                "files": {"config": SEGLAB_CONFIG, "weights": SEGLAB_WEIGHTS},
                "postprocessing": {"output": out["id"], "method": POSTPROCESSING[cfg.family],
                                   "thresholds": model.thresholds()},
                "training_data": card["data"],
                "model": cfg.to_dict(),
            },
        },
    }


def _dump_yaml(data: dict[str, Any]) -> str:
    try:
        import yaml
    except ImportError:  # JSON is YAML too
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _safe_name(name: str) -> str:
    import re

    text = re.sub(r"[^A-Za-z0-9 _().-]+", "-", f"seglab {name}").strip(" -")
    return text[:128] if len(text) >= 5 else f"seglab model {name}"[:128]


# ---------------------------------------------------------------- validation
def validate_package(path: str | os.PathLike) -> None:
    """Validate a package with ``bioimageio.spec`` (format and files, no network); a
    :class:`SeglabError` with the validator's errors when it is not valid."""
    from seglab.bmz.validation import offline_validation

    offline_validation(path)


# ---------------------------------------------------------------- export
def export_bmz(
    model: SegmentationModel | str | os.PathLike,
    path: str | os.PathLike,
    *,
    image: np.ndarray | None = None,
    authors: list[str] | None = None,
    license: str | None = None,
    overwrite: bool = False,
    validate: bool | None = None,
) -> ExportResult:
    """Write ``model`` (object, name or folder) as a bioimage.io package to ``path`` (a ``.zip``).

    ``image``: the test image (default: a shipped sample); ``authors``: names (default: the
    napari-seglab developers); ``license``: SPDX id (default: from the training data: CC BY-NC-SA 4.0
    when MoNuSeg is in it, else CC0); ``validate``: check with ``bioimageio.spec`` before writing
    (default: when it is installed). The file is written atomically.
    """
    from safetensors.torch import save as save_safetensors

    from seglab.bmz import card as cards
    from seglab.bmz.cover import render_cover
    from seglab.bmz.torchscript import export_torchscript, save_torchscript
    from seglab.io.atomic import atomic_file

    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise SeglabError(f"a bioimage.io package is a .zip file; give a name ending in .zip, not {path.name!r}")
    if path.exists() and not overwrite:
        raise SeglabError(f"{path} already exists; choose another name or allow overwriting (--overwrite)")
    if path.is_dir():
        raise SeglabError(f"{path} is a folder; give the path of the .zip file to write")
    model, folder = resolve_model(model)
    if folder is not None:  # the name seglab lists it under (a folder may hold a config of another name)
        model.config.name = folder.name
    if model.family not in POSTPROCESSING:
        raise SeglabError(f"models of family {model.family!r} cannot be exported to the BioImage Model Zoo: "
                          f"seglab exports unet, stardist and maskrcnn models")
    if validate is None:
        try:
            import bioimageio.spec  # noqa: F401
            validate = True
        except ImportError:
            validate = False
    cfg = model.config
    thresholds = model.thresholds()
    data = cards.training_data(cfg)
    licence = license or cards.license_for(data)
    card_info = {"name": _safe_name(cfg.name), "authors": list(authors or cards.DEFAULT_AUTHORS),
                 "license": licence, "cite": cards.citations(cfg.family, data), "data": data}

    raw = example_input(model, image)
    x = normalised(model, raw)
    expected, labels = seglab_outputs(model, x, thresholds)
    if model.family == "maskrcnn" and not labels.any():
        raise SeglabError(f"{cfg.name!r} finds no objects in the test image, and a bioimage.io package needs a "
                          f"test output with objects: give a test image with objects (--image, or image=)")
    scripted = export_torchscript(model, torch.from_numpy(x)[None], thresholds)
    check_reproduced(scripted, model, x, expected)
    inp, out, out_text = tensors(model)
    rdf = description(model, card_info, inp, out)
    text = cards.existing_card(folder, cfg.name) or cards.generated_card(cfg, data)
    text = text.rstrip() + "\n" + cards.package_notes(cfg, out_text, licence, tile_context(model))

    tmp = Path(tempfile.mkdtemp(prefix=".seglab-bmz-"))
    try:
        np.save(tmp / TEST_INPUT, raw[None].astype(np.float32))
        np.save(tmp / TEST_OUTPUT, expected)
        import tifffile

        tifffile.imwrite(tmp / SAMPLE_INPUT, raw)
        tifffile.imwrite(tmp / SAMPLE_OUTPUT, expected[0])
        save_torchscript(scripted, tmp / TORCHSCRIPT)
        render_cover(raw, labels, tmp / COVER)
        (tmp / README).write_text(text, encoding="utf-8")
        (tmp / SEGLAB_CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.network.state_dict().items()}
        (tmp / SEGLAB_WEIGHTS).write_bytes(save_safetensors(state, metadata={"family": cfg.family, "name": cfg.name}))
        (tmp / RDF).write_text(_dump_yaml(rdf), encoding="utf-8")
        with atomic_file(path, suffix=".zip") as target:
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name in (RDF, README, COVER, TEST_INPUT, TEST_OUTPUT, SAMPLE_INPUT, SAMPLE_OUTPUT, TORCHSCRIPT,
                             SEGLAB_CONFIG, SEGLAB_WEIGHTS):
                    zf.write(tmp / name, arcname=name)
            if validate:
                validate_package(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(path, cfg.name, cfg.family, licence, bool(validate), int(labels.max()) if labels.size else 0)


def read_rdf(zf: zipfile.ZipFile) -> dict[str, Any]:
    """The parsed ``rdf.yaml`` (or ``bioimageio.yaml``) of an open package."""
    names = set(zf.namelist())
    member = next((n for n in (RDF, "bioimageio.yaml") if n in names), None)
    if member is None:
        raise SeglabError("not a bioimage.io model package: it has no rdf.yaml")
    raw = zf.read(member).decode("utf-8", errors="replace")
    try:
        import yaml

        data = yaml.safe_load(io.StringIO(raw))
    except ImportError:
        data = json.loads(raw)
    except Exception as e:  # noqa: BLE001  yaml's errors have no common public base we import here
        raise SeglabError(f"the package's {member} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SeglabError(f"the package's {member} is not a description (a YAML mapping)")
    return data
