"""The TorchScript side of a package: seglab's paste in torch, traced dense networks of any size."""

from __future__ import annotations

import numpy as np
import torch

from seglab.bmz.torchscript import paste_labels, trace_dense
from seglab.models.detections import Detections, paste_detections


def test_scripted_paste_equals_seglabs_paste():
    rng = np.random.default_rng(0)
    n, h, w = 40, 96, 80
    x0 = rng.uniform(-5, w - 10, n)
    y0 = rng.uniform(-5, h - 10, n)
    boxes = np.stack([x0, y0, x0 + rng.uniform(4, 30, n), y0 + rng.uniform(4, 30, n)], 1).astype(np.float32)
    scores = rng.uniform(0.2, 1.0, n).astype(np.float32)
    scores[5] = scores[6]  # a tie: both keep the same (stable) order
    masks = rng.uniform(0, 1, (n, 28, 28)).astype(np.float32)
    thresholds = {"score_thresh": 0.4, "mask_thresh": 0.5, "min_area": 5.0}
    expected = paste_detections(Detections(boxes, scores, np.ones(n, np.int64), masks, (h, w)), (h, w), thresholds)
    assert expected.labels.max() > 5
    scripted = torch.jit.script(paste_labels)
    got = scripted(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(masks), h, w, 0.4, 0.5, 5.0)
    np.testing.assert_array_equal(got.numpy(), expected.labels)


def test_traced_dense_networks_take_other_sizes(tiny_model):
    from bmz_helpers import untrained_star

    for model in (tiny_model, untrained_star()):
        traced = trace_dense(model, torch.rand(1, 1, 64, 64))
        x = torch.rand(1, 1, 96, 128)
        with torch.no_grad():
            expected = model.forward_tiles(x)
            out = traced(x)
        if model.family == "unet":
            out = torch.sigmoid(out)
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
