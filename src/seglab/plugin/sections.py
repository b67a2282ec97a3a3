"""Layout helpers for the docked widgets: a collapsible section, a row of buttons, shared fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from magicgui.widgets import Container, Label, PushButton
from magicgui.widgets.bases import Widget
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QScrollArea, QSizePolicy, QWidget


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


#: the Qt property marking a scroll area kept at its content's height
_FITTED = "seglab_fit_to_content"


class _FitToContent(QObject):
    """Keeps a scroll area's maximum height at its content's preferred height."""

    def __init__(self, scroll: QScrollArea) -> None:
        super().__init__(scroll)
        self._scroll = scroll
        scroll.setProperty(_FITTED, True)
        scroll.widget().installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.LayoutRequest:
            QTimer.singleShot(0, self.fit)
        return False

    def fit(self) -> None:
        try:
            scroll = self._scroll
            before = scroll.maximumHeight()
            wanted = scroll.widget().sizeHint().height() + 2 * scroll.frameWidth()
            scroll.setMaximumHeight(wanted)
            if scroll.isVisible() and wanted != before:
                # grown (fields polished, a section opened): this dock first; shrunk: the others
                # get the height it gave back
                QTimer.singleShot(0, lambda: _fit_docks(scroll, grown=wanted > before))
        except RuntimeError:  # Qt already deleted the widgets
            pass


def _dock_of(widget: QWidget) -> QDockWidget | None:
    while widget is not None and not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    return widget


def _fit_docks(scroll: QScrollArea, grown: bool, tries: int = 5) -> None:
    """Give docked fitted scroll areas that are shorter than their content the height they lack.

    A main window sizes a dock when it is added and then keeps its height: when the content's
    preferred height grows later (napari's style sheet polishes the fields, a section opens)
    the raised maximum only *lets* the dock grow. ``grown``: ``scroll``'s dock asks; otherwise
    (it shrank) the other seglab docks of its window ask for what they lack. The window applies
    a changed maximum in steps, so what is still lacking is asked for again, ``tries`` times."""
    try:
        dock = _dock_of(scroll)
        main = dock.parentWidget() if dock is not None else None
        if not isinstance(main, QMainWindow):
            return
        if grown:
            candidates = [scroll]
        else:
            candidates = [s for s in main.findChildren(QScrollArea) if s.property(_FITTED) and s is not scroll]
        docks, heights = [], []
        for area in candidates:
            area_dock = _dock_of(area)
            lack = area.maximumHeight() - area.height()
            if area_dock is not None and not area_dock.isFloating() and area.isVisible() and lack > 0:
                docks.append(area_dock)
                heights.append(area_dock.height() + lack)
        if docks:
            main.resizeDocks(docks, heights, Qt.Orientation.Vertical)
            if tries > 1:
                QTimer.singleShot(20, lambda: _fit_docks(scroll, grown, tries - 1))
    except RuntimeError:  # closed meanwhile
        pass


def wrapped_label(tooltip: str) -> Label:
    """A read-only line of text that wraps instead of widening the dock."""
    label = Label(value="", label="", tooltip=tooltip)
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


AUGMENT_TEXT = "More accurate (8 orientations, 5-7x slower)"


def augment_choice() -> Any:
    """The *More accurate* option of the Segment and Batch widgets (test-time augmentation)."""
    from magicgui.widgets import CheckBox

    return CheckBox(text=AUGMENT_TEXT, value=False,
                    tooltip="test-time augmentation (U-Net and StarDist models): the model sees the image in its "
                            "8 flips and rotations and their maps are averaged; fewer missed and merged nuclei with "
                            "StarDist, at 5-7x the time of one run")


def show_augment_support(box: Any, able: bool | None, wanted: bool) -> None:
    """Enable the *More accurate* option for a model that takes it (ticked again if the user wanted
    it), disable and untick it for one that does not, saying so."""
    box.enabled = bool(able)
    box.value = bool(wanted and able)
    box.text = AUGMENT_TEXT if able or able is None else "More accurate (not for this model's family)"


def smoothing_choice() -> Any:
    """The *Smoothing* field of the Segment and Batch widgets (``denoise``: low light)."""
    from magicgui.widgets import ComboBox

    return ComboBox(label="Smoothing", choices=["auto", "on", "off"], value="auto",
                    tooltip="smooth a noisy (low-light) image before the model: auto: when the image's noise "
                            "passes the level from which smoothing pays for this model (measured; clean images "
                            "are left alone); on: always; off: never")
