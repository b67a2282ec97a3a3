"""A model's configuration (``config.json``), checked field by field when it is read.

Plain data, no torch: ``seglab models`` and the widgets' model lists read configs
without importing any network code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from seglab.errors import SeglabError


@dataclass
class ModelConfig:
    """Everything needed to rebuild and run a model, as JSON-serialisable data."""

    name: str
    family: str
    description: str = ""
    architecture: dict[str, Any] = field(default_factory=dict)
    # input: channels the network takes, and percentile normalisation
    input_channels: int = 1
    normalization: dict[str, Any] = field(
        default_factory=lambda: {"kind": "percentile", "low": 1.0, "high": 99.8}
    )
    thresholds: dict[str, float] = field(default_factory=dict)
    # tiling: context (pixels) each tile needs on every side for exact stitching; the engine
    # uses at least the network's receptive-field half-width (``models.receptive_field``)
    tile_context: int = 32
    # object size the model was trained on: median equivalent diameter (pixels) of its
    # training objects at the scale the network saw them; None when unknown. Segmentation
    # with ``diameter=`` rescales images so that objects arrive at this size (issue 11).
    object_diameter: float | None = None
    # how ``diameter="auto"`` treats this model's size, where measured for it (else the defaults
    # of ``seglab.inference.diameter``): ``tolerance`` [low, high], the multiples of
    # ``object_diameter`` left alone, and ``aim`` [from below, from above], the multiples that
    # smaller and larger objects are brought to (``benchmarks/bench_auto_rule.py``); and
    # ``pixel_size_um``, the pixel size (micrometres) of the images it was trained on, where known:
    # ``auto`` then rescales a calibrated image by its pixel size instead of estimating
    auto_rescale: dict[str, Any] = field(default_factory=dict)
    # low light: ``steps`` [[noise level, Gaussian sigma], ...] (levels rising), the smoothing a
    # plane gets before the model from each noise level on (``seglab.inference.denoise``); no
    # steps: ``denoise="auto"`` never smooths for this model
    denoise: dict[str, Any] = field(default_factory=dict)
    # family-specific loss settings (e.g. U-Net border_weight), used by any later retraining
    loss: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    seglab_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """A config from parsed JSON; a :class:`SeglabError` naming the first bad field."""
        if not isinstance(data, dict):
            raise SeglabError("model config must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("name", "family") if k not in data]
        if missing:
            raise SeglabError(f"model config lacks required field(s): {', '.join(missing)}")
        values = {k: v for k, v in data.items() if k in known}
        check_fields(values)
        return cls(**values)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(v), f"the number {v!r}" if _is_number(v) else repr(v))


def check_fields(values: dict[str, Any]) -> None:
    """Type and range checks of config fields (raise on the first problem)."""

    def bad(name: str, expected: str) -> SeglabError:
        return SeglabError(f"model config field {name!r} must be {expected}, not {_kind(values[name])}")

    for name in ("name", "family", "description", "seglab_version"):
        if name in values and not isinstance(values[name], str):
            raise bad(name, "a string")
    if not values.get("name", "x").strip():
        raise SeglabError("model config field 'name' is empty")
    for name in ("architecture", "normalization", "thresholds", "loss", "training", "scores", "auto_rescale",
                 "denoise"):
        if name in values and not isinstance(values[name], dict):
            raise bad(name, "a JSON object")
    if "input_channels" in values and not (_is_int(values["input_channels"]) and values["input_channels"] >= 1):
        raise bad("input_channels", "a whole number of at least 1")
    if "tile_context" in values and not (_is_int(values["tile_context"]) and values["tile_context"] >= 0):
        raise bad("tile_context", "a whole number of pixels (0 or more)")
    d = values.get("object_diameter")
    if d is not None and not (_is_number(d) and d > 0):
        raise bad("object_diameter", "a positive number or null")
    _check_auto_rescale(values.get("auto_rescale", {}))
    _check_denoise(values.get("denoise", {}))
    for name in ("thresholds", "loss"):
        for k, v in values.get(name, {}).items():
            if not _is_number(v):
                raise SeglabError(f"model config {name}[{k!r}] must be a finite number, not {_kind(v)}")
    norm = values.get("normalization")
    if norm is not None:
        for k in ("low", "high"):
            if k in norm and not (_is_number(norm[k]) and 0 <= norm[k] <= 100):
                raise SeglabError(f"model config normalization[{k!r}] must be a percentile in [0, 100], "
                                  f"not {_kind(norm[k])}")
        if "fill_black" in norm and not (isinstance(norm["fill_black"], bool) or norm["fill_black"] == "brightfield"):
            raise SeglabError(f"model config normalization['fill_black'] must be true, false or 'brightfield', "
                              f"not {_kind(norm['fill_black'])}")
        for flag in ("bright_outliers", "sparse_objects"):
            if flag in norm and not isinstance(norm[flag], bool):
                raise SeglabError(f"model config normalization[{flag!r}] must be true or false, "
                                  f"not {_kind(norm[flag])}")
    for k, v in values.get("architecture", {}).items():
        if not _json_plain(v):
            raise SeglabError(f"model config architecture[{k!r}] must be a number, string or list of them, "
                              f"not {_kind(v)}")


def _check_auto_rescale(rule: dict[str, Any]) -> None:
    """``auto_rescale``: ``tolerance`` [low <= 1 <= high], ``aim`` [two positive numbers] and
    ``pixel_size_um`` (a positive number), each optional."""
    px = rule.get("pixel_size_um")
    if px is not None and not (_is_number(px) and px > 0):
        raise SeglabError(f"model config auto_rescale['pixel_size_um'] must be a positive number, not {_kind(px)}")
    for k, v in rule.items():
        if k not in ("tolerance", "aim"):
            continue  # pixel_size_um above; notes such as "measured" are free text
        if not (isinstance(v, list) and len(v) == 2 and all(_is_number(x) and x > 0 for x in v)):
            raise SeglabError(f"model config auto_rescale[{k!r}] must be a list of two positive numbers, not {_kind(v)}")
    tol = rule.get("tolerance")
    if tol is not None and not tol[0] <= 1.0 <= tol[1]:
        raise SeglabError(f"model config auto_rescale['tolerance'] must hold 1 (low <= 1 <= high), not {tol}")


def _check_denoise(rule: dict[str, Any]) -> None:
    """``denoise['steps']``: a list of [noise level, sigma] pairs, positive, levels rising."""
    steps = rule.get("steps", [])
    ok = isinstance(steps, list) and all(
        isinstance(s, list) and len(s) == 2 and all(_is_number(x) and x > 0 for x in s) for s in steps)
    if not ok or any(a[0] >= b[0] for a, b in zip(steps, steps[1:])):
        raise SeglabError("model config denoise['steps'] must be a list of [noise level, sigma] pairs of positive "
                          f"numbers with rising levels, not {_kind(steps) if not ok else steps}")


def _json_plain(v: Any) -> bool:
    """Numbers, strings, booleans, and (nested) lists of them: what an architecture holds."""
    if isinstance(v, list):
        return all(_json_plain(x) for x in v)
    return isinstance(v, (str, bool)) or _is_number(v)
