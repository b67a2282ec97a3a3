"""Turn a user's image plane into the float tensor a model expects: channels, then percentiles."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
    n = n_image = arr.shape[0]
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
    has = (f"the image has {n} {kind} channel(s)" if channels is None else
           f"{n} were picked (channels {','.join(map(str, channels))} of the image's {n_image})")
    raise SeglabError(
        f"the model takes {model_channels} channel(s) but {has}; "
        f"pick {model_channels} channel(s): --channels (command line), 'Channels' (Segment widget) "
        f"or channels= (Python), e.g. {','.join(str(i) for i in range(model_channels))} "
        f"(channels={list(range(model_channels))} in Python)"
    )


#: sides of a plane, each seen as lines from the edge inwards (see :func:`edge_lines`)
SIDES = ("top", "bottom", "left", "right")
#: at most this many lines at one side are taken for an artifact
MAX_EDGE_LINES = 4
#: an edge line is an artifact when its median differs from the first sound line inwards by more
#: than this (in normalised units: a fraction of the percentile range) ...
EDGE_JUMP = 0.5
#: ... while that sound line differs from its own inner neighbour by less than this
EDGE_STEADY = 0.1
#: planes smaller than this (either side) are left as they are
MIN_MENDED_SIDE = 16


def edge_lines(ch: np.ndarray, side: str) -> np.ndarray:
    """A view of the ``(H, W)`` plane ``ch`` whose first row is the line at ``side``, the next
    rows going inwards (writing into it writes into ``ch``)."""
    return {"top": ch, "bottom": ch[::-1], "left": ch.T, "right": ch.T[::-1]}[side]


def edge_artifact_depth(medians: Sequence[float]) -> int:
    """How many lines at an edge are an artifact, given the medians of its first
    ``MAX_EDGE_LINES + 2`` lines (normalised): the largest ``k`` whose lines ``0..k-1`` each
    differ from line ``k`` by more than ``EDGE_JUMP`` while line ``k`` matches line ``k+1``."""
    m = [float(v) for v in medians]
    for k in range(min(MAX_EDGE_LINES, len(m) - 2), 0, -1):
        if abs(m[k] - m[k + 1]) < EDGE_STEADY and all(abs(m[j] - m[k]) > EDGE_JUMP for j in range(k)):
            return k
    return 0


def edge_depth(lines: np.ndarray) -> int:
    """:func:`edge_artifact_depth` of an edge seen as lines from the edge inwards (a view from
    :func:`edge_lines`; at least its first ``MAX_EDGE_LINES + 2`` lines are read)."""
    return edge_artifact_depth(np.median(lines[: MAX_EDGE_LINES + 2], axis=1))


def find_edge_artifacts(ch: np.ndarray) -> dict[str, int]:
    """Artifact lines at the edges of a normalised ``(H, W)`` plane, ``{side: n_lines}``.

    A camera, scanner or converter often leaves a black (or white) line of one or two pixels at
    an image's edge; a nuclei model reads a dark line on a bright background as a row of nuclei
    (DSB2018's brightfield images have such columns: dozens of false objects each). Natural
    content cannot make the median of a whole edge line jump by half the image's range against
    its neighbour while the lines inwards agree, so only such lines count."""
    if min(ch.shape) < MIN_MENDED_SIDE:
        return {}
    depths = {side: edge_depth(edge_lines(ch, side)) for side in SIDES}
    return {side: k for side, k in depths.items() if k}


def mend_edges(ch: np.ndarray, artifacts: dict[str, int]) -> None:
    """Replace, in place, each artifact line of ``ch`` (a plane or a window touching those
    edges) by the first sound line inwards."""
    for side, k in artifacts.items():
        lines = edge_lines(ch, side)
        if lines.shape[0] > k:
            lines[:k] = lines[k]


#: ``normalization["bright_outliers"]``: the high percentile is lowered when the plane's typical
#: object peak lies below ``1 / OUTLIER_RATIO`` of the range it sets (bright debris, dust, dead
#: cells over more than 0.2 % of a fluorescence image), to ``OUTLIER_RATIO`` x that peak; 3.5 lies
#: between the 98th and 99th percentiles of the ratio over DSB2018's dark-background ``train``
#: images (3.29 / 4.64), and did best on the tune set among 1.8-6 (session 27)
OUTLIER_RATIO = 3.5
#: ... looked for only on a dark background: its median at most this share of the range
OUTLIER_DARK = 0.25
#: peaks are local maxima (5 x 5) of the plane smoothed by this sigma (pixels of the sample)
OUTLIER_SIGMA = 1.5
#: ... above the smoothed plane's median by 6 robust sigmas and by this share of the range (its
#: high end read without the pixels at the plane's maximum)
OUTLIER_FLOOR = 0.05


def smoothed(plane: np.ndarray) -> np.ndarray:
    """The plane smoothed by :data:`OUTLIER_SIGMA` (what both white-point rules read)."""
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(plane.astype(np.float32, copy=False), OUTLIER_SIGMA)


def typical_peak(plane: np.ndarray, lo: float, hi: float, g: np.ndarray | None = None) -> float | None:
    """The median height of the local maxima (a plateau once) that stand out of a dark background
    in a ``(H, W)`` plane: a typical object's brightness, counted per object rather than per pixel
    (so a few large bright things do not outweigh many nuclei); None when there is no dark
    background or fewer than 5 such peaks. ``g``: the plane :func:`smoothed`, when already made."""
    from scipy import ndimage as ndi

    every = (slice(None, None, 3), slice(None, None, 3))  # medians of a ninth of the pixels: as good, faster
    med = float(np.median(plane[every]))
    if hi - lo <= 0 or (med - lo) / (hi - lo) > OUTLIER_DARK:
        return None
    g = smoothed(plane) if g is None else g
    gs = g[every]
    gm = float(np.median(gs))
    # the share of the range a peak must pass is taken without the pixels at the plane's maximum:
    # saturated debris (16-bit dust over 12-bit nuclei) would otherwise lift it above the nuclei
    sample = plane[every]
    below = sample[sample < sample.max()]
    span = float(np.percentile(below, 99.8)) - lo if below.size else hi - lo
    floor = gm + max(6 * 1.4826 * float(np.median(np.abs(gs - gm))), OUTLIER_FLOOR * span)
    peaks = (g == ndi.maximum_filter(g, 5)) & (g > floor)
    lab, n = ndi.label(peaks)
    if n < 5:
        return None
    # connected maxima are equal (each is the largest of the other's neighbourhood): one value each
    _, first = np.unique(lab[peaks], return_index=True)
    return float(np.median(g[peaks][first]))


def outlier_robust_high(plane: np.ndarray, lo: float, hi: float, g: np.ndarray | None = None) -> float:
    """``hi``, or lower when bright outliers set it: ``lo + OUTLIER_RATIO x (typical peak - lo)``
    (the normalised plane is then clipped at 1: the debris saturates)."""
    peak = typical_peak(plane, lo, hi, g)
    if peak is None or peak <= lo:
        return hi
    return float(min(hi, lo + OUTLIER_RATIO * (peak - lo)))


#: ``normalization["sparse_objects"]``: pixels of the :func:`smoothed` plane this many robust
#: sigmas above its median stand out of the background (objects) ...
SPARSE_SIGMAS = 8.0
#: ... and when the high percentile lies below this share of their bright end (their 99th
#: percentile, above the low one), it is raised to it: objects on less than ~0.2 % of the image
#: leave the 99.8th percentile in the background's noise
SPARSE_SHARE = 0.6
#: ... provided they are at least this many pixels of the sample (not a few hot pixels) ...
SPARSE_MIN_PIXELS = 20
#: ... on a dark background: the smoothed plane's median at most this share of their bright end
SPARSE_DARK = 0.25


def standing_out(g: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The pixels of a :func:`smoothed` plane ``g`` that stand out of its background
    (:data:`SPARSE_SIGMAS` robust sigmas above its median, both read on a ninth of the pixels), and
    that median; None for the pixels when the plane has no spread (``sparse_objects`` and the size
    estimate's blobs, :func:`seglab.inference.diameter.blob_size`)."""
    gs = g[::3, ::3]
    gm = float(np.median(gs))
    spread = 1.4826 * float(np.median(np.abs(gs - gm)))
    return (g > gm + SPARSE_SIGMAS * spread if spread > 0 else None), gm


def sparse_robust_high(plane: np.ndarray, lo: float, hi: float, g: np.ndarray | None = None) -> float:
    """``hi``, or higher when the objects are too few to set it: ``lo + SPARSE_SHARE x`` (the
    bright end of the pixels that stand out of the background ``- lo``)."""
    objects, gm = standing_out(smoothed(plane) if g is None else g)
    if objects is None or int(objects.sum()) < SPARSE_MIN_PIXELS:
        return hi
    top = float(np.percentile(plane[objects], 99))
    if top <= lo or gm - lo > SPARSE_DARK * (top - lo):
        return hi
    return float(max(hi, lo + SPARSE_SHARE * (top - lo)))


def channel_range(values: np.ndarray, low: float, high: float,
                  plane_at: Callable[[float], np.ndarray] | None = None, eps: float = 1e-6,
                  outliers: bool = True, sparse: bool = False) -> tuple[float, float, bool]:
    """A channel's ``low``/``high`` percentiles of ``values``, in memory and out of core alike;
    with ``plane_at`` (the strided plane, its uncounted pixels at the given low percentile) the
    high one raised when the objects are too few to set it (``sparse``: the ``sparse_objects``
    rule, :func:`sparse_robust_high`) and lowered past bright debris (``outliers``: the
    ``bright_outliers`` rule, :func:`outlier_robust_high`). Returns ``(lo, hi, clip)``: ``clip``
    when it was lowered (the normalised channel is then clipped at 1: the debris saturates)."""
    lo, hi = np.percentile(values, [low, high])  # the sample's own precision, as the scaling has always used
    if plane_at is None or not (outliers or sparse) or hi - lo < eps:
        return lo, hi, False
    plane = plane_at(lo)
    g = smoothed(plane)
    if sparse:
        raised = sparse_robust_high(plane, lo, hi, g)
        hi = raised if raised > hi else hi
    if not outliers:
        return lo, hi, False
    robust = outlier_robust_high(plane, lo, hi, g)
    return lo, robust, robust < hi


def percentile_normalize(
    x: np.ndarray, low: float = 1.0, high: float = 99.8, eps: float = 1e-6, mend: bool = True,
    exclude: np.ndarray | None = None, outliers: bool = False, sparse: bool = False,
) -> np.ndarray:
    """Scale each channel of ``(C, H, W)`` so its ``low``/``high`` percentiles map to 0/1.

    NaN pixels, and those of the ``(H, W)`` mask ``exclude`` (filled padding: no image), are
    ignored for the percentiles; NaN is set to 0 afterwards. A constant
    channel becomes all zeros (so an empty image gives no objects, not noise). With ``mend``,
    artifact lines at the edges (:func:`find_edge_artifacts`) take their inner neighbour's values
    (in the output; ``x`` is never changed).
    """
    if x.ndim != 3:
        raise ValueError(f"expected (C, H, W), got {x.shape}")
    out = np.empty(x.shape, dtype=np.float32)
    for c in range(x.shape[0]):
        ch = x[c]
        finite = np.isfinite(ch)
        counted = finite if exclude is None or exclude.all() else finite & ~exclude
        if not finite.any():
            out[c] = 0.0
            continue
        sample = ch[counted] if not counted.all() else ch
        if sample.size > 1_000_000:  # percentiles of a strided sample are within noise of the full ones
            step = int(np.ceil(np.sqrt(sample.size / 1_000_000)))
            sample = (ch[::step, ::step][counted[::step, ::step]])
        plane_at = (lambda lo, ch=ch, counted=counted: _peak_plane(ch, counted, lo)) if outliers or sparse else None
        lo, hi, clip = channel_range(sample, low, high, plane_at, eps, outliers, sparse)
        if hi - lo < eps:
            out[c] = 0.0
        else:
            np.subtract(ch, lo, out=out[c])
            out[c] *= 1.0 / (hi - lo)
            if clip:  # the debris saturates at the new white point, as a camera (and training) shows it
                np.minimum(out[c], 1.0, out=out[c])
        if not finite.all():
            out[c][~finite] = 0.0
        if mend:
            mend_edges(out[c], find_edge_artifacts(out[c]))
    return out


def _peak_plane(ch: np.ndarray, counted: np.ndarray, lo: float) -> np.ndarray:
    """The strided plane :func:`typical_peak` reads (as the percentile sample: at most ~1M
    pixels), with pixels not counted (NaN, padding) at ``lo``."""
    step = int(np.ceil(np.sqrt(ch.size / 1_000_000))) if ch.size > 1_000_000 else 1
    plane = ch[::step, ::step]
    keep = counted[::step, ::step]
    return plane if keep.all() else np.where(keep, plane, lo)


#: with ``normalization["fill_black"]``: a pixel at or below this share of the image's bright end
#: (99.8th percentile over its channels) in every channel is padding, not tissue
BLACK_LEVEL = 0.04
#: ... and is filled with this percentile of the other pixels, per channel: the slide's glass
GLASS_PERCENTILE = 99.0
#: pixels beside the padding filled too: a rotated image's interpolated edge ramps from black to
#: the image (bilinear: with this margin its darkest pixel left is 80 % of the background, without
#: it down to the black level; 2 px also took real tissue: `stardist-he`, rotated tiles, PQ -0.015)
FILL_MARGIN = 1
#: pixels of a plane looked at to find its padding (a strided sample)
PADDING_SAMPLE = 256 * 256
#: ``fill_black: "brightfield"`` (the grey models): padding only when the other pixels are a bright
#: background, their median at least this share of their 99.8th percentile (DSB2018's grey
#: ``train`` images with black padding added: brightfield 0.89-0.97, fluorescence 0.02-0.35, whose
#: black is its background and stays)
BRIGHTFIELD_REST = 0.6
#: ... and only when that background is at least this share of the pixels: saturated debris over
#: 1 % of a fluorescence image sets the black level so high that the whole field counted as
#: "padding" beside a "bright background" of debris, and was filled with it (session 27)
BRIGHTFIELD_MIN_REST = 0.1


@dataclass
class BlackPadding:
    """Black padding of a brightfield image (a scanner's out-of-scan area, a rotated tile's
    corners): pixels at or below ``level`` in every channel, to be filled with ``glass``."""

    level: float
    glass: np.ndarray  # (C,)

    def mask(self, x: np.ndarray) -> np.ndarray:
        """The padding pixels of ``(C, ...)`` ``x``; in a ``(C, H, W)`` plane also the
        :data:`FILL_MARGIN` px beside them (the ramp an interpolated rotation leaves between
        black and image would read as a dark line)."""
        black = (x <= self.level).all(axis=0)
        if black.ndim == 2 and FILL_MARGIN and black.any():
            from scipy import ndimage as ndi

            black = ndi.binary_dilation(black, iterations=FILL_MARGIN)
        return black

    def fill(self, x: np.ndarray, black: np.ndarray | None = None) -> np.ndarray:
        """A copy of ``(C, ...)`` ``x`` with its padding pixels (:meth:`mask`, or ``black`` when
        already found) set to the glass colour."""
        black = self.mask(x) if black is None else black
        if not black.any():
            return x
        out = np.array(x, dtype=np.float32, copy=True)
        out[:, black] = self.glass[:, None]
        return out


def find_black_padding(x: np.ndarray, bright_rest: bool = False) -> BlackPadding | None:
    """The black padding of ``(C, ...)`` pixels of a brightfield image, or None when there is none
    (or nothing but black). Tissue is never black in every channel under transmitted light,
    so such pixels are no image: left black they pull the 1st percentile to zero (tissue loses
    contrast) and a model reads them as something (`stardist-he` on MoNuSeg `val` tiles at 20x
    rotated 30 degrees with black corners: PQ 0.276 with `auto`, 0.529 with them filled).
    With ``bright_rest`` only when the other pixels are a bright background
    (:data:`BRIGHTFIELD_REST`): a grey image may be fluorescence, whose black is its background."""
    if x.ndim == 3:  # a strided sample of the plane (padding is large areas, not single pixels)
        step = max(1, int(np.ceil(np.sqrt(x.shape[1] * x.shape[2] / PADDING_SAMPLE))))
        flat = x[:, ::step, ::step].reshape(x.shape[0], -1)
    else:
        flat = x.reshape(x.shape[0], -1)
        flat = flat[:, :: max(1, int(np.ceil(flat.shape[1] / PADDING_SAMPLE)))]
    finite = np.isfinite(flat).all(axis=0)
    if not finite.any():
        return None
    flat = flat[:, finite] if not finite.all() else flat
    level = BLACK_LEVEL * float(np.percentile(flat, 99.8))
    black = (flat <= level).all(axis=0)
    if not black.any() or black.all() or level <= 0:
        return None
    if bright_rest:
        if (~black).mean() < BRIGHTFIELD_MIN_REST:  # bright specks on a dark field: fluorescence with debris
            return None
        rest = flat[:, ~black].mean(axis=0)
        if float(np.median(rest)) < BRIGHTFIELD_REST * float(np.percentile(rest, 99.8)):
            return None
    return BlackPadding(level, np.percentile(flat[:, ~black], GLASS_PERCENTILE, axis=1).astype(np.float32))


def padding_of(x: np.ndarray, normalization: dict) -> BlackPadding | None:
    """The black padding a model with this ``normalization`` fills in ``(C, ...)`` pixels:
    ``fill_black`` true: any (:func:`find_black_padding`); ``"brightfield"``: only beside a bright
    background; absent or false: none."""
    mode = normalization.get("fill_black", False)
    if not mode:
        return None
    return find_black_padding(x, bright_rest=mode == "brightfield")


def model_input(
    plane: np.ndarray,
    input_channels: int,
    normalization: dict,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    rgb: bool | None = None,
) -> np.ndarray:
    """What a model sees of a plane, in training and inference alike: its channels (black
    padding filled with the glass colour, for models whose ``normalization`` says
    ``fill_black``: :func:`padding_of`), normalised."""
    return normalized_channels(select_channels(plane, input_channels, channel_axis, channels, rgb), normalization)


def normalized_channels(x: np.ndarray, normalization: dict) -> np.ndarray:
    """:func:`model_input` of a plane's channels as the model takes them (``(C, H, W)`` float32,
    from :func:`select_channels`)."""
    padding = padding_of(x, normalization)
    exclude = None
    if padding is not None:  # filled with the glass colour, and left out of the percentiles: no image
        exclude = padding.mask(x)
        x = padding.fill(x, exclude)
    return percentile_normalize(x, float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8)),
                                exclude=exclude, outliers=bool(normalization.get("bright_outliers", False)),
                                sparse=bool(normalization.get("sparse_objects", False)))
