"""Take the README screenshot of the Batch widget after a run over three sample images.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_batch_screenshot.py [OUT.png] [MODEL]

Copies three images of ``src/seglab/sample_data/images`` (all but the 1024x1024 brightfield one,
on which ``--diameter auto`` finds whole cells instead of nuclei) into a temporary folder, runs the
Batch widget over it with the results written into another temporary folder (label image and
object table per image), then opens the first result as layers (what a double-click on its
row does). The real widget in a real napari window (under Xvfb when there is no display).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "seglab" / "sample_data" / "images"


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images" / "batch-widget.png")
    model = sys.argv[2] if len(sys.argv) > 2 else "stardist-nuclei"
    from make_screenshot import new_viewer, save_window, settle, wait_for  # the same folder
    from qtpy.QtCore import Qt

    from seglab.plugin.batch_widget import IN_FOLDER

    work = Path(tempfile.mkdtemp(prefix="seglab-batch-screenshot-"))
    folder, outdir = work / "screen", work / "results"
    folder.mkdir()
    outdir.mkdir()
    for path in sorted(SAMPLES.glob("*.tif"))[1:4]:
        shutil.copy(path, folder / path.name)
    viewer = new_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-seglab", "Batch")
    widget.folder.value = folder
    widget.model.value = model
    widget.destination.value = IN_FOLDER
    widget.outdir.value = outdir
    if widget.start() is None:
        print("the batch did not start", file=sys.stderr)
        return 1
    wait_for(widget, 900)
    if widget.summary is None or not widget.summary.outcomes:
        print(f"the batch did not finish: {widget.status.value}", file=sys.stderr)
        return 1
    layers = widget.open_result(0)
    for lyr in layers:
        if lyr.__class__.__name__ == "Labels":
            lyr.contour, lyr.opacity = 0, 0.55
    widget.table.native.selectRow(0)
    settle(0.5)
    # the dock opens narrower than the widget's content, which is then cut off on the right:
    # widen it to the content's minimum width
    need = widget.content.minimumSizeHint().width() + widget.native.verticalScrollBar().sizeHint().width() + 8
    print(f"Batch dock: {dock.width()} px wide, content needs {need} px")
    viewer.window._qt_window.resizeDocks([dock], [need], Qt.Orientation.Horizontal)
    settle(0.5)
    save_window(viewer, out, widget.status.value)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
