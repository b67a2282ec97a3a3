"""Take the docs screenshot of the Train widget: fine-tune stardist-nuclei on one annotated corner.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_train_screenshot.py [OUT.png] [SECONDS]

Opens the brightfield sample with its ground truth, marks the top-left quarter as the
completely annotated region, fine-tunes ``stardist-nuclei`` on it (replay on, the default)
into a temporary models folder, then segments the image with the new model: the real
widgets in a real napari window (under Xvfb when there is no display). The image is segmented
with Diameter 'none' (no rescaling; 'auto' finds whole cells on this image).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images" / "train-widget.png")
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    os.environ["SEGLAB_MODELS_DIR"] = tempfile.mkdtemp(prefix="seglab-screenshot-")
    import napari
    from make_screenshot import WINDOW, save_window, wait_for  # the same folder
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-seglab")
    viewer.window._qt_window.resize(*WINDOW)
    viewer.open_sample("napari-seglab", "brightfield")
    image = next(lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Image))
    truth = next(lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Labels))
    truth.name = "my corrections"
    h, w = image.data.shape[:2]
    rect = np.array([[-0.5, -0.5], [-0.5, w / 2 - 0.5], [h / 2 - 0.5, w / 2 - 0.5], [h / 2 - 0.5, -0.5]])
    shapes = viewer.add_shapes([rect], shape_type="rectangle", name="annotated here", edge_color="yellow",
                               face_color="transparent", edge_width=6)
    _, train = viewer.window.add_plugin_dock_widget("napari-seglab", "Train")
    # the Segment widget that *Segment current image with new model* uses; Diameter 'none': on this
    # image 'auto' estimates the cells' size (~95 px), not the nuclei's, and the model outlines cells
    _, segment = viewer.window.add_plugin_dock_widget("napari-seglab", "Segment")
    segment.diameter.value = "none"
    row = train.pairs[0]
    row.image.value, row.labels.value, row.regions.value = image, truth, shapes
    train.start_model.value = ("model", "stardist-nuclei")
    train.budget.value = seconds
    train.model_name.value = "stardist-brightfield"
    viewer.layers.selection.active = image
    if train.start() is None:
        print("training did not start", file=sys.stderr)
        return 1
    wait_for(train)
    if not train.segment_button.enabled:
        print(f"training did not save a model: {train.status.value}", file=sys.stderr)
        return 1
    status = train.status.value
    train.segment_with_new_model()
    result = f"{image.name} [seglab]"
    t0 = time.time()
    while result not in viewer.layers and time.time() - t0 < 300:
        QApplication.processEvents()
        time.sleep(0.05)
    if result not in viewer.layers:
        print("segmentation did not finish", file=sys.stderr)
        return 1
    viewer.layers[result].contour = 2
    truth.visible = False
    save_window(viewer, out, status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
