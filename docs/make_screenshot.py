"""Take the README/docs screenshots of the Segment widget after segmenting a sample image.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_screenshot.py [OUT.png] [SAMPLE] [MODEL]

The Measurements dock (docked below the viewer) shows the new labels layer's table. With a
model that gives outlines (``stardist-nuclei``) the polygons are added as a Shapes layer.
PNGs over 400 kB are saved with a palette (and smaller if still too large).

Runs the real widgets in a real napari window (under Xvfb when there is no display).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication

#: the window size of every screenshot (fits a 1920x1080 screen)
WINDOW = (1800, 1020)
MAX_BYTES = 400_000


def settle(seconds: float = 1.0) -> None:
    """Let Qt process events for ``seconds``."""
    t0 = time.time()
    while time.time() - t0 < seconds:
        QApplication.processEvents()
        time.sleep(0.05)


def wait_for(widget, limit: float = 900) -> None:
    """Let Qt run until ``widget``'s background job ends (or ``limit`` seconds pass)."""
    t0 = time.time()
    settle(0.5)  # a worker counts as running once Qt has delivered its start signal
    while widget.running and time.time() - t0 < limit:
        QApplication.processEvents()
        time.sleep(0.05)


def new_viewer() -> napari.Viewer:
    viewer = napari.Viewer(title="napari-seglab")
    viewer.window._qt_window.resize(*WINDOW)
    return viewer


def dock_below(viewer: napari.Viewer, dock, height: int) -> None:
    """Move ``dock`` (a docked plugin widget) to the bottom area, ``height`` pixels tall."""
    qt_window = viewer.window._qt_window
    qt_window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.show()
    qt_window.resizeDocks([dock], [height], Qt.Orientation.Vertical)


def shrink_png(path: Path, limit: int = MAX_BYTES) -> None:
    """Re-save ``path`` as a palette PNG while it is over ``limit`` bytes: fewer colours first (down
    to 64: text and images stay clean), then a smaller size (textured images such as brightfield)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    for scale, colors in ((1, 256), (1, 128), (1, 64), (0.85, 128), (0.85, 64), (0.75, 64), (0.75, 32)):
        if path.stat().st_size <= limit:
            return
        size = (round(rgb.width * scale), round(rgb.height * scale))
        small = rgb if scale == 1 else rgb.resize(size, Image.Resampling.LANCZOS)
        small = small.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(path, optimize=True)


def hide_notifications() -> None:
    """Hide napari's notification pop-ups (they cover the canvas, their text cut off)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for w in QApplication.allWidgets():
        if isinstance(w, NapariQtNotification):
            w.hide()


def save_window(viewer: napari.Viewer, out: Path, status: str) -> None:
    """Let the canvas settle, save the whole window to ``out`` (shrunk if large) and close the viewer."""
    settle(1.0)
    viewer.reset_view()  # fit the data to the canvas as the docks left it
    hide_notifications()
    settle(0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    shrink_png(out)
    print(f"saved {out} ({out.stat().st_size // 1000} kB): {status}")
    viewer.close()


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images" / "segment-widget.png")
    sample = sys.argv[2] if len(sys.argv) > 2 else "fluorescence"
    model = sys.argv[3] if len(sys.argv) > 3 else "unet-nuclei"
    viewer = new_viewer()
    viewer.open_sample("napari-seglab", sample)
    for lyr in list(viewer.layers):
        if lyr.name.endswith("ground truth"):
            viewer.layers.remove(lyr)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seglab", "Segment")
    measurements_dock, _ = viewer.window.add_plugin_dock_widget("napari-seglab", "Measurements")
    dock_below(viewer, measurements_dock, 300)
    image = viewer.layers[0]
    widget.image.value = image
    widget.model.value = model
    widget.outlines.value = widget.outlines.enabled
    worker = widget.start()
    wait_for(widget, 600)
    if worker is None or widget.output_layer is None:
        print(f"segmentation did not finish: {widget.status.value}", file=sys.stderr)
        return 1
    widget.output_layer.contour = 0
    widget.output_layer.opacity = 0.55
    viewer.layers.selection.active = widget.output_layer  # the Measurements dock shows the active labels layer
    if widget.outlines_layer is not None:  # ... and keeps it while the outlines' Shapes controls are shown
        settle(0.3)
        viewer.layers.selection.active = widget.outlines_layer
    save_window(viewer, out, widget.status.value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
