"""Cancel within 2 s at any stage: every family's postprocessing, a Mask R-CNN tile, tuning.

Each test drives a real model's stage on a large synthetic input for a few events, checks
that no two events are more than :data:`LIMIT` seconds apart (closing the generator takes
effect at the next event), closes it and checks that this returns at once and, where the
stage allocates large arrays, that their memory is released.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

import numpy as np
import torch

from seglab.inference.engine import TileRun, postprocess_events, segment_iter
from seglab.models.registry import get_model

LIMIT = 2.0


def _drive(gen, n_events: int, stage: str | None = None, max_seconds: float = 6.0) -> list[float]:
    """Gaps (s) between the first ``n_events`` events (of ``stage``), then close; returns gaps + [close time]."""
    gaps, seen = [], 0
    last = t0 = time.perf_counter()
    for ev in gen:
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        if stage is None or getattr(ev, "stage", stage) == stage:
            seen += 1
        if seen >= n_events or now - t0 > max_seconds:
            break
    t = time.perf_counter()
    gen.close()
    return gaps + [time.perf_counter() - t]


def _disc_tile(cell: int = 24, r: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[:cell, :cell] - (cell - 1) / 2
    return np.clip((r - np.hypot(yy, xx)) / r, 0, 1).astype(np.float32)


def _run() -> TileRun:
    return TileRun(torch.device("cpu"))


def test_unet_postprocess_of_a_4096_plane_cancels_at_once_and_frees_memory():
    model = get_model("unet-nuclei")
    size = 4096
    dist = np.tile(_disc_tile(), (size // 24 + 1, size // 24 + 1))[:size, :size]
    maps = np.stack([(dist > 0).astype(np.float32), dist])  # ~29,000 objects
    del dist
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        gen = postprocess_events(model, maps, model.thresholds(), (size, size), _run())
        gaps = _drive(gen, 8)
        del gen
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"U-Net 4096^2 postprocess: max gap {max(gaps[:-1]):.2f} s, close {gaps[-1] * 1e3:.1f} ms")
    assert max(gaps) < LIMIT
    assert peak - base > 50e6  # it did allocate plane-sized arrays ...
    assert after - base < 5e6  # ... and closing released them


def test_stardist_postprocess_cancels_during_nms_and_rendering():
    model = get_model("stardist-nuclei")
    model.postprocess(np.zeros((33, 16, 16), np.float32) + 0.9, model.thresholds(), (32, 32))  # compile numba
    size = 2048
    prob = np.tile(_disc_tile(12, 4.5), (size // 24 + 1, size // 24 + 1))[: size // 2, : size // 2]
    maps = np.concatenate([prob[None], np.full((32, *prob.shape), 8.0, np.float32)])  # ~7,000 objects
    gen = postprocess_events(model, maps, model.thresholds(), (size, size), _run())
    gaps = _drive(gen, 10_000, max_seconds=4.0)
    print(f"StarDist 2048^2 postprocess: max gap {max(gaps[:-1]):.2f} s over {len(gaps) - 1} events, "
          f"close {gaps[-1] * 1e3:.1f} ms")
    assert len(gaps) > 10 and max(gaps) < LIMIT


def test_maskrcnn_paste_cancels():
    from seglab.models.detections import Detections

    model = get_model("maskrcnn-nuclei")
    rng = np.random.default_rng(0)
    n, size = 20_000, 4096
    xy = rng.uniform(0, size - 20, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + 16], axis=1)
    dets = Detections(boxes, rng.uniform(0.8, 1.0, n).astype(np.float32), np.ones(n, np.int64),
                      rng.uniform(0, 1, (n, 28, 28)).astype(np.float32), (size, size))
    gen = postprocess_events(model, dets, model.thresholds(), (size, size), _run())
    gaps = _drive(gen, 10, max_seconds=3.0)
    print(f"Mask R-CNN paste of 20,000 detections: max gap {max(gaps[:-1]):.2f} s, close {gaps[-1] * 1e3:.1f} ms")
    assert len(gaps) > 3 and max(gaps) < LIMIT


def test_maskrcnn_tile_cancels_between_network_stages():
    model = get_model("maskrcnn-nuclei")
    rng = np.random.default_rng(0)
    img = (rng.random((768, 768)) * 50).astype(np.uint8)
    img[::40, :], img[:, ::40] = 200, 200  # a grid that gives thousands of proposals
    gen = segment_iter(model, img, device="cpu", tile_size=1024)
    gaps = _drive(gen, 10, stage="tile", max_seconds=20.0)
    print(f"Mask R-CNN 768^2 tile: max gap {max(gaps[:-1]):.2f} s over {len(gaps) - 1} events, "
          f"close {gaps[-1] * 1e3:.1f} ms")
    assert len(gaps) > 6 and max(gaps) < LIMIT


def test_tuning_cancels():
    from seglab.evaluation import AnnotatedImage, tune_thresholds_iter
    from tests_helpers import blob_image

    model = get_model("unet-nuclei")
    items = [AnnotatedImage(*blob_image((512, 512), n=60, seed=s)) for s in range(3)]
    gen = tune_thresholds_iter(model, items, model.threshold_grid, device="cpu")
    gaps = _drive(gen, 40, max_seconds=5.0)
    print(f"tuning: max gap {max(gaps[:-1]):.2f} s over {len(gaps) - 1} events, close {gaps[-1] * 1e3:.1f} ms")
    assert len(gaps) > 5 and max(gaps) < LIMIT


def test_segmentation_reports_postprocessing_steps(tiny_model):
    from tests_helpers import blob_image

    img, _ = blob_image((256, 256), n=30)
    events = [ev for ev in segment_iter(tiny_model, img, device="cpu", thresholds={"prob_thresh": 0.0})
              if ev.stage == "postprocess"]
    assert len(events) >= 3 and events[-1].done == events[-1].total
