"""Turn a user's image plane into the float tensor a model expects: channels, then percentiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seglab.errors import SeglabError

# ITU-R BT.601 luma weights: the same conversion is used in training and inference.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def select_channels(
    plane: np.ndarray,
    model_channels: int,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    rgb: bool | None = None,
) -> np.ndarray:
    """Return a ``(C, H, W)`` float32 array with ``C == model_channels``.

    ``plane`` is ``(H, W)`` or has one channel axis. RGB(A) colour given to a
    one-channel model becomes grey (luma); RGBA given to a three-channel model loses
    its alpha; a grey plane given to a multi-channel model is repeated. Other
    multichannel images need ``channels`` picked by the user: they are never mixed.
    ``rgb`` says whether the channels are colour; None means the rule for arrays
    without axes: a last channel axis of 3 or 4 entries is RGB(A).
    """
    arr = np.asarray(plane)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.number)) or np.iscomplexobj(arr):
        raise SeglabError(f"image has unsupported data type {arr.dtype}; expected integer or float pixels")
    if channel_axis is None:
        if arr.ndim != 2:
            raise SeglabError(
                f"expected a 2D image plane (height, width), got shape {arr.shape}; "
                "say which axis holds channels"
            )
        arr = arr[None]
    else:
        if arr.ndim != 3:
            raise SeglabError(f"expected (height, width) plus one channel axis, got shape {arr.shape}")
        if rgb is None:
            rgb = channel_axis % 3 == 2 and arr.shape[channel_axis] in (3, 4)
        arr = np.moveaxis(arr, channel_axis, 0)
    n = arr.shape[0]
    if channels is not None:
        channels = list(channels)
        bad = [c for c in channels if not -n <= c < n]
        if bad:
            raise SeglabError(f"channel(s) {bad} do not exist; the image has {n} channel(s) (0..{n - 1})")
        arr = arr[channels]
        n = arr.shape[0]
    if min(arr.shape[1:]) < 1:
        raise SeglabError(f"image is empty (shape {arr.shape[1:]})")
    arr = arr.astype(np.float32, copy=False)
    if n == model_channels:
        return arr
    if rgb and channels is None and n in (3, 4):
        if model_channels == 1:
            return np.tensordot(_LUMA, arr[:3], axes=1)[None].astype(np.float32)
        if model_channels == 3:
            return arr[:3]
    if n == 1:
        return np.repeat(arr, model_channels, axis=0)
    kind = "RGB" if rgb else "non-RGB"
    raise SeglabError(
        f"the model takes {model_channels} channel(s) but the image has {n} {kind} channel(s); "
        f"pick {model_channels} channel(s): --channels (command line), 'Channels' (Segment widget) "
        f"or channels= (Python), e.g. {' '.join(str(i) for i in range(model_channels))}"
    )


def percentile_normalize(
    x: np.ndarray, low: float = 1.0, high: float = 99.8, eps: float = 1e-6
) -> np.ndarray:
    """Scale each channel of ``(C, H, W)`` so its ``low``/``high`` percentiles map to 0/1.

    NaN pixels are ignored for the percentiles and set to 0 afterwards; a constant
    channel becomes all zeros (so an empty image gives no objects, not noise).
    """
    if x.ndim != 3:
        raise ValueError(f"expected (C, H, W), got {x.shape}")
    out = np.empty(x.shape, dtype=np.float32)
    for c in range(x.shape[0]):
        ch = x[c]
        finite = np.isfinite(ch)
        if not finite.any():
            out[c] = 0.0
            continue
        sample = ch[finite] if not finite.all() else ch
        if sample.size > 1_000_000:  # percentiles of a strided sample are within noise of the full ones
            step = int(np.ceil(np.sqrt(sample.size / 1_000_000)))
            sample = (ch[::step, ::step][finite[::step, ::step]])
        lo, hi = np.percentile(sample, [low, high])
        if hi - lo < eps:
            out[c] = 0.0
        else:
            np.subtract(ch, lo, out=out[c])
            out[c] *= 1.0 / (hi - lo)
        if not finite.all():
            out[c][~finite] = 0.0
    return out


def model_input(
    plane: np.ndarray,
    input_channels: int,
    normalization: dict,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    rgb: bool | None = None,
) -> np.ndarray:
    """What a model sees of a plane, in training and inference alike: its channels, normalised."""
    x = select_channels(plane, input_channels, channel_axis, channels, rgb)
    return percentile_normalize(x, float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8)))
