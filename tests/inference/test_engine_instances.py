"""The engine's instance path, with a deterministic detector (tests/maskrcnn_helpers.py)."""

import numpy as np

from maskrcnn_helpers import blob_detector
from seglab.inference.engine import ProgressEvent, segment, segment_iter
from seglab.metrics import evaluate
from tests_helpers import blob_image, drain


def test_tiled_equals_untiled_nothing_cut_or_duplicated():
    img, truth = blob_image((300, 340), n=40, seed=3)
    model = blob_detector(context=32)
    whole = segment(model, img, tile_size=1024, amp=False, device="cpu")
    tiled = segment(model, img, tile_size=64, amp=False, device="cpu")
    assert whole.n_objects == int(truth.max()) == 40
    np.testing.assert_array_equal(tiled.labels, whole.labels)
    for key in ("label", "score", "class", "area", "bbox_y0", "bbox_x1"):
        np.testing.assert_array_equal(tiled.table[key], whole.table[key])
    # the pasted masks are the objects (RoIAlign-sampled 28x28 masks, pasted back)
    m = evaluate([(truth, whole.labels)], thresholds=(0.9,))
    assert m["thresholds"]["0.90"]["ap"] == 1.0


def test_progress_and_box_shapes_for_stacks():
    img, _ = blob_image((120, 130), n=6, seed=1)
    stack = np.stack([img, img[::-1]])
    gen = segment_iter(blob_detector(), stack, tile_size=64, amp=False, device="cpu")
    events, res = drain(gen)
    assert all(isinstance(e, ProgressEvent) for e in events)
    assert [e.stage for e in events].count("postprocess") == 4
    assert res.n_objects == 12 and list(res.table["plane"]) == [0] * 6 + [1] * 6
    ids = [set(np.unique(p)) - {0} for p in res.labels]
    for plane, extras in enumerate(res.extras):
        shapes = extras["shapes"]
        assert set(shapes["label"].tolist()) == ids[plane]
        # every rectangle encloses its object
        for lab, corners in zip(shapes["label"], shapes["data"]):
            ys, xs = np.nonzero(res.labels[plane] == lab)
            assert corners[:, 0].min() <= ys.min() - 0.5 and corners[:, 0].max() >= ys.max() + 0.5
            assert corners[:, 1].min() <= xs.min() - 0.5 and corners[:, 1].max() >= xs.max() + 0.5


def test_thresholds_reach_the_instance_path():
    img, _ = blob_image((100, 100), n=5, seed=2)
    model = blob_detector()
    assert segment(model, img, device="cpu", amp=False).n_objects == 5
    assert segment(model, img, device="cpu", amp=False, thresholds={"score_thresh": 0.99}).n_objects == 0
