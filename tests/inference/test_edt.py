"""The compiled distance transform (seglab.inference.edt) gives scipy's values exactly."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from seglab.inference.edt import distance_to_background


@pytest.mark.parametrize("seed", range(4))
def test_equals_scipy_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        if rng.random() < 0.5:
            mask = rng.random((h, w)) < rng.random()
        else:  # blobs: long runs without background, columns without any
            mask = ndi.binary_dilation(rng.random((h, w)) < 0.03, iterations=int(rng.integers(1, 12)))
        np.testing.assert_array_equal(distance_to_background(mask), ndi.distance_transform_edt(mask))


def test_edge_cases():
    full = np.ones((5, 7), bool)
    np.testing.assert_array_equal(distance_to_background(full), ndi.distance_transform_edt(full))
    empty = np.zeros((4, 4), bool)
    assert not distance_to_background(empty).any()
    square = np.zeros((9, 9), bool)
    square[2:7, 2:7] = True
    d = distance_to_background(square)
    assert d.dtype == np.float64 and d[4, 4] == 3.0 and d[2, 2] == 1.0 and d[0, 0] == 0.0
