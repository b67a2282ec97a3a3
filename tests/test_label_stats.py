"""Per-label sums and boxes (seglab.label_stats) and the out-of-core object statistics built on them."""

import numpy as np
from scipy import ndimage as ndi

from seglab.label_stats import label_sums
from seglab.inference.stitching import ObjectStats


def _labels(seed, shape=(90, 130), n=40):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        y, x = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 8)
        lab[y : y + rng.integers(1, 9), x : x + rng.integers(1, 9)] = i
    return lab


def test_label_sums_equal_bincount_and_find_objects():
    for seed in range(5):
        lab = _labels(seed)
        n = int(lab.max()) + 3  # ids beyond the largest are absent
        area, sy, sx, box = label_sums(lab, n)
        h, w = lab.shape
        yy, xx = np.mgrid[:h, :w]
        np.testing.assert_array_equal(area[1:], np.bincount(lab.ravel(), minlength=n)[1:])
        np.testing.assert_array_equal(sy[1:], np.bincount(lab.ravel(), weights=yy.ravel(), minlength=n)[1:])
        np.testing.assert_array_equal(sx[1:], np.bincount(lab.ravel(), weights=xx.ravel(), minlength=n)[1:])
        for i, sl in enumerate(ndi.find_objects(lab, max_label=n - 1), start=1):
            if sl is None:
                assert area[i] == 0 and tuple(box[i]) == (h, w, 0, 0)
            else:
                assert tuple(box[i]) == (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)


def test_object_statistics_join_parts_of_one_object_across_blocks():
    """Two blocks side by side; block ids mapped to final ids (one object crosses the seam)."""
    whole = _labels(7, shape=(60, 120), n=25)
    whole[20:30, 55:65] = 99  # crosses x = 60
    stats = ObjectStats()
    for x0 in (0, 60):
        core = whole[:, x0 : x0 + 60]
        lut = np.arange(100, dtype=np.uint32)  # block ids are the final ids here
        stats.add_block(core, lut, (0, x0), None)
    for i in np.unique(whole)[1:]:
        ys, xs = np.nonzero(whole == i)
        assert stats.area[i] == ys.size
        assert stats.sum_y[i] == ys.sum() and stats.sum_x[i] == xs.sum()
        assert tuple(stats.box[i]) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
