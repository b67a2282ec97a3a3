"""Finding the plugin's docked widgets, whatever viewer proxy a widget was given.

napari hands each plugin widget its own ``PublicOnlyProxy`` of the viewer, so two widgets of
the same window hold different viewer objects: compare the viewers they wrap.
"""

from __future__ import annotations

from typing import Any, TypeVar

import wrapt

from seglab.plugin.events import alive

T = TypeVar("T")


def unwrap(obj: Any) -> Any:
    """The object behind any number of napari proxies."""
    while isinstance(obj, wrapt.ObjectProxy):
        obj = obj.__wrapped__
    return obj


def same_viewer(a: Any, b: Any) -> bool:
    return unwrap(a) is unwrap(b)


def docked_widget(viewer: Any, cls: type[T]) -> T | None:
    """A live widget of class ``cls`` docked in ``viewer``'s window (shown and raised), or None."""
    try:
        docked = list(viewer.window.dock_widgets.values())
    except (AttributeError, RuntimeError):
        return None
    for widget in docked:
        widget = unwrap(widget)
        if isinstance(widget, cls) and alive(widget):
            dock = widget.native.parent()
            if dock is not None:
                dock.show()
                dock.raise_()
            return widget
    return None
