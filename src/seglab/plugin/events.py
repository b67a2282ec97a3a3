"""Plugin-wide events: widgets listen here instead of knowing each other."""

from __future__ import annotations

from psygnal import Signal


class PluginEvents:
    """``models_changed(name)``: a model was saved to the user models folder."""

    models_changed = Signal(str)


EVENTS = PluginEvents()
