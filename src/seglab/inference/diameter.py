"""Object size: measuring it on labels, choosing the rescale factor, and estimating it with the model.

A model's ``config.object_diameter`` is the median equivalent diameter (``2 sqrt(area / pi)``,
pixels) of the objects it was trained on. Segmenting with ``diameter=D`` rescales each plane
by ``object_diameter / D`` so that objects arrive at the model's size; ``diameter="auto"``
estimates ``D`` first (:func:`estimate_diameter_iter`).

The estimate segments the image with the model itself (:func:`estimate_diameter_iter`): at its
own scale first (the whole plane when it is small, so that this is the run's own pass when no
rescaling follows). A model cuts objects far larger than its own size into fragments of its size;
two guards catch that. A model with a size model (:mod:`seglab.inference.size_model`; every
built-in) has it read the size from the network's encoder features, which see the large objects,
and measures again at the scale it proposes when the two disagree. Without one, a check at half
scale looks for larger objects that the objects found make up. The size measured is robust to such
fragments when they touch: each connected piece of foreground gives the diameter of the largest
disc inside it, and the median over pieces, times a constant measured on nuclei
(:data:`INSCRIBED_TO_EQUIVALENT`), is the equivalent diameter (:func:`measure`). Fragments with
gaps between them are found by the half-scale check (:func:`fragment_cover`): larger objects
there that the first objects make up. Sizes within :data:`AUTO_TOLERANCE` of the model's are left
alone; others are brought to :data:`AUTO_AIM` (:func:`auto_factor`); a model whose config has
``auto_rescale`` (measured for it) uses its own tolerance and aim instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seglab.errors import SeglabError
from seglab.inference.denoise import is_blank, structure_ratio
from seglab.inference.feature_tap import EncoderTap
from seglab.inference.rescale import rescale_with_surround, resize_image, restore_prediction, scaled_shape
from seglab.inference.tiling import Surround
from seglab.models.base import Prediction, SegmentationModel

AUTO = "auto"
#: rescale factors within this band around 1 are not applied: the built-ins are trained with
#: scale augmentation over 0.7x-1.4x, so objects within 10 % of the model's size are in the
#: middle of what it saw, and resampling would only cost time and a little sharpness
NO_RESCALE_BAND = (0.9, 1.1)
#: ``"auto"`` leaves images alone while the estimated diameter is within these multiples of the
#: model's. Measured on DSB2018 ``val`` (U-Net, per image, at rescale factors 0.35-2 of the native
#: images): the models do best on each kind of image at its own size, lose little when large
#: nuclei are shrunk (40-80 px nuclei: AP@0.5 0.84-0.89 from 0.35x to 1x) and much when small
#: ones are (nuclei under 20 px: 0.67 -> 0.54 at 0.5x), or when nuclei of 13-20 px are enlarged
#: 2x (0.67 -> 0.53), and nuclei under 13 px gain nothing from being enlarged 1.4x (0.65 -> 0.63).
#: The top of the band is lower than the largest sizes trained on (31 px for the built-ins), since
#: 2x-enlarged small nuclei reach that size; the bottom (10 px for the built-ins) leaves DSB2018's
#: own small nuclei alone (enlarging them costs 2-4x the time for no gain)
AUTO_TOLERANCE = (0.6, 1.5)
#: where ``"auto"`` brings objects from outside :data:`AUTO_TOLERANCE`: small ones to the model's
#: size, large ones a little above it (shrinking further loses detail and gains nothing)
AUTO_AIM = (1.0, 1.25)
#: ``"auto"`` never enlarges more than this: an estimate of a pixel or two is specks, not nuclei
#: (Mask R-CNN on a DSB2018 image enlarged 4x measured 1.3 px and enlarged it 12.8x, finding nothing)
AUTO_MAX_ENLARGE = 4.0
#: a calibration that puts the image's pixels more than this many times larger or smaller than the
#: model's is not believed (e.g. a 72 dpi "resolution" read as 353 um per pixel): ``auto`` estimates
PIXEL_SIZE_MAX_RATIO = 8.0
#: the largest rescale factor a run applies, either way (enlarging up to x16, shrinking down to
#: 1/16): past it a given diameter is refused. The models are trained at 0.7x-1.4x of their size and
#: ``auto`` enlarges at most :data:`AUTO_MAX_ENLARGE` times; enlarging a 1024 px plane 16x already
#: makes it 16,384 px a side (256 M pixels, GiBs per plane) from objects of a pixel, and shrinking
#: it 16x leaves 64 px, a fraction of one tile's context, in which objects of 16x the model's size
#: (260 px for the built-ins) still fit; beyond, a run is out of memory or finds nothing
MAX_RESCALE = 16.0
#: ratio of the median equivalent diameter to the median diameter of the largest inscribed
#: disc of the (union) foreground pieces; measured on the DSB2018 ``train`` labels
INSCRIBED_TO_EQUIVALENT = 1.27


def equivalent_diameters(labels: np.ndarray, exclude_border: bool = False) -> np.ndarray:
    """Equivalent diameter ``2 sqrt(area / pi)`` of every object of a 2D label image.

    ``exclude_border`` leaves out objects touching the image border (cut, so smaller).
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0)
    flat = labels.ravel().astype(np.int64)
    counts = np.bincount(flat)
    if exclude_border and labels.ndim == 2:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        counts[border] = 0
    counts[0] = 0
    area = counts[counts > 0].astype(np.float64)
    return 2.0 * np.sqrt(area / math.pi)


def weighted_median(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The median of ``values`` where each counts ``weights`` times."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values")
    if weights is None:
        return float(np.median(values))
    order = np.argsort(values)
    cum = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2.0)])


def median_diameter(label_images: Iterable[np.ndarray], weights: Sequence[float] | None = None,
                    per_pixel: bool = False) -> float | None:
    """Median equivalent diameter (pixels) of the objects of a labels collection (None without objects).

    ``weights`` gives each image's weight; with ``per_pixel`` an object's weight is its image's
    weight divided by the image's area, which is how often a patch sampler that picks images by
    weight and positions uniformly shows it to the network (the size the network saw).
    """
    values, w = [], []
    for i, lab in enumerate(label_images):
        lab = np.asarray(lab)
        d = equivalent_diameters(lab)
        weight = 1.0 if weights is None else float(weights[i])
        if per_pixel:
            weight /= max(lab.size, 1)
        values.append(d)
        w.append(np.full(d.size, weight))
    if not values or sum(v.size for v in values) == 0:
        return None
    return weighted_median(np.concatenate(values), np.concatenate(w))


def inscribed_diameters(labels: np.ndarray, exclude_border: bool = True) -> np.ndarray:
    """Diameter of the largest disc inside each connected piece of foreground (``labels > 0``).

    Adjacent objects join into one piece, so an object cut into fragments counts whole.
    """
    fg = np.asarray(labels) > 0
    if not fg.any():
        return np.zeros(0)
    from seglab.inference.edt import distance_to_background

    pieces, n = ndi.label(fg)
    dist = distance_to_background(np.pad(fg, 1, mode="edge" if not exclude_border else "constant"))[1:-1, 1:-1]
    # the largest distance per piece (``ndi.maximum`` gives the same, sorting every pixel: 7 ms a call)
    peak = np.zeros(n + 1)
    np.maximum.at(peak, pieces[fg], dist[fg])
    radius = peak[1:]
    if exclude_border:
        border = np.unique(np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]]))
        keep = np.ones(n + 1, dtype=bool)
        keep[border] = False
        radius = radius[keep[1:]]
    # a disc of diameter d has its largest inner distance at d / 2 (pixel centres: + 0.5)
    return 2.0 * np.maximum(radius - 0.5, 0.5)


def parse_diameter(value: object) -> float | str | None:
    """``"auto"``, ``None`` (also ``"none"``/``"off"``/``0``: no rescaling) or a positive number of pixels."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text in ("none", "off", "no", ""):
            return None
        try:
            value = float(text)
        except ValueError:
            raise SeglabError(f"diameter must be 'auto', 'none' or a number of pixels, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SeglabError(f"diameter must be 'auto', None or a number of pixels, got {value!r}")
    value = float(value)
    if value == 0:  # 0 means none, as in Cellpose
        return None
    if not (value > 0 and math.isfinite(value)):
        raise SeglabError(f"diameter must be a positive number of pixels, got {value:g}")
    return value


def scale_factor(model_diameter: float | None, diameter: float | None,
                 band: tuple[float, float] = NO_RESCALE_BAND) -> float:
    """The factor that brings objects of ``diameter`` to ``model_diameter``; 1 within ``band`` or when
    unknown; a :class:`SeglabError` naming both sizes when it is beyond :data:`MAX_RESCALE`."""
    if not model_diameter or not diameter:
        return 1.0
    f = float(model_diameter) / float(diameter)
    if not in_rescale_range(f):
        lo, hi = float(model_diameter) / MAX_RESCALE, float(model_diameter) * MAX_RESCALE
        raise SeglabError(f"diameter {float(diameter):g} px is too far from the model's object size "
                          f"{float(model_diameter):g} px (a rescale by {f:.3g}); give {lo:.3g} to {hi:.3g} px "
                          f"(objects rescaled at most {MAX_RESCALE:g}x either way), auto or none")
    return 1.0 if band[0] <= f <= band[1] else f


def in_rescale_range(factor: float) -> bool:
    """Whether a run may rescale by ``factor`` (within :data:`MAX_RESCALE` either way)."""
    return 1.0 / MAX_RESCALE <= factor <= MAX_RESCALE


def check_diameter(model: SegmentationModel, diameter: float | str | None) -> None:
    """Refuse a given ``diameter`` that ``model`` could only use rescaled beyond :data:`MAX_RESCALE`
    (before any image is read; :func:`scale_factor`'s error)."""
    if isinstance(diameter, float):
        scale_factor(model.config.object_diameter, diameter)


# ---- running the model at a scale ---------------------------------------------------------------
def scaled_plane_iter(
    model: SegmentationModel, x: np.ndarray, th: dict[str, float], factor: float, p: int = 0, n_planes: int = 1,
    *, tile_size: int = 1024, batch_size: int = 4, device: Any = "cpu", amp: bool = True,
    surround: Surround | None = None, tap: EncoderTap | None = None, augment: bool = False,
) -> Generator[Any, None, Prediction]:
    """One normalised ``(C, H, W)`` plane segmented at ``factor`` and returned on its own pixel grid.

    Dense families are post-processed at the model's scale and their labels, table and outlines
    brought back (:func:`~seglab.inference.rescale.restore_prediction`); instance families' boxes
    are scaled and their masks pasted at full resolution. ``surround``: the plane's real
    surroundings (in its own pixels), which the tiles take their context from (rescaled with it);
    ``tap``: an :class:`~seglab.inference.feature_tap.EncoderTap` reading the encoder as tiles pass;
    ``augment``: test-time augmentation (:mod:`~seglab.inference.dihedral`).
    """
    from seglab.inference.engine import TileRun, plane_prediction_iter

    if not in_rescale_range(factor):
        raise SeglabError(f"cannot rescale by {factor:.3g}: the factor must be from 1/{MAX_RESCALE:g} "
                          f"to {MAX_RESCALE:g}")
    shape = tuple(x.shape[-2:])
    run = TileRun(device, tile_size, batch_size, amp, p, n_planes, surround=surround, tap=tap, augment=augment)
    if factor == 1.0:
        return (yield from plane_prediction_iter(model, x, th, run))
    if surround is None:
        small = resize_image(x, scaled_shape(shape, factor))
    else:
        small, run.surround = rescale_with_surround(surround, shape, factor)
    return (yield from _prediction_on_grid(model, small, shape, th, run))


def _prediction_on_grid(model: SegmentationModel, small: np.ndarray, shape: tuple[int, int], th: dict[str, float],
                        run: Any) -> Generator[Any, None, Prediction]:
    """The prediction of a plane of ``shape`` made on ``small`` (the plane resized, same field of
    view), on the plane's own grid: dense families post-processed at the model's scale and brought
    back, instance families' raw output brought back by the family (Mask R-CNN: boxes scaled,
    masks pasted at full size) and post-processed there."""
    from seglab.inference.engine import postprocess_events

    raw = yield from model.raw_output_iter(small, th, run)
    to_original = getattr(model, "raw_to_original", None)
    if callable(to_original):
        sy, sx = small.shape[1] / shape[0], small.shape[2] / shape[1]
        return (yield from postprocess_events(model, to_original(raw, sy, sx, shape), th, shape, run))
    pred = yield from postprocess_events(model, raw, th, tuple(small.shape[-2:]), run)
    return pred if tuple(small.shape[-2:]) == tuple(shape) else restore_prediction(pred, shape)


# ---- the estimate -----------------------------------------------------------------------------
#: side (pixels at the probe's scale) of the window of a plane that a probe segments; every probe of a
#: plane larger than that has this one input shape
PROBE_SIZE = 256
#: planes of at most this many pixels are probed whole at factor 1: that probe is the run's own pass
#: when no rescaling is needed, so ``"auto"`` then costs one pass
WHOLE_PROBE_AREA = 2 * PROBE_SIZE * PROBE_SIZE
#: reflected pixels around a probe that only measures sizes (the model's full tile context, about
#: 112 px, would make a 128^2 half-scale probe of a 256^2 image 352^2 px instead of 192^2)
PROBE_CONTEXT = 32
#: most probe passes before the estimate gives its best guess
MAX_PASSES = 6
#: foreground measure over per-object median above which objects are taken to be cut into fragments
#: (on correct segmentations of nuclei the two agree: their median ratio is 1 by construction of
#: :data:`INSCRIBED_TO_EQUIVALENT`, and 1.27 for isolated round objects)
SPLIT_RATIO = 1.4
#: fewest objects (not touching the probe's border) a measurement needs
MIN_OBJECTS = 3
#: objects found on an enlarged probe that are, at its scale, below this share of the model's size
#: are specks of the enlarged noise, not objects: a probe enlarges to bring objects to the model's
#: size, and the model finds objects of about its own size. (A sparse field, three nuclei in a
#: 1024^2 field of camera noise: the probe at 2.3x found 50 "objects" of 6 px there, the next at
#: 5.9x 190 of 7 px, and ``auto`` enlarged 4x, giving 56,000 specks; ``benchmarks/bench_sparse.py``)
MIN_PROBED_SHARE = 0.5
#: a plane where what stands out of the background (8 robust sigmas above the median of the plane
#: smoothed by 1.5 px, as ``normalization["sparse_objects"]`` reads it) covers less than this share
#: is sparse: its blobs are objects apart, and their median equivalent diameter (:func:`blob_size`) ...
SPARSE_COVER = 0.02
#: ... replaces an estimate this many times smaller (or none), when above the model's tolerated
#: sizes: on a sparse field of large nuclei no probe window holds a whole one, and the size model
#: read the mostly empty window small (three `val` nuclei enlarged 3x in a 2048^2 field of their
#: background: `stardist-nuclei` AP@0.5 0.700 with ``auto`` against 0.929 with the true diameter)
BLOB_DISAGREE = 2.0
#: blobs smaller than this many pixels (of the sample) are not objects
BLOB_MIN_AREA = 20
#: pixels of the strided sample :func:`blob_size` reads (2048^2 planes every 3rd pixel; a sample of
#: 512^2 lost `stardist-nuclei` 0.929 -> 0.864 on the sparse fields of large nuclei)
BLOB_SAMPLE = 1_000_000
#: objects at factor 1 at least this fraction of the model's size are checked for fragments at half scale
CHECK_BELOW = 0.75
#: at half scale, objects this much larger (original pixels) than at factor 1 may mean fragments ...
CHECK_RATIO = 1.5
#: ... and do, when the objects at factor 1 cover at least this fraction of theirs: fragments of one
#: object tile it, while small objects inside larger structures (nuclei in the cells of a brightfield
#: image, which the model takes for nuclei when they are shrunk to its size) cover a small part of them
FRAGMENT_COVER = 0.4
#: ... or at least this fraction when there are, per larger object, this many objects at factor 1
#: (U-Net's fragments leave gaps: 0.27-0.35 covered on DSB2018 nuclei enlarged 3x, 2-3.5 per
#: object; nuclei in brightfield cells: 0.17-0.25, 1.3-1.4 per cell)
FRAGMENT_COVER_SPLIT = 0.28
FRAGMENT_PIECES = 2.0
#: an estimate that would rescale by a factor within this ratio of a factor already run on the whole
#: plane takes that run instead (the model tolerates 0.7-1.4x; this saves the pass)
REUSE_BAND = (0.87, 1.15)
#: a measure and the size model's reading "agree" within this ratio: about nine in ten of its
#: cross-validated readings on its training images are within 30 % (``training["size_model"]``)
SIZE_MODEL_AGREE = 1.3
#: windows (most structure first) the size model reads on a plane too large to probe whole when its
#: first reading and the factor-1 measure disagree; the median reading is kept. One 256 px window
#: of a large plane may hold a couple of large nuclei or an empty corner (DSB2018 ``val``
#: 76a372bfd3fa, 63 nuclei in 1024 x 1024, enlarged 3x: ``unet-nuclei`` read 29 px on its window,
#: 36 px as the median of three; true 50 px)
SIZE_WINDOWS = 3
#: a factor-1 probe of a plane probed whole stops once the encoder has passed (before its decoder,
#: heads and postprocessing) when the size model reads objects above this many times the largest
#: tolerated size (:func:`tolerated_range`): even a reading this much too high puts them above it, so
#: the run will shrink the plane and not reuse that pass. The size is then measured where the
#: reading's factor brings them (:func:`estimate_diameter_iter`, "read first"). Not on larger planes:
#: their factor-1 probe is a window, a small part of the run's cost, and its measure is worth it
#: (without it DSB2018 ``val`` enlarged 2-4x lost 0.001-0.007 AP@0.5; docs/benchmarks.md, session 30)
READ_FIRST_ABOVE = SIZE_MODEL_AGREE


@dataclass
class DiameterEstimate:
    """What ``diameter="auto"`` found: the diameter (original pixels; None when too few objects
    were found, then nothing is rescaled), the factor it implies, and each probe pass."""

    diameter: float | None
    factor: float
    passes: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    #: predictions of whole planes made at ``factor`` during the estimate, by plane index
    reusable: dict[int, Prediction] = field(default_factory=dict, repr=False)
    #: the size model's reading (original pixels), when the model has one
    regressed: float | None = None
    #: the image's pixel size (micrometres) that gave the diameter, when its calibration did
    pixel_size: float | None = None


def probe_window(x: np.ndarray, factor: float, size: int = PROBE_SIZE,
                 centre: tuple[float, float] | None = None) -> tuple[slice, slice]:
    """The window of a plane (original pixels) whose rescaled version is at most ``size`` square:
    the whole plane when it fits, else the one around ``centre`` (clipped to the plane) or, without
    it, the candidate (5 x 5 positions) with the most structure (grey standard deviation)."""
    h, w = x.shape[-2:]
    if centre is not None:
        wh, ww = _window_shape(x, factor, size)
        y0 = int(min(max(round(centre[0] - wh / 2), 0), h - wh))
        x0 = int(min(max(round(centre[1] - ww / 2), 0), w - ww))
        return slice(y0, y0 + wh), slice(x0, x0 + ww)
    return probe_windows(x, factor, size, 1)[0]


def _window_shape(x: np.ndarray, factor: float, size: int) -> tuple[int, int]:
    side = max(8, int(math.ceil(size / factor)))
    return min(x.shape[-2], side), min(x.shape[-1], side)


def probe_windows(x: np.ndarray, factor: float, size: int = PROBE_SIZE, k: int = 1) -> list[tuple[slice, slice]]:
    """Up to ``k`` of :func:`probe_window`'s candidates, most structure first (its choice first);
    the whole plane alone when it fits. (The size model's fit takes several per large image.)"""
    h, w = x.shape[-2:]
    wh, ww = _window_shape(x, factor, size)
    if (wh, ww) == (h, w):
        return [(slice(0, h), slice(0, w))]
    scored = []
    for y0 in np.unique(np.linspace(0, h - wh, 5).astype(int)):
        for x0 in np.unique(np.linspace(0, w - ww, 5).astype(int)):
            # grey of the candidate's sampled pixels only (not of the whole plane)
            win = x[:, y0:y0 + wh:4, x0:x0 + ww:4].mean(axis=0)
            scored.append((-float(win.std()), len(scored), int(y0), int(x0)))
    scored.sort()  # most structure first; ties in row-major order
    return [(slice(y0, y0 + wh), slice(x0, x0 + ww)) for _, _, y0, x0 in scored[: max(1, int(k))]]


def measure(labels: np.ndarray) -> tuple[float | None, int]:
    """Object size (pixels of ``labels``) robust to over-splitting, and the objects it rests on.

    The per-object median equivalent diameter, unless the foreground measure (see the module
    docstring) exceeds it by more than :data:`SPLIT_RATIO`, the mark of objects cut into fragments;
    objects and pieces touching the border are left out.
    """
    eq = equivalent_diameters(labels, exclude_border=True)
    ins = inscribed_diameters(labels, exclude_border=True)
    n = int(max(eq.size, ins.size))
    if n < MIN_OBJECTS:
        return None, n
    d_obj = float(np.median(eq)) if eq.size >= MIN_OBJECTS else None
    d_fg = INSCRIBED_TO_EQUIVALENT * float(np.median(ins)) if ins.size >= MIN_OBJECTS else None
    if d_obj is None:
        return d_fg, n
    if d_fg is not None and d_fg > SPLIT_RATIO * d_obj:
        return d_fg, n
    return d_obj, n


def fragment_cover(fine: np.ndarray, coarse: np.ndarray, min_diameter: float) -> tuple[float, float]:
    """How much ``fine``'s objects make up ``coarse``'s objects larger than ``min_diameter`` (both
    label images on the same grid): the fraction of those objects' pixels that fine objects cover,
    and the mean number of fine objects (most of whose pixels lie inside) per such object; (0, 0)
    without such objects."""
    coarse = np.asarray(coarse).astype(np.int64)
    fine = np.asarray(fine).astype(np.int64)
    areas = np.bincount(coarse.ravel())
    ids = np.flatnonzero(areas)
    ids = ids[ids > 0]
    big = ids[2.0 * np.sqrt(areas[ids] / math.pi) > min_diameter]
    if big.size == 0:
        return 0.0, 0.0
    inside = np.isin(coarse, big)
    cover = float((fine[inside] > 0).mean())
    pairs = fine[inside] * (int(coarse.max()) + 1) + coarse[inside]
    pairs = pairs[fine[inside] > 0]
    fine_area = np.bincount(fine.ravel())
    u, c = np.unique(pairs, return_counts=True)
    owner_fine = u // (int(coarse.max()) + 1)
    mostly = c > 0.5 * fine_area[owner_fine]
    per_object = np.bincount(np.searchsorted(big, (u % (int(coarse.max()) + 1))[mostly]), minlength=big.size)
    return cover, float(per_object.mean())


def tolerated_range(model: SegmentationModel) -> tuple[float, float]:
    """Multiples of the model's ``object_diameter`` that ``"auto"`` leaves alone.

    The model's own ``auto_rescale["tolerance"]`` where its config has one (measured for it), else
    :data:`AUTO_TOLERANCE`, narrowed to the 10th-90th percentile of the sizes the model was trained
    on when its config records them (``training["object_diameter_range"]``, pixels) and they are
    narrower (a model trained on one size only tolerates less).
    """
    own = model.config.auto_rescale.get("tolerance")
    if own is not None:
        return float(own[0]), float(own[1])
    lo, hi = AUTO_TOLERANCE
    target = model.config.object_diameter
    seen = model.config.training.get("object_diameter_range") if isinstance(model.config.training, dict) else None
    if target and isinstance(seen, (list, tuple)) and len(seen) == 2:
        try:
            lo = min(max(lo, float(seen[0]) / float(target)), 1.0)
            hi = max(min(hi, float(seen[1]) / float(target)), 1.0)
        except (TypeError, ValueError):
            pass
    return lo, hi


def model_aim(model: SegmentationModel) -> tuple[float, float] | None:
    """The model's own ``auto_rescale["aim"]`` (measured for it), or None: :data:`AUTO_AIM`."""
    own = model.config.auto_rescale.get("aim")
    return None if own is None else (float(own[0]), float(own[1]))


def auto_factor(model_diameter: float | None, diameter: float | None,
                tolerance: tuple[float, float] = AUTO_TOLERANCE, aim: tuple[float, float] | None = None) -> float:
    """The factor ``"auto"`` applies for an estimated ``diameter``: 1 while it lies within ``tolerance``
    times the model's size, else the factor that brings objects to ``aim`` (default
    :data:`AUTO_AIM`, read at each call) times the model's size (``aim[0]`` from below, ``aim[1]``
    from above, each kept within ``tolerance``), never enlarging more than :data:`AUTO_MAX_ENLARGE`
    or shrinking more than :data:`MAX_RESCALE` times."""
    if not model_diameter or not diameter:
        return 1.0
    aim = AUTO_AIM if aim is None else aim
    ratio = float(diameter) / float(model_diameter)
    if tolerance[0] <= ratio <= tolerance[1]:
        return 1.0
    goal = max(aim[0], tolerance[0]) if ratio < tolerance[0] else min(aim[1], tolerance[1])
    return min(max(goal / ratio, 1.0 / MAX_RESCALE), AUTO_MAX_ENLARGE)


@dataclass
class _Probe:
    """One plane's probe: its window (original pixels), labels there (original grid), size found."""

    rows: slice
    cols: slice
    labels: np.ndarray
    size: float | None
    n: int
    whole: Prediction | None = None
    #: the size model's input, read from this probe's own pass (factor-1 probes; None: not read)
    features: np.ndarray | None = None
    #: stopped after the encoder (the size model read objects above :data:`READ_FIRST_ABOVE`):
    #: no labels measured
    stopped: bool = False


def estimate_diameter_iter(
    model: SegmentationModel, planes: Sequence[np.ndarray], th: dict[str, float], **run: Any,
) -> Generator[Any, None, DiameterEstimate]:
    """Estimate the objects' diameter on normalised ``(C, H, W)`` planes (a few of a stack).

    1. Segment each plane at factor 1: the whole plane when it has at most :data:`WHOLE_PROBE_AREA`
       pixels (that prediction is the run's own when no rescaling follows), else a
       :data:`PROBE_SIZE` window. Measure the objects (:func:`measure`).
    2. With a size model (:mod:`seglab.inference.size_model`; every built-in has one) it referees:
       its reading of the factor-1 window (no segmentation, so no fragments) either agrees with the
       measure (:data:`SIZE_MODEL_AGREE`), or (read on :data:`SIZE_WINDOWS` windows of a large
       plane, median) the objects are measured again at the scale where it puts them at the
       model's size, and the measure nearer its reading is kept (the reading itself when that
       scale has too few objects to measure, and, with nothing measured at factor 1 either, when
       it reads objects larger than the model's; when that scale enlarges, the geometric mean of
       reading and factor-1 measure). A size that asks for shrinking is
       measured once more at the factor it implies (where the objects will be segmented), kept
       when it agrees with the reading. The reading's features come from the factor-1 probe's
       own pass (:class:`~seglab.inference.feature_tap.EncoderTap`).
       *Read first*: when that reading of a plane probed whole puts the objects above
       :data:`READ_FIRST_ABOVE` times the largest tolerated size, the factor-1 probe stops once its
       encoder has run (the plane will be shrunk, so that pass would not be reused), and the
       objects are measured where the reading brings them instead
       (:func:`_read_first`); when no measure there confirms it, the factor-1 probe runs to its end
       and the size is decided as described here.

    Without a size model, 2' and 3' instead:

    2'. Objects of at least :data:`CHECK_BELOW` of the model's size may be fragments of larger ones
       that the model cut at its own size: segment a window twice as large at half scale. Larger
       objects there (:data:`CHECK_RATIO`) that the objects at factor 1 cover
       (:data:`FRAGMENT_COVER`, :func:`fragment_cover`) mean fragments: the size is the half
       scale's, checked again at half of that while it keeps growing. A half scale that finds
       nothing (objects too large for its window) is followed by a quarter scale.
    3'. With no object at factor 1 the estimate probes coarser (0.25: large objects), then finer (2).

    Then:

    4. Objects below :data:`AUTO_TOLERANCE` are measured again enlarged to the model's size (they
       are few pixels at factor 1), unless step 2 measured that scale already.
    5. On a sparse plane the blobs that stand out (:func:`blob_size`) replace an estimate more
       than :data:`BLOB_DISAGREE` times smaller, or none, when they are above the tolerated sizes
       (large nuclei few and far apart: no probe window holds one whole).

    The factor applied is :func:`auto_factor`'s; a factor near one already run on whole planes
    (:data:`REUSE_BAND`) takes that run, whose predictions are reused.
    """
    t0 = time.perf_counter()
    target = model.config.object_diameter
    if not target:
        return DiameterEstimate(None, 1.0, seconds=time.perf_counter() - t0)
    kept = [i for i, x in enumerate(planes) if not is_blank(structure_ratio(x))]
    if len(kept) < len(planes):
        # a constant plane (blank, padding, a missing frame) or one of white noise (an empty field
        # at low light) has no objects, and the size model's reading of it is no size (43 px for
        # stardist-nuclei on a blank plane; on pure noise a size model read 8.5 px, and the probe
        # enlarging x4 there found specks): the other planes decide, or none
        if not kept:
            return DiameterEstimate(None, 1.0, seconds=time.perf_counter() - t0)
        est = yield from estimate_diameter_iter(model, [planes[i] for i in kept], th, **run)
        est.reusable = {kept[i]: pred for i, pred in est.reusable.items()}
        return est
    target = float(target)
    passes: list[dict[str, float]] = []
    whole: dict[float, dict[int, Prediction]] = {}
    read_features = getattr(model, "size_model", None) is not None

    def probe(f: float, around: list[_Probe] | None = None, stop_above: float | None = None,
              keep: list[_Probe] | None = None) -> Generator[Any, None, list[_Probe]]:
        """Each plane's window at factor ``f`` segmented; sizes in original pixels. With
        ``stop_above`` (factor 1 only), the pass over a plane probed whole stops once the size
        model has read its window at more than that size (original pixels), while every plane
        before it stopped too: that probe is ``stopped``. ``keep``: an earlier probe at the same
        factor whose planes that ran to their end are taken as they are."""
        found: list[_Probe] = []
        for i, x in enumerate(planes):
            if keep is not None and not keep[i].stopped:
                found.append(keep[i])
                continue
            h, w = x.shape[-2:]
            if f == 1.0 and around is None and h * w <= WHOLE_PROBE_AREA:
                rows, cols = slice(0, h), slice(0, w)
            else:
                centre = None
                if around is not None:
                    a = around[i]
                    centre = ((a.rows.start + a.rows.stop) / 2, (a.cols.start + a.cols.stop) / 2)
                rows, cols = probe_window(x, f, PROBE_SIZE, centre)
            win = x[:, rows, cols]
            is_whole = win.shape[-2:] == (h, w)
            reusable = is_whole and f == 1.0  # the run's own pass when no rescaling follows
            tap = None
            if f == 1.0 and around is None and read_features:  # the size model's window, read as the probe runs
                window = probe_window(x, 1.0) if is_whole else (slice(0, win.shape[-2]), slice(0, win.shape[-1]))
                tap = EncoderTap(model, *window)
            steps = _as_estimate(_window_prediction(model, win, th, f, reusable, tap=tap, **run), len(passes))
            if tap is not None and stop_above is not None and is_whole and all(p.stopped for p in found):
                pred = yield from _unless_read_above(steps, tap, model, target, stop_above)
            else:
                pred = yield from steps
            if pred is None:  # stopped after the encoder: the size model reads objects too large for factor 1
                found.append(_Probe(rows, cols, np.zeros(win.shape[-2:], np.int32), None, 0, None,
                                    tap.features, stopped=True))  # type: ignore[union-attr]
                continue
            size, n = measure(pred.labels)  # on the original grid, so in original pixels
            if size is not None and f > 1.0 and size * f < MIN_PROBED_SHARE * target:
                size = None  # specks of the enlarged noise (MIN_PROBED_SHARE)
            found.append(_Probe(rows, cols, pred.labels, size, n, pred if is_whole else None,
                                None if tap is None else tap.features))
            if is_whole:
                whole.setdefault(f, {})[i] = pred
        sizes = [p.size for p in found if p.size is not None]
        d = float(np.median(sizes)) if sizes else None
        passes.append({"factor": f, "objects": sum(p.n for p in found), "diameter": float("nan") if d is None else d})
        if any(p.stopped for p in found):
            passes[-1]["stopped"] = sum(p.stopped for p in found)
        return found

    def size_of(found: list[_Probe]) -> float | None:
        sizes = [p.size for p in found if p.size is not None]
        return float(np.median(sizes)) if sizes else None

    def finish(d: float | None, regressed: float | None) -> DiameterEstimate:
        """Step 5 (sparse planes of large objects), then the factor, and the passes it reuses."""
        # (planes probed whole show the probe every object: only windowed ones can miss them)
        blobs = [b for b in (blob_size(x) for x in planes if x.shape[-2] * x.shape[-1] > WHOLE_PROBE_AREA)
                 if b is not None]
        if blobs and (d is None or float(np.median(blobs)) > BLOB_DISAGREE * d) and float(np.median(blobs)) > hi * target:
            # a sparse plane of large objects: no probe window holds them whole (BLOB_DISAGREE)
            d = float(np.median(blobs))
            passes.append({"factor": 1.0, "objects": 0, "diameter": d, "blobs": True})
        seconds = time.perf_counter() - t0
        if d is None:
            return DiameterEstimate(None, 1.0, passes, seconds, regressed=regressed)
        factor = auto_factor(target, d, (lo, hi), aim)
        reuse: dict[int, Prediction] = {}
        for g, preds in whole.items():
            if len(preds) == len(planes) and REUSE_BAND[0] <= factor / g <= REUSE_BAND[1]:
                factor, reuse = g, preds
                break
        return DiameterEstimate(d, factor, passes, seconds, dict(reuse), regressed)

    f = 1.0
    lo, hi = tolerated_range(model)
    aim = model_aim(model)
    amp = bool(run.get("amp", True))
    measured: dict[float, float | None] = {}  # what the referee measured, by scale
    read_first_above = hi * READ_FIRST_ABOVE * target  # (original pixels)
    fine = yield from probe(1.0, stop_above=read_first_above if read_features else None)
    if all(p.stopped for p in fine):
        regressed = _regressed_size(model, planes, fine, target, amp)
        if regressed is not None and regressed > read_first_above:
            d = yield from _read_first(regressed, fine, probe, size_of, target, (lo, hi), measured, aim)
            if d is not None:
                return finish(d, regressed)
    if any(p.stopped for p in fine):  # (a stack whose planes read differently, or no size confirmed above)
        fine = yield from probe(1.0, keep=fine)
    d = size_of(fine)
    measured[1.0] = d
    regressed = _regressed_size(model, planes, fine, target, amp)
    if regressed is not None and (d is None or not _agree(d, regressed)):
        # in dispute: on large planes the size model reads more windows before the referee probes
        regressed = _regressed_size(model, planes, fine, target, amp, SIZE_WINDOWS)
    if regressed is not None:
        d = yield from _refereed(d, regressed, fine, probe, size_of, target, (lo, hi), measured, aim)
    elif d is None:
        for g in (0.25, 2.0):  # nothing at the model's scale: large objects, or tiny ones
            found = yield from probe(g)
            d = size_of(found)
            if d is not None:
                f = g
                fine = found
                break
    if regressed is None and d is not None and f <= 1.0 and d * f >= CHECK_BELOW * target:
        # fragments? look at half scale, around the same windows, while the objects keep growing
        while len(passes) < MAX_PASSES and f > 1.0 / 64:
            coarse = yield from probe(f / 2, around=fine)
            step = 2.0
            d_half = size_of(coarse)
            if d_half is None and len(passes) < MAX_PASSES:  # objects too large for the window: coarser
                coarse = yield from probe(f / 4, around=fine)
                step, d_half = 4.0, size_of(coarse)
            if d_half is None or d_half <= CHECK_RATIO * d:
                break
            cover, count = _cover(fine, coarse, CHECK_RATIO * d)
            passes[-1].update(cover=cover, pieces=count)
            if not (cover >= FRAGMENT_COVER or (cover >= FRAGMENT_COVER_SPLIT and count >= FRAGMENT_PIECES)):
                break
            d, f, fine = d_half, f / step, coarse
            if d * f < CHECK_BELOW * target:
                break
    if d is not None and d < lo * target and len(passes) < MAX_PASSES:
        # small objects: measured again where the model sees them at its size
        g = float(min(target / d, 8.0))
        done = _measured_near(measured, g)  # (the referee may have measured there already)
        again = measured[done] if done is not None else size_of((yield from probe(g)))
        if again is not None:
            d = again
    return finish(d, regressed)


def blob_size(x: np.ndarray) -> float | None:
    """The median equivalent diameter (pixels of ``x``) of the blobs that stand out of the
    background of a sparse normalised ``(C, H, W)`` plane (:data:`SPARSE_COVER`), those touching its
    border left out; None when it is not sparse or has none. Read on a strided sample of at most
    about :data:`BLOB_SAMPLE` pixels (the objects it is for, larger than the model's, survive the
    stride)."""
    from seglab.inference.denoise import grey
    from seglab.inference.normalize import smoothed, standing_out

    plane = grey(x)
    step = int(math.ceil(math.sqrt(plane.size / BLOB_SAMPLE))) if plane.size > BLOB_SAMPLE else 1
    g = smoothed(np.ascontiguousarray(plane[::step, ::step]))
    mask, gm = standing_out(g)
    if mask is None or not mask.any() or mask.mean() >= SPARSE_COVER:
        return None
    lab, n = ndi.label(mask)
    # each blob's extent at half its own height above the background (its edge, as a person draws
    # it; the noise threshold alone lies out in the halo: 106 px for discs of 90)
    inside = lab > 0  # (the blobs' pixels only: scipy sorts every pixel it is given by label)
    top = np.concatenate([[np.inf], ndi.maximum(g[inside], lab[inside], np.arange(1, n + 1))])
    half = gm + 0.5 * (top - gm)
    cut = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))  # blobs the border cuts
    core = np.where(mask & (g >= half[lab]) & ~np.isin(lab, cut[cut > 0]), lab, 0)
    eq = equivalent_diameters(core)
    eq = eq[eq >= 2.0 * math.sqrt(BLOB_MIN_AREA / math.pi)]
    return float(np.median(eq)) * step if eq.size else None


def _regressed_size(model: SegmentationModel, planes: Sequence[np.ndarray], fine: list[_Probe], target: float,
                    amp: bool = True, windows: int = 1) -> float | None:
    """The size model's diameter (original pixels), median over planes of its reading of each plane's
    factor-1 probe window (:func:`probe_tile`), read from the probe's own pass where it could be, and
    on a plane not probed whole, the median reading of that and the next ``windows - 1`` windows by
    structure (:func:`probe_windows`); None when the model has no size model or the planes are too
    small."""
    size_model = getattr(model, "size_model", None)
    if size_model is None:
        return None
    from seglab.inference.size_model import run_features

    sizes = []
    for x, p in zip(planes, fine):
        whole = (p.rows.stop - p.rows.start, p.cols.stop - p.cols.start) == tuple(x.shape[-2:])
        v = p.features
        if v is None:  # not read from the probe's pass (no tile of the run held the whole window): the encoder again
            v = p.features = run_features(model, *probe_tile(model, x, whole), amp)
        readings = [] if v is None else [size_model.diameter(v, target)]
        if not whole:  # a window of a large plane: the next windows by structure read too
            for rows, cols in probe_windows(x, 1.0, PROBE_SIZE, windows)[1:]:
                v = run_features(model, *probe_tile(model, x[:, rows, cols], False), amp)
                if v is not None:
                    readings.append(size_model.diameter(v, target))
        if readings:
            sizes.append(float(np.median(readings)))
    return float(np.median(sizes)) if sizes else None


def _agree(a: float, b: float) -> bool:
    return abs(math.log(a / b)) <= math.log(SIZE_MODEL_AGREE)


def _refereed(d: float | None, regressed: float, fine: list[_Probe], probe: Callable[..., Generator],
              size_of: Callable[[list[_Probe]], float | None], target: float,
              band: tuple[float, float],
              measured: dict[float, float | None] | None = None,
              aim: tuple[float, float] | None = None) -> Generator[Any, None, float | None]:
    """The size when a size model referees (see :func:`estimate_diameter_iter`, step 2): ``d`` measured
    at factor 1, or, when it disagrees with the size model's ``regressed``, the measure at the scale
    that the size model puts at the model's size, whichever is nearer ``regressed`` (the reading itself
    when that scale has too few objects to measure, or the geometric mean of reading and ``d`` when
    that scale enlarges); then measured again where the factor that size
    implies brings the objects (``aim``: :func:`auto_factor`'s), kept if it agrees. Each scale's
    measure is recorded in ``measured`` (by factor; ``{1.0: d}`` when not given)."""
    if measured is None:
        measured = {1.0: d}

    def at(g: float) -> Generator[Any, None, float | None]:
        return (yield from _measure_at(g, measured, fine, probe, size_of))

    candidates = [d]
    if d is None or not _agree(d, regressed):
        g = float(np.clip(target / regressed, 1.0 / 64, AUTO_MAX_ENLARGE))
        # where the size model puts the objects at the model's size is factor 1 itself: measuring
        # "again" there would only repeat the factor-1 measure in dispute, which confirms nothing
        same = _measured_near({1.0: d}, g) is not None
        checked = None if same else (yield from at(g))
        # nothing to measure where the size model puts the objects at the model's size (too few
        # objects in the window), or no other scale to measure at: the reading stands rather than a
        # factor-1 measure it does not confirm. Chosen on every fifth DSB2018 train image enlarged
        # 2, 3, 4x (estimates within 30 % of the truth, replayed from the recorded probes):
        # stardist-nuclei 0.950 / 0.958 / 0.917 -> 0.950 / 0.958 / 0.925, unet-nuclei 0.933 / 0.925
        # / 0.908 -> 0.942 / 0.933 / 0.917; the "no other scale" case: session 13 (docs/benchmarks.md)
        # With nothing measured at factor 1 either, the reading stands when it puts the objects above
        # the model's size (a window of a large plane holds too few whole ones to measure at either
        # scale: DSB2018 val 76a372bfd3fa enlarged 2x); below it, nothing found is more likely empty.
        trusted = d is not None or regressed > target
        if checked is None and not same and d is not None and g > 1.0:
            # ... except where the reading asks to enlarge and that window was probed: it covers 1/g^2 of the
            # original pixels, so a sparse plane leaves too few objects there, and small objects are
            # not cut into fragments at factor 1, so the measure there (whole objects, at least
            # MIN_OBJECTS of them) is no less likely than the reading: neither is confirmed, and
            # their geometric mean is taken (DSB2018 val 7f3888552158, brightfield, 12.4 px nuclei:
            # measured 17.4 px, read 8.7 px, mean 12.3 px; the reading had enlarged it 1.87x)
            candidates.append(math.sqrt(d * regressed))
        else:
            candidates.append(regressed if checked is None and trusted else checked)
    found = [v for v in candidates if v is not None]
    if not found:
        return None
    d = min(found, key=lambda v: abs(math.log(v / regressed)))
    g = auto_factor(target, d, band, aim)
    if g < 1.0:
        again = yield from at(g)
        if again is not None and _agree(again, regressed):
            d = again
    return d


def _read_first(regressed: float, fine: list[_Probe], probe: Callable[..., Generator],
                size_of: Callable[[list[_Probe]], float | None], target: float, band: tuple[float, float],
                measured: dict[float, float | None], aim: tuple[float, float] | None = None,
                ) -> Generator[Any, None, float | None]:
    """The size when the size model has read objects far larger than the model's (the factor-1
    probe stopped, :data:`READ_FIRST_ABOVE`): measured where the reading brings the objects
    (:func:`auto_factor`'s factor), kept when it agrees with the reading; a measure larger still
    than the reading and above the tolerated sizes is measured once more where it brings the
    objects, and that kept when the two measures agree. None: nothing confirmed (the caller runs the
    factor-1 probe to its end). Each scale's measure is recorded in ``measured``."""
    def at(g: float) -> Generator[Any, None, float | None]:
        return (yield from _measure_at(g, measured, fine, probe, size_of))

    g = auto_factor(target, regressed, band, aim)
    if g >= 1.0:
        return None
    d = yield from at(g)
    if d is None:
        return None
    if _agree(d, regressed):
        return d
    if d > regressed and d > band[1] * target:
        again = yield from at(auto_factor(target, d, band, aim))
        if again is not None and _agree(again, d):
            return again
    return None


def _measure_at(g: float, measured: dict[float, float | None], fine: list[_Probe], probe: Callable[..., Generator],
                size_of: Callable[[list[_Probe]], float | None]) -> Generator[Any, None, float | None]:
    """The size measured at factor ``g`` around the factor-1 windows ``fine``, recorded in
    ``measured``; a scale already probed (within :data:`REUSE_BAND`) is not run again."""
    done = _measured_near(measured, g)
    if done is not None:
        return measured[done]
    measured[g] = size_of((yield from probe(g, around=fine)))
    return measured[g]


def _measured_near(measured: dict[float, float | None], g: float) -> float | None:
    """The factor in ``measured`` within :data:`REUSE_BAND` of ``g`` (None: no such scale probed)."""
    return next((h for h in measured if REUSE_BAND[0] <= g / h <= REUSE_BAND[1]), None)


def _cover(fine: list[_Probe], coarse: list[_Probe], min_diameter: float) -> tuple[float, float]:
    """Medians over planes of :func:`fragment_cover` on the overlap of each plane's two windows."""
    covers, counts = [], []
    for a, b in zip(fine, coarse):
        r0, r1 = max(a.rows.start, b.rows.start), min(a.rows.stop, b.rows.stop)
        c0, c1 = max(a.cols.start, b.cols.start), min(a.cols.stop, b.cols.stop)
        if r1 <= r0 or c1 <= c0:
            continue
        fa = a.labels[r0 - a.rows.start:r1 - a.rows.start, c0 - a.cols.start:c1 - a.cols.start]
        fb = b.labels[r0 - b.rows.start:r1 - b.rows.start, c0 - b.cols.start:c1 - b.cols.start]
        cover, count = fragment_cover(fa, fb, min_diameter)
        covers.append(cover)
        counts.append(count)
    return (float(np.median(covers)), float(np.median(counts))) if covers else (0.0, 0.0)


def probe_tile(model: SegmentationModel, x: np.ndarray, whole: bool | None = None) -> tuple[np.ndarray, slice, slice]:
    """What the factor-1 probe of plane ``x`` runs the encoder on, as one tile, and where the size
    model's window (:func:`probe_window`) lies in it (tile pixels): a plane of at most
    :data:`WHOLE_PROBE_AREA` pixels (or ``whole``) with the model's tile context, else its window
    with :func:`probe_context`, padded at the edges as the probe pass pads them. The size
    model is fitted on these (:mod:`seglab.training.size_fit`) and reads them from the probe's own
    tiles (:class:`~seglab.inference.feature_tap.EncoderTap`)."""
    from seglab.inference.tiling import model_grid, pad_plane, tile_context

    h, w = x.shape[-2:]
    rows, cols = probe_window(x, 1.0)
    if h * w <= WHOLE_PROBE_AREA if whole is None else whole:
        src, context = x, tile_context(model)
    else:
        src, context = x[:, rows, cols], probe_context(model)
        rows, cols = slice(0, src.shape[-2]), slice(0, src.shape[-1])
    sh, sw = src.shape[-2:]
    grid = model_grid(model, sh, sw, max(sh, sw), context)
    top, left = grid.pad_y[0], grid.pad_x[0]
    return pad_plane(src, grid), slice(rows.start + top, rows.stop + top), slice(cols.start + left, cols.stop + left)


def probe_context(model: SegmentationModel) -> int:
    """Context (pixels per side) of a probe's single tile: :data:`PROBE_CONTEXT` rounded up to the
    network's size divisor and output stride, never more than the model's tile context."""
    from seglab.inference.tiling import tile_context

    step = max(int(model.size_divisor), int(model.output_stride), 1)
    return min(tile_context(model), -(-PROBE_CONTEXT // step) * step)


def _window_prediction(model: SegmentationModel, win: np.ndarray, th: dict[str, float], f: float,
                       reusable: bool = False, tap: EncoderTap | None = None,
                       **run: Any) -> Generator[Any, None, Prediction]:
    """A window segmented at factor ``f`` on its own grid (a window larger than :data:`PROBE_SIZE`
    at that scale is resized to exactly ``PROBE_SIZE`` on that side: one input shape for probes).

    Only a ``reusable`` probe (a whole plane at factor 1: the run's own pass when no rescaling
    follows) gets the model's full tile context; the others only measure sizes and get
    :func:`probe_context` (reflected pixels either way: a probe is one tile). ``tap`` reads the
    encoder's features of a window as the tiles pass (:mod:`seglab.inference.feature_tap`)."""
    from seglab.inference.engine import TileRun

    shape = tuple(win.shape[-2:])
    if reusable:
        return (yield from scaled_plane_iter(model, win, th, 1.0, tap=tap, **run))
    out = (tuple(PROBE_SIZE if abs(n * f - PROBE_SIZE) <= 2 else v for n, v in zip(shape, scaled_shape(shape, f)))
           if f != 1.0 else shape)
    small = resize_image(win, out) if out != shape else win
    # one tile whatever the run's tile size, so that the estimate does not depend on it
    one_tile = max(int(run.get("tile_size", 0) or 0), *small.shape[-2:])
    tr = TileRun(**{**run, "tile_size": one_tile}, tile_context=probe_context(model), tap=tap)
    return (yield from _prediction_on_grid(model, small, shape, th, tr))


def _unless_read_above(steps: Generator[Any, None, Prediction], tap: EncoderTap, model: SegmentationModel,
                       target: float, above: float) -> Generator[Any, None, Prediction | None]:
    """``steps`` (a factor-1 probe's pass) re-yielded, stopped (None) as soon as ``tap`` holds the
    window's encoder features and the size model reads objects larger than ``above`` there."""
    read = False
    try:
        while True:
            try:
                ev = next(steps)
            except StopIteration as stop:
                return stop.value
            if not read and tap.features is not None:
                read = True
                if model.size_model.diameter(tap.features, target) > above:  # type: ignore[attr-defined]
                    return None
            yield ev
    finally:
        steps.close()


def _as_estimate(gen: Generator[Any, None, Prediction], k: int) -> Generator[Any, None, Prediction]:
    """Re-yield a probe pass's progress as stage ``estimate`` (pass ``k``), so bars do not jump back."""
    from seglab.inference.engine import ProgressEvent

    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        within = ev.done / ev.total if ev.total else 1.0
        yield ProgressEvent("estimate", min(k, MAX_PASSES - 1) * 100 + int(within * 100), MAX_PASSES * 100)


def sample_planes(n_planes: int, k: int = 3) -> list[int]:
    """Indices of up to ``k`` planes spread evenly over a stack of ``n_planes``."""
    return sorted({int(round(v)) for v in np.linspace(0, n_planes - 1, min(k, n_planes))})


def calibrated_diameter(model: SegmentationModel, pixel_size: float | None) -> float | None:
    """The objects' diameter (image pixels) that an image's pixel size implies for ``model``: its
    ``object_diameter`` times the pixel size it was trained at (``auto_rescale["pixel_size_um"]``)
    over ``pixel_size`` (micrometres). None when either is unknown, or when the two differ more
    than :data:`PIXEL_SIZE_MAX_RATIO` times (not a microscope's calibration)."""
    target = model.config.object_diameter
    trained = model.config.auto_rescale.get("pixel_size_um")
    if not target or not trained or pixel_size is None:
        return None
    ratio = float(pixel_size) / float(trained)
    if not (math.isfinite(ratio) and 1.0 / PIXEL_SIZE_MAX_RATIO <= ratio <= PIXEL_SIZE_MAX_RATIO):
        return None
    return float(target) / ratio


def calibrated_estimate(model: SegmentationModel, pixel_size: float | None) -> DiameterEstimate | None:
    """``"auto"``'s answer from the image's pixel size (:func:`calibrated_diameter`): the exact
    rescale to the model's pixel size (within :data:`NO_RESCALE_BAND` none); None: estimate instead."""
    d = calibrated_diameter(model, pixel_size)
    if d is None:
        return None
    return DiameterEstimate(d, scale_factor(model.config.object_diameter, d), pixel_size=float(pixel_size))


def choose_scale_iter(
    model: SegmentationModel, diameter: float | str | None, plane_input: Callable[[int], np.ndarray],
    n_planes: int, th: dict[str, float], pixel_size: float | None = None, **run: Any,
) -> Generator[Any, None, DiameterEstimate]:
    """The rescale factor of a run: none (``diameter=None`` or a model without ``object_diameter``),
    from a given diameter, or for ``"auto"``: from the image's ``pixel_size`` (micrometres) when it
    and the model's training pixel size are known (:func:`calibrated_estimate`), else estimated
    once for the whole stack on a few planes.

    ``plane_input(i)`` gives plane ``i`` normalised as the model takes it.
    """
    diameter = parse_diameter(diameter)
    target = model.config.object_diameter
    if diameter is None or not target:
        return DiameterEstimate(diameter if isinstance(diameter, float) else None, 1.0)
    if isinstance(diameter, float):
        return DiameterEstimate(diameter, scale_factor(target, diameter))
    calibrated = calibrated_estimate(model, pixel_size)
    if calibrated is not None:
        return calibrated
    picks = sample_planes(n_planes)
    est = yield from estimate_diameter_iter(model, [plane_input(i) for i in picks], th, **run)
    est.reusable = {picks[i]: pred for i, pred in est.reusable.items()}
    return est


def estimate_image_iter(
    model: SegmentationModel, image: np.ndarray, *, channel_axis: int | None = None,
    channels: Sequence[int] | None = None, tile_size: int = 1024, batch_size: int = 4,
    device: Any = "auto", amp: bool = True, thresholds: dict[str, float] | None = None,
    axes: str | None = None, rgb: bool | None = None, pixel_size: float | None = None,
    denoise: str | bool = "auto",
) -> Generator[Any, None, DiameterEstimate]:
    """``diameter="auto"``'s estimate for an image or stack, without segmenting it (the widget's
    *Estimate* button); arguments as for :func:`~seglab.inference.engine.segment_iter`."""
    import itertools

    from seglab.inference.device import resolve_device
    from seglab.axes import arrange
    from seglab.inference.denoise import parse_denoise, prepared_plane
    from seglab.inference.engine import check_image, place_network

    image, channel_axis, rgb = arrange(np.asarray(image), axes=axes, channel_axis=channel_axis, rgb=rgb)
    check_image(image, channel_axis)
    spatial = image.shape if channel_axis is None else image.shape[:-1]
    indices = list(itertools.product(*[range(s) for s in spatial[:-2]]))
    dev = resolve_device(device)
    place_network(model, dev)
    mode = parse_denoise(denoise)
    est = yield from choose_scale_iter(
        model, AUTO, lambda i: prepared_plane(model.config, image[indices[i]], mode, channel_axis, channels, rgb)[0],
        len(indices), model.thresholds(thresholds), pixel_size, tile_size=tile_size, batch_size=batch_size,
        device=dev, amp=amp)
    est.reusable = {}
    return est
