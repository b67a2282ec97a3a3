"""Layout helpers for the docked widgets: a collapsible section and a row of buttons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from magicgui.widgets import Container, Label, PushButton
from magicgui.widgets.bases import Widget
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QScrollArea, QSizePolicy


class Collapsible(Container):
    """A header button that shows or hides a labelled container of settings (hidden at first)."""

    def __init__(self, title: str, widgets: Sequence[Widget] = (), *, expanded: bool = False,
                 tooltip: str | None = None) -> None:
        super().__init__(labels=False, layout="vertical", label="")
        self.title = title
        self.header = PushButton(text="", tooltip=tooltip or f"show or hide the {title.lower()} settings")
        self.body = Container(labels=True, widgets=list(widgets))
        self.body.margins = (0, 0, 0, 0)
        self.margins = (0, 0, 0, 0)
        self.extend([self.header, self.body])
        self.header.changed.connect(self.toggle)
        self._expanded = not expanded
        self.toggle()

    @property
    def expanded(self) -> bool:
        return self._expanded

    @expanded.setter
    def expanded(self, value: bool) -> None:
        if bool(value) != self._expanded:
            self.toggle()

    def toggle(self, *_: Any) -> None:
        self._expanded = not self._expanded
        self.body.visible = self._expanded
        self.header.text = f"{'▾' if self._expanded else '▸'} {self.title}"


def button_row(*buttons: Widget) -> Container:
    """Buttons side by side (one row of height instead of one per button)."""
    row = Container(layout="horizontal", labels=False, widgets=list(buttons), label="")
    row.margins = (0, 0, 0, 0)
    return row


class ScrollableContainer(Container):
    """A labelled Container inside a vertical scroll area, docked by napari *with* the scroll area.

    napari docks a magicgui widget's ``.native``; for a scrollable Container that is the inner
    widget, which would leave the scroll area behind. Here ``.native`` is the scroll area. Its
    fields stay packed at the top, and it is never taller than its content, so that a dock
    below it (e.g. the Train widget under the Segment widget) gets the rest of the height.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(scrollable=True, **kwargs)
        self._fitter = _FitToContent(self.root_native_widget)

    def finish_layout(self) -> None:
        """Call once the fields are added: keeps them at the top (later appends go above)."""
        self.content.layout().addStretch(1)
        self._fitter.fit()

    @property
    def native(self) -> Any:
        return self.root_native_widget

    @property
    def content(self) -> Any:
        """The widget inside the scroll area, holding the fields."""
        return self.root_native_widget.widget()


class _FitToContent(QObject):
    """Keeps a scroll area's maximum height at its content's preferred height."""

    def __init__(self, scroll: QScrollArea) -> None:
        super().__init__(scroll)
        self._scroll = scroll
        scroll.widget().installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.LayoutRequest:
            QTimer.singleShot(0, self.fit)
        return False

    def fit(self) -> None:
        try:
            content = self._scroll.widget()
            self._scroll.setMaximumHeight(content.sizeHint().height() + 2 * self._scroll.frameWidth())
        except RuntimeError:  # Qt already deleted the widgets
            pass


def wrapped_label(tooltip: str) -> Label:
    """A read-only line of text that wraps instead of widening the dock."""
    label = Label(value="", label="", tooltip=tooltip)
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label
