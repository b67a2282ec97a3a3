"""Euclidean distance to the background, compiled with numba.

The same values as ``scipy.ndimage.distance_transform_edt`` (exact squared distances, then the
square root), by Felzenszwalb and Huttenlocher's two passes (2012): distances along columns,
then the lower envelope of parabolas along rows. scipy's version also computes the nearest
background pixel of every pixel, which made it most of the size estimate's measuring time
(about 15 ms for a 256x256 plane, against well under 1 ms here).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _squared_edt(background):
    h, w = background.shape
    big = h + w  # farther than any pixel: a column without background
    g = np.empty((h, w), dtype=np.int64)
    for x in range(w):
        last = -1
        for y in range(h):
            if background[y, x]:
                last = y
                g[y, x] = 0
            elif last >= 0:
                g[y, x] = y - last
            else:
                g[y, x] = big
        last = -1
        for y in range(h - 1, -1, -1):
            if background[y, x]:
                last = y
            elif last >= 0 and last - y < g[y, x]:
                g[y, x] = last - y
    out = np.empty((h, w), dtype=np.int64)
    f = np.empty(w, dtype=np.int64)
    v = np.empty(w, dtype=np.int64)
    z = np.empty(w + 1, dtype=np.float64)
    for y in range(h):
        for q in range(w):
            f[q] = g[y, q] * g[y, q]
        k = 0
        v[0] = 0
        z[0] = -np.inf
        z[1] = np.inf
        for q in range(1, w):
            p = v[k]
            s = ((f[q] + q * q) - (f[p] + p * p)) / (2.0 * (q - p))
            while s <= z[k]:  # z[0] = -inf ends it
                k -= 1
                p = v[k]
                s = ((f[q] + q * q) - (f[p] + p * p)) / (2.0 * (q - p))
            k += 1
            v[k] = q
            z[k] = s
            z[k + 1] = np.inf
        k = 0
        for q in range(w):
            while z[k + 1] < q:
                k += 1
            d = q - v[k]
            out[y, q] = d * d + f[v[k]]
    return out


def distance_to_background(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (float64) of every pixel of a 2D boolean ``mask`` to the nearest pixel
    outside it (0 outside), as ``scipy.ndimage.distance_transform_edt(mask)``."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.all() or mask.size == 0:
        from scipy import ndimage as ndi

        return ndi.distance_transform_edt(mask)
    return np.sqrt(_squared_edt(~mask).astype(np.float64))
