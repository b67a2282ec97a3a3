"""One line about a model for the widgets (family, training data, object size, val score), and
the choice of a model for RGB (H&E) images."""

from __future__ import annotations

from typing import Any

from seglab.errors import SeglabError
from seglab.inference.appearance import Appearance
from seglab.models.base import ModelConfig
from seglab.models.registry import ModelRegistry
from seglab.models.storage import read_config

FAMILY_NAMES = {"unet": "U-Net", "stardist": "StarDist", "maskrcnn": "Mask R-CNN"}


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


def trained_on(cfg: ModelConfig, short: bool = False) -> str | None:
    """What the model was trained on, in a few words (None when the config does not say);
    ``short`` drops the data set's details in brackets."""
    training = cfg.training or {}
    data = training.get("data")
    if isinstance(data, str) and data:
        return data.split(" (")[0] if short else data
    pairs = training.get("pairs")
    if isinstance(pairs, list) and pairs:
        names = [str(p.get("image", "?")) for p in pairs if isinstance(p, dict)]
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        parent = training.get("parent")
        base = f" (fine-tuned from {parent['name']})" if isinstance(parent, dict) and parent.get("name") else ""
        return f"{len(pairs)} image(s): {shown}{base}"
    return None


def val_score(cfg: ModelConfig) -> str | None:
    """The model's recorded validation AP@0.5, with what it was measured on."""
    scores = cfg.scores or {}
    th = scores.get("thresholds")
    if isinstance(th, dict) and isinstance(th.get("0.50"), dict) and "ap" in th["0.50"]:
        where = scores.get("dataset")
        return f"val AP@0.5 {float(th['0.50']['ap']):.2f}" + (f" ({where})" if where else "")
    for key in ("ap50_tuned_thresholds", "ap50_best_checkpoint"):
        value = scores.get(key)
        if isinstance(value, (int, float)):
            images = scores.get("validation_images")
            where = f" on {', '.join(images)}" if isinstance(images, list) and images else ""
            return f"val AP@0.5 {float(value):.2f}{where}"
    return None


def describe(cfg: ModelConfig, short: bool = True) -> str:
    """E.g. ``StarDist · trained on DSB2018 split train · objects ≈ 18 px · val AP@0.5 0.78``;
    ``short=False`` keeps the details in brackets and the description (for a tooltip)."""
    parts = [family_name(cfg.family) + (" · RGB input" if cfg.input_channels == 3 else "")]
    data = trained_on(cfg, short)
    parts.append(f"trained on {data}" if data else "training data not recorded")
    if cfg.object_diameter:
        parts.append(f"objects ≈ {float(cfg.object_diameter):.0f} px across")
    score = val_score(cfg)
    if score and short and " (" in score:
        score = score.split(" (")[0]
    parts.append(score if score else "no validation score recorded")
    line = " · ".join(parts)
    if not short and cfg.description:
        line = f"{cfg.name}: {cfg.description}\n{line}"
    return line


def describe_name(registry: ModelRegistry, name: str, short: bool = True) -> str:
    """:func:`describe` for a model name; a short message when its config cannot be read."""
    try:
        return describe(read_config(registry.resolve(name)), short)
    except SeglabError as e:
        return f"cannot read this model: {e}"


def takes_rgb(registry: ModelRegistry, name: str | None) -> bool:
    if not name:
        return False
    try:
        return read_config(registry.resolve(name)).input_channels == 3
    except SeglabError:
        return False


def supports_augment(registry: ModelRegistry, name: str | None) -> bool | None:
    """Whether the model's family takes test-time augmentation (None: no such model)."""
    from seglab.models.families import family_class

    if not name:
        return None
    try:
        return family_class(read_config(registry.resolve(name)).family).supports_augment()
    except (SeglabError, TypeError):
        return None


def rgb_proposal(registry: ModelRegistry, current: str | None,
                 appearance: Appearance) -> tuple[str, str] | None:
    """For an RGB image, when an RGB (H&E) model is installed: ``(model name, reason)``, the
    model to choose and the line that says why (the name is ``current`` when it stays).

    Stained brightfield gets the RGB model. A dark background (fluorescence, in colour or grey
    stored as RGB) gets a grey model, since an H&E model finds almost nothing there (a
    composite of several colours is also told about *Channels*). Grey brightfield keeps the
    current model: neither kind is the better on all of it (tissue: the H&E model; cytology:
    the grey ones). None when no RGB model is installed, or the current one already suits.
    """
    colour_models = registry.names_reading(3)
    if not colour_models or not current:
        return None
    what = f"RGB image, {appearance.describe()}"
    rgb_name = colour_models[0]
    if appearance.stained:
        if takes_rgb(registry, current):
            return None
        try:
            data = _short_data(read_config(registry.resolve(rgb_name)))
        except SeglabError:
            data = None
        return rgb_name, (f"{what}: proposing {rgb_name}" + (f", trained on {data}" if data else "")
                          + "; choose another model to override")
    if not appearance.dark_background:  # grey brightfield: say what each kind of model is for
        if takes_rgb(registry, current):
            return current, f"{what}: keeping {current}; for cytology rather than tissue a grey model may do better"
        return current, f"{what}: keeping {current}; for tissue sections {rgb_name} may do better"
    def mixture(grey: str) -> str:
        return (f"; {grey} mixes the colours into grey: if the nuclei are in one, enter it under Channels "
                "(0 red, 1 green, 2 blue)" if appearance.composite else "")

    if takes_rgb(registry, current):
        greys = registry.names_reading(1)
        if not greys:
            return None
        return greys[0], (f"{what}, not stained tissue: proposing {greys[0]}, which reads it as grey "
                          f"({current} reads colour){mixture(greys[0])}; choose another model to override")
    return current, (f"{what}: keeping {current}, which reads it as grey; {rgb_name} is for stained "
                     f"tissue and finds little here{mixture(current)}")


def _short_data(cfg: ModelConfig) -> str | None:
    """A short 'trained on' for the proposal line (the description's part after ';' or the data)."""
    data = trained_on(cfg)
    if data and len(data) <= 60:
        return data
    desc = (cfg.description or "").splitlines()[0] if cfg.description else ""
    if ";" in desc:  # built-ins end their description with "; <data>"
        return desc.rsplit(";", 1)[1].strip() or None
    return (data or desc)[:60] or None


def layer_is_rgb(layer: Any) -> bool:
    return bool(getattr(layer, "rgb", False))
