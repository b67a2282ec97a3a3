"""Take the README/docs screenshot: the Segment widget after segmenting a sample image.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshot.py [OUT.png] [SAMPLE] [MODEL]

With a model that gives outlines (``stardist-nuclei``) the polygons are added as a Shapes layer.

Runs the real widget in a real napari window (under Xvfb when there is no display).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication


def wait_for(widget, limit: float = 900) -> None:
    """Let Qt run until ``widget``'s background job ends (or ``limit`` seconds pass)."""
    t0 = time.time()
    for _ in range(10):  # a worker counts as running once Qt has delivered its start signal
        QApplication.processEvents()
        time.sleep(0.05)
    while widget.running and time.time() - t0 < limit:
        QApplication.processEvents()
        time.sleep(0.05)


def save_window(viewer: napari.Viewer, out: Path, status: str) -> None:
    """Let the canvas settle, save the whole window to ``out`` and close the viewer."""
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"saved {out}: {status}")
    viewer.close()


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images" / "segment-widget.png")
    sample = sys.argv[2] if len(sys.argv) > 2 else "fluorescence"
    model = sys.argv[3] if len(sys.argv) > 3 else "unet-nuclei"
    viewer = napari.Viewer(title="napari-seglab")
    viewer.window._qt_window.resize(1500, 900)
    viewer.open_sample("napari-seglab", sample)
    for lyr in list(viewer.layers):
        if lyr.name.endswith("ground truth"):
            viewer.layers.remove(lyr)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seglab", "Segment")
    image = viewer.layers[0]
    widget.image.value = image
    widget.model.value = model
    widget.outlines.value = widget.outlines.enabled
    worker = widget.start()
    wait_for(widget, 300)
    if worker is None or widget.output_layer is None:
        print("segmentation did not finish", file=sys.stderr)
        return 1
    widget.output_layer.contour = 0
    widget.output_layer.opacity = 0.55
    save_window(viewer, out, widget.status.value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
