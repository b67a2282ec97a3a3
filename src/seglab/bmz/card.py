"""What a package says about its model: training data, licence, citations, authors, model card.

The training data are read from the model's provenance (``config.training``): the
built-ins name DSB2018 (CC0) and MoNuSeg (CC BY-NC-SA 4.0); a fine-tuned model inherits
its parent's data (``training.parent``, followed as far as the parent folder exists) and
adds the user's own images and, with replay, the shipped DSB2018 crops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seglab.inference.normalize import OUTLIER_RATIO, SPARSE_SHARE
from seglab.models.config import ModelConfig

#: data sets seglab knows: key -> (what, licence (SPDX), citation text, DOI)
DATASETS: dict[str, tuple[str, str, str, str]] = {
    "dsb2018": (
        "2018 Data Science Bowl (DSB2018) stage-1 training images, corrected annotations",
        "CC0-1.0",
        "Caicedo, J. C. et al. Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl. "
        "Nature Methods 16, 1247-1253 (2019).",
        "10.1038/s41592-019-0612-7",
    ),
    "monuseg": (
        "MoNuSeg 2018 training tiles (Kumar split; H&E tissue at 40x, TCGA)",
        "CC-BY-NC-SA-4.0",
        "Kumar, N. et al. A dataset and a technique for generalized nuclear segmentation for computational "
        "pathology. IEEE Transactions on Medical Imaging 36(7), 1550-1560 (2017).",
        "10.1109/TMI.2017.2677499",
    ),
}

#: method papers per family: (text, DOI)
METHODS: dict[str, tuple[str, str]] = {
    "unet": ("Ronneberger, O., Fischer, P. & Brox, T. U-Net: convolutional networks for biomedical image "
             "segmentation. MICCAI 2015, LNCS 9351, 234-241.", "10.1007/978-3-319-24574-4_28"),
    "stardist": ("Schmidt, U., Weigert, M., Broaddus, C. & Myers, G. Cell detection with star-convex polygons. "
                 "MICCAI 2018, LNCS 11071, 265-273.", "10.1007/978-3-030-00934-2_30"),
    "maskrcnn": ("He, K., Gkioxari, G., Dollar, P. & Girshick, R. Mask R-CNN. ICCV 2017, 2980-2988.",
                 "10.1109/ICCV.2017.322"),
}

#: the licence of a model whose training data carry no restriction
OPEN_LICENSE = "CC0-1.0"
#: the licence a model trained on MoNuSeg must carry (share-alike, non-commercial)
NC_LICENSE = "CC-BY-NC-SA-4.0"
DEFAULT_AUTHORS = ["napari-seglab developers"]


def _parent_config(config: ModelConfig) -> ModelConfig | None:
    """The config of the model ``config`` was fine-tuned from, if its folder still exists."""
    from seglab.errors import SeglabError
    from seglab.models.registry import ModelRegistry
    from seglab.models.storage import read_config

    parent = config.training.get("parent") if isinstance(config.training, dict) else None
    if not isinstance(parent, dict):
        return None
    for where in (parent.get("path"), parent.get("name")):
        if not isinstance(where, str) or not where:
            continue
        try:
            folder = Path(where) if Path(where).is_dir() else ModelRegistry().resolve(where)
            return read_config(folder)
        except (SeglabError, OSError):
            continue
    return None


def training_data(config: ModelConfig, depth: int = 8) -> dict[str, Any]:
    """``{"datasets": [keys of DATASETS], "user_images": bool, "parents": [names]}`` from the provenance."""
    found: list[str] = []
    user = False
    parents: list[str] = []
    cfg: ModelConfig | None = config
    for _ in range(depth):
        if cfg is None:
            break
        text = json.dumps({"name": cfg.name, "description": cfg.description, "training": cfg.training}).lower()
        if "monuseg" in text or cfg.name == "stardist-he":
            found.append("monuseg")
        if "dsb2018" in text or "data science bowl" in text:
            found.append("dsb2018")
        if isinstance(cfg.training, dict) and cfg.training.get("pairs"):
            user = True
        parent = cfg.training.get("parent") if isinstance(cfg.training, dict) else None
        if isinstance(parent, dict) and parent.get("name"):
            parents.append(str(parent["name"]))
        cfg = _parent_config(cfg)
    return {"datasets": [k for k in DATASETS if k in found], "user_images": user, "parents": parents}


def license_for(data: dict[str, Any]) -> str:
    """The most restrictive licence among the training data (MoNuSeg: CC BY-NC-SA 4.0, else CC0)."""
    return NC_LICENSE if "monuseg" in data["datasets"] else OPEN_LICENSE


def citations(family: str, data: dict[str, Any]) -> list[dict[str, str]]:
    """Spec ``cite`` entries: the training data sets, then the family's method paper."""
    out = [{"text": DATASETS[k][2], "doi": DATASETS[k][3]} for k in data["datasets"]]
    if family in METHODS:
        out.append({"text": METHODS[family][0], "doi": METHODS[family][1]})
    return out


def existing_card(folder: Path | None, name: str) -> str | None:
    """A model card written for the model: ``README.md``/``MODEL_CARD.md`` in its folder, or for a
    built-in ``docs/models/<name>.md`` of a source checkout."""
    candidates = []
    if folder is not None:
        candidates += [folder / "README.md", folder / "MODEL_CARD.md"]
        from seglab.models.registry import BUILTIN_DIR

        if folder.resolve().parent == BUILTIN_DIR.resolve():
            candidates.append(Path(__file__).resolve().parents[3] / "docs" / "models" / f"{name}.md")
    for p in candidates:
        if p.is_file():
            try:
                return p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return None


def _scores_line(config: ModelConfig) -> str:
    s = config.scores if isinstance(config.scores, dict) else {}
    at50 = s.get("thresholds", {}).get("0.50") if isinstance(s.get("thresholds"), dict) else None
    if isinstance(at50, dict) and "ap" in at50:
        return (f"AP@0.5 {at50['ap']:.3f}, F1 {at50.get('f1', float('nan')):.3f} on {s.get('dataset', 'its validation data')}"
                f" ({s.get('n_images', '?')} images)")
    return "no validation score recorded"


def generated_card(config: ModelConfig, data: dict[str, Any]) -> str:
    """A model card made from the config, for models that have none."""
    lines = [f"# Model card: `{config.name}`", "", config.description or f"A seglab {config.family} model.", "",
             "## What it is", f"- Family `{config.family}`; input channels: {config.input_channels}.",
             f"- Architecture: `{json.dumps(config.architecture)}`.",
             f"- Thresholds: `{json.dumps(config.thresholds)}`.",
             "- Object size it was trained on (median equivalent diameter): "
             + (f"{config.object_diameter:g} px." if config.object_diameter else "not recorded."),
             f"- Validation: {_scores_line(config)}.", "", "## Data"]
    for k in data["datasets"]:
        lines.append(f"- {DATASETS[k][0]} ({DATASETS[k][1]}). {DATASETS[k][2]}")
    if data["user_images"]:
        lines.append("- The user's own annotated images (see `config.json`, `training.pairs`); the package's "
                     "licence follows the data seglab knows of, so state your images' terms with "
                     "`seglab export-bmz --license` where they differ.")
    if data["parents"]:
        lines.append(f"- Fine-tuned from: {' <- '.join(data['parents'])}.")
    training = {k: v for k, v in config.training.items() if k not in ("pairs",)} if isinstance(config.training, dict) else {}
    lines += ["", "## Training", "```json", json.dumps(training, indent=2, default=str)[:6000], "```"]
    return "\n".join(lines) + "\n"


def _padding_note(config: ModelConfig) -> str:
    """For models that fill black padding before normalising (``normalization["fill_black"]``)."""
    mode = config.normalization.get("fill_black")
    if not mode:
        return ""
    where = " beside a bright (brightfield) background" if mode == "brightfield" else ""
    return (f"\n  Before that, seglab fills black padding{where} (pixels black in every channel: a scanner's "
            "out-of-scan area, a rotated tile's corners) with the slide's glass colour; the package "
            "does not: fill it yourself for such images.")


def _outlier_note(config: ModelConfig) -> str:
    """For models whose high percentile ignores bright debris (``normalization["bright_outliers"]``)
    or the noise of a field with few objects (``normalization["sparse_objects"]``)."""
    notes = []
    if config.normalization.get("sparse_objects"):
        notes.append("On a dark background seglab raises the high percentile when the objects are too few "
                     f"to set it (on less than ~0.2 % of the image): to {SPARSE_SHARE:g}x the bright end of "
                     "what stands out of the background, above the low one "
                     "(`seglab.inference.normalize.sparse_robust_high`).")
    if config.normalization.get("bright_outliers"):
        notes.append("On a dark background seglab lowers the high percentile when bright debris (dust, dead "
                     f"cells) sets it: to {OUTLIER_RATIO:g}x the typical object's peak above the low one "
                     "(`seglab.inference.normalize.outlier_robust_high`).")
    if not notes:
        return ""
    return "\n  " + " ".join(notes) + " The package's plain percentiles do not."


def _smoothing_note(config: ModelConfig) -> str:
    """For models that smooth noisy (low-light) planes before the network (``denoise["steps"]``)."""
    steps = (config.denoise or {}).get("steps")
    if not steps:
        return ""
    rule = ", ".join(f"sigma {s:g} px from noise {level:g}" for level, s in steps)
    return ("\n  After that, seglab smooths a noisy (low-light) plane with a Gaussian before the network "
            f"({rule}; the noise is read on the normalised plane, see `seglab.inference.denoise`); the "
            "package does not: smooth such images yourself.")


def package_notes(config: ModelConfig, family_outputs: str, licence: str, context: int) -> str:
    """The section every package's README gets: what the tensors are and what seglab does after them.

    ``context``: the reflected context seglab gives each tile (``tiling.tile_context``).
    """
    t = json.dumps(config.thresholds)
    return f"""
## Validation

{_scores_line(config)} (seglab's instances; see `scores` in `config.seglab.model` for all of them).

## This bioimage.io package

Exported by napari-seglab from the model `{config.name}` (family `{config.family}`); licence `{licence}`.

- **Input** `raw`: `(batch, channel, y, x)`, {config.input_channels} channel(s), the image's pixel values.
  Pre-processing (in the package): each channel of each image scaled so that its percentiles
  {config.normalization.get('low', 1.0):g} and {config.normalization.get('high', 99.8):g} map to 0 and 1
  (`scale_range`), as seglab normalises. seglab's channel handling (RGB to grey for
  one-channel models, a grey image repeated for three-channel models) is not in the package:
  give the channels the model takes.{_padding_note(config)}{_outlier_note(config)}{_smoothing_note(config)}
- **Output**: {family_outputs}
- **seglab's own post-processing** (thresholds `{t}`) is named in `config.seglab`:
  `postprocessing` says what seglab does with the output to get instances; `model` is the model's
  complete `config.json`. seglab itself imports this package from `seglab_config.json` and
  `seglab_weights.safetensors` (attachments; safetensors, no code is run):
  `seglab import-bmz PACKAGE.zip` (Python: `seglab.bmz.import_bmz`). The TorchScript file is only for
  bioimage.io consumers.
- Run on the whole image, the network sees no reflect-padded context at the image border;
  seglab segments in tiles with {context} px of reflected context,
  so labels of objects at the border can differ slightly from seglab's.
"""
