"""Plugin-wide events: widgets listen here instead of knowing each other."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from psygnal import Signal


class PluginEvents:
    """``models_changed(name)``: a model was saved to the user models folder."""

    models_changed = Signal(str)


EVENTS = PluginEvents()


def alive(widget: Any) -> bool:
    """False once Qt has deleted the widget (its dock or the viewer was closed)."""
    try:
        widget.native.objectName()
    except RuntimeError:
        return False
    return True


def on_models_changed(widget: Any, method: Callable[[Any, str], None]) -> None:
    """Call ``method(widget, name)`` when a model is saved, for as long as Qt keeps ``widget``."""
    ref = weakref.ref(widget)

    def handler(name: str) -> None:
        w = ref()
        if w is not None and alive(w):
            method(w, name)

    EVENTS.models_changed.connect(handler)
