"""The plugin in a fresh napari process, imported only after the viewer exists (as in real use).

In pytest, seglab is imported before any OpenGL context; in napari it is imported after Mesa's
llvmpipe has loaded its LLVM, which must not crash (Triton, reached through torchvision and
torch._dynamo, loads a second LLVM). A subprocess reproduces the real order.
"""

import subprocess
import sys

SCRIPT = """
import napari
viewer = napari.Viewer(show=True)
viewer.open_sample("napari-seglab", "fluorescence")
viewer.window.add_plugin_dock_widget("napari-seglab", "Segment")
viewer.window.add_plugin_dock_widget("napari-seglab", "Train")
import numpy as np
from seglab.models.registry import get_model
from seglab.inference.engine import segment
image = np.asarray(viewer.layers[0].data)[:128, :128]
for name in ("unet-nuclei", "stardist-nuclei"):
    assert segment(get_model(name), image).n_objects > 0, name
from seglab.models.storage import new_model
from seglab.training.data import PatchSampler, make_pair
from seglab.training.loop import TrainSettings, train_iter
model = new_model("maskrcnn", "t", architecture={"stem": 8, "widths": [8, 8, 8, 8], "blocks": [1, 1, 1, 1],
                                                  "fpn_channels": 8, "box_head": 16, "mask_head": [8]})
labels = np.zeros((64, 64), np.int32); labels[10:20, 10:20] = 1; labels[30:45, 30:40] = 2
sampler = PatchSampler([make_pair(image[:64, :64], labels, 1, model.config.normalization)], 64)
for _ in train_iter(model, sampler, TrainSettings(steps=2, batch_size=1), device="cpu"):
    pass
viewer.close()
print("seglab-ok")
"""


def test_plugin_imported_after_the_viewer_segments_and_trains():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "seglab-ok" in out.stdout, out.stderr[-3000:]
