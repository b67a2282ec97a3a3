"""Tooltips of the widgets' fields, and a fallback for threshold fields that carry none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from magicgui.widgets import Container
from magicgui.widgets.bases import ButtonWidget, ValueWidget

#: what each threshold does and which way to move it, for fields the family gives no help for
THRESHOLD_HELP = {
    "prob_thresh": "minimum object probability: raise it for fewer, tighter objects and less background; "
                   "lower it to catch faint objects",
    "seed_thresh": "probability a pixel needs to seed an object: raise it for fewer objects (weak ones dropped); "
                   "lower it to find more",
    "seed_h": "how deep the dip between two touching objects must be to split them: raise it to merge more, "
              "lower it to split more",
    "min_area": "objects smaller than this many pixels are dropped: raise it to remove debris, "
                "lower it to keep small objects",
    "nms_thresh": "overlap above which two candidates count as one object: lower it to remove more duplicates, "
                  "raise it to keep more touching objects",
    "score_thresh": "minimum detection score: raise it for fewer, surer objects; lower it to find more",
    "mask_thresh": "mask probability cut-off: raise it for smaller masks, lower it for larger ones",
}


def threshold_tooltip(name: str, default: float) -> str:
    text = THRESHOLD_HELP.get(name, f"postprocessing setting '{name}' of this model")
    return f"{text} (model default {default:g})"


def fill_threshold_tooltips(thresholds: Container) -> None:
    """Give every threshold field without a tooltip the fallback help (the value it shows now
    is the model's default)."""
    for w in thresholds:
        if not w.tooltip:
            w.tooltip = threshold_tooltip(w.name, float(w.value))


def fields(container: Any) -> Iterator[Any]:
    """Every input field (value widgets and buttons) inside ``container``, nested ones included."""
    for w in container:
        if isinstance(w, Container):
            yield from fields(w)
        elif isinstance(w, (ValueWidget, ButtonWidget)) and w.widget_type != "Label":
            yield w
