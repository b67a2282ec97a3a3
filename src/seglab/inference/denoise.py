"""Low light: smooth a noisy plane before the model sees it.

Fluorescence taken at low light (short exposures, live cells, weak stains) is dominated by shot
noise, which the models never saw in training: `stardist-nuclei` on DSB2018 `val` under shot
noise with 30 / 10 photons at the brightest pixel falls from AP@0.5 0.858 to 0.705 / 0.382, and
a Gaussian pre-filter gives most of it back (docs/benchmarks.md, "Low light"). Smoothing a clean
image costs a little (0.005-0.015), so it is done only where the plane is noisy.

**Noise level** (:func:`noise_level`): on the normalised plane (what the model sees), the robust
spread (1.4826 x the median absolute value) of its finest diagonal Haar detail (``(a - b - c +
d) / 2`` of each 2x2 block: white noise keeps its sigma there, while edges and smooth structure
give almost nothing) over the blocks whose neighbourhood is above 0.25 (the objects: shot noise
grows with the signal), read on the central ``NOISE_SIDE`` window (the same pixels in memory and
out of core). On the 488 dark-background DSB2018 ``train`` images it is 0.021 at the median
(95th percentile 0.037); the same images at half their size (nuclei of ~8 px, whose detail a
measure taken against a smoothing would read as noise) 0.030 (0.072); under shot noise of 100 /
30 / 10 photons at the brightest pixel 0.084 / 0.137 / 0.212 at the median.

**Rule**: a model's config says, in ``denoise["steps"]``, the Gaussian sigma (pixels of the
image as given) for each noise level from which it pays (``[[level, sigma], ...]``, rising), as
measured on the recipes' tune set (``benchmarks/bench_low_light.py``); a model without steps is
never smoothed unless asked. The rules were measured on fluorescence, so ``"auto"`` smooths only
planes with a dark background (:data:`MIN_DARK_SHARE`): a field of pure noise (an empty view)
smoothed would show blobs to segment and to measure.

**Blank planes** (:func:`is_blank`): a plane that is white noise or constant (an empty view: its
:func:`structure_ratio` below :data:`MIN_STRUCTURE`, read on its channels before normalisation at
full resolution) has no objects: the engine skips the network for it
(:meth:`~seglab.models.base.SegmentationModel.blank_prediction`) and tells the user
(:data:`BLANK_NOTE`). Empty fields of camera noise passed the dark-background test above, were
smoothed, and gave `unet-nuclei` 7 specks each (docs/benchmarks.md, "Empty views").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seglab.errors import SeglabError

#: ``denoise=`` values: smooth by the model's rule, always, never
AUTO = "auto"
#: the normalised level above which a 2x2 block (its 3x3-block neighbourhood's mean) counts as object
OBJECT_LEVEL = 0.25
#: fewer object pixels (4 per block) than this: the level is unknown (nothing to measure it on)
MIN_OBJECT_PIXELS = 100
#: ``"auto"`` smooths only planes with a dark background (fluorescence, what the rules were measured
#: on): at least this share of the window below ``DARK_LEVEL`` (DSB2018's dark-background images:
#: 0.51-1.0; a field of pure noise or a brightfield image: a few per cent)
MIN_DARK_SHARE = 0.2
#: a normalised pixel below this is dark (background)
DARK_LEVEL = 0.2
#: the sigma used when smoothing is asked for (``denoise=True``) below the model's first step
DEFAULT_SIGMA = 1.0
#: side of the central window a plane's noise is read on (0.26 M pixels)
NOISE_SIDE = 512
#: below this :func:`structure_ratio` a plane is white noise, with nothing to measure a size on
#: (measured values: :func:`structure_ratio`'s test and docs/benchmarks.md, "Low light")
MIN_STRUCTURE = 1.2
#: what the user is told about a blank plane (:func:`is_blank`)
BLANK_NOTE = "white noise or blank (an empty view): no objects"
#: side of the tiles :func:`structure_ratio` reads
STRUCTURE_TILE = 128
#: ``scipy.ndimage.gaussian_filter``'s kernel radius is ``int(TRUNCATE * sigma + 0.5)``
TRUNCATE = 4.0


def parse_denoise(value: Any) -> str | bool:
    """``"auto"``, True or False from what a user passes (``"on"``/``"off"`` too)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    if text in ("on", "yes", "true", "1", "always"):
        return True
    if text in ("off", "no", "false", "0", "never"):
        return False
    raise SeglabError(f"denoise must be 'auto', 'on' or 'off', got {value!r}")


def noise_level(x: np.ndarray) -> float:
    """The noise of a normalised ``(C, H, W)`` (or ``(H, W)``) plane, its channels averaged (see
    the module docstring); NaN when it has too few object pixels to tell."""
    plane = grey(x)
    h, w = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    if min(h, w) < 4:
        return float("nan")
    a, b = plane[0:h:2, 0:w:2], plane[0:h:2, 1:w:2]
    c, d = plane[1:h:2, 0:w:2], plane[1:h:2, 1:w:2]
    diagonal = (a - b - c + d) * 0.5  # Haar diagonal detail: white noise keeps its sigma, edges give ~0
    bright = ndi.uniform_filter((a + b + c + d) * 0.25, 3) > OBJECT_LEVEL
    if int(bright.sum()) * 4 < MIN_OBJECT_PIXELS:
        return float("nan")
    return float(1.4826 * np.median(np.abs(diagonal[bright])))


def structure_ratio(x: np.ndarray, tile: int = STRUCTURE_TILE) -> float:
    """How much of a ``(C, H, W)`` (or ``(H, W)``) plane's variance is not white noise, where it
    has most: the largest, over its ``tile`` px tiles (the whole plane when smaller), of 4 x the
    variance of the tile's 2x2 block means over the variance of its pixels (channels averaged).
    White noise gives 1 (a block mean of four independent pixels keeps a quarter of their
    variance), structure of two pixels or more up to 4, a constant plane 0. Tiles, because a
    few objects in a large field of noise are a small share of the whole plane's variance (three
    10 px nuclei in a 1024 px field: 1.09 over the plane, 2.3 over their tile)."""
    plane = grey(x)
    meter = StructureMeter(*plane.shape, tile=tile)
    meter.add(plane)
    return meter.ratio


class StructureMeter:
    """:func:`structure_ratio` of an ``(H, W)`` plane fed as consecutive bands of rows (out of core)
    or whole (in memory): the same tiles and the same arithmetic either way. Non-finite pixels
    count as 0."""

    def __init__(self, height: int, width: int, tile: int = STRUCTURE_TILE):
        self.th, self.tw = min(tile, height // 2 * 2), min(tile, width // 2 * 2)
        ok = min(self.th, self.tw) >= 2
        self.ny, self.nx = (height // self.th, width // self.tw) if ok else (0, 0)
        self.done = 0  # rows of tiles measured
        self.pending: list[np.ndarray] = []  # rows read but not yet a whole row of tiles
        self.ratio = 0.0

    def add(self, rows: np.ndarray) -> None:
        """The plane's next ``(h, W)`` rows (grey: channels averaged)."""
        if self.done >= self.ny or not rows.shape[0]:
            return
        self.pending.append(rows[:, : self.nx * self.tw])
        have = sum(r.shape[0] for r in self.pending)
        if have < self.th:
            return
        band = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending = []
        r0 = 0
        while r0 + self.th <= band.shape[0] and self.done < self.ny:
            self._measure(band[r0 : r0 + self.th])
            r0 += self.th
        if r0 < band.shape[0] and self.done < self.ny:
            self.pending.append(band[r0:])

    def _measure(self, rows: np.ndarray) -> None:
        """One row of tiles (7 ms for the 16 of a 2048 px plane; never a copy of the whole plane)."""
        row = rows.astype(np.float32, copy=False)
        if not np.isfinite(row).all():
            row = np.nan_to_num(row, nan=0.0, posinf=0.0, neginf=0.0)
        row = row.reshape(self.th, self.nx, self.tw)
        d = row - row.mean(axis=(0, 2), keepdims=True)  # about each tile's mean, which its blocks share
        var = (d * d).mean(axis=(0, 2))
        blocks = (d[0::2, :, 0::2] + d[1::2, :, 0::2] + d[0::2, :, 1::2] + d[1::2, :, 1::2]) * 0.25
        ratio = np.divide(4.0 * (blocks * blocks).mean(axis=(0, 2)), var, out=np.zeros_like(var), where=var > 0)
        self.ratio = max(self.ratio, float(ratio.max()))
        self.done += 1


def noise_window(height: int, width: int) -> tuple[slice, slice]:
    """The central ``NOISE_SIDE`` window of a plane, where its noise is read (in memory and out of core)."""
    from seglab.inference.appearance import centre_slices

    return centre_slices(height, width, NOISE_SIDE)


def dark_share(x: np.ndarray) -> float:
    """The share of a normalised ``(C, H, W)`` (or ``(H, W)``) plane's pixels below ``DARK_LEVEL``
    (channels averaged)."""
    plane = grey(x)
    return float((plane < DARK_LEVEL).mean()) if plane.size else 0.0


def grey(x: np.ndarray) -> np.ndarray:
    """A normalised ``(C, H, W)`` plane's channels averaged (an ``(H, W)`` plane as it is), float32."""
    plane = np.asarray(x, dtype=np.float32)
    return plane.mean(axis=0) if plane.ndim == 3 else plane


def rule_sigma(level: float, steps: Sequence[Sequence[float]]) -> float:
    """The sigma of the highest step at or below ``level`` (0: below every step, or unknown)."""
    sigma = 0.0
    if not math.isfinite(level):
        return sigma
    for at, s in steps:
        if level >= float(at):
            sigma = float(s)
    return sigma


@dataclass(frozen=True)
class Smoothing:
    """What a plane gets before the model: a Gaussian of ``sigma`` pixels (0: none), chosen at its
    measured noise ``level`` (None: not measured); ``blank``: nothing, since it is white noise or
    constant (:func:`is_blank`), and has no objects."""

    sigma: float = 0.0
    level: float | None = None
    blank: bool = False

    @property
    def halo(self) -> int:
        """Pixels around a window that its smoothing reads (the kernel's radius)."""
        return int(TRUNCATE * self.sigma + 0.5) if self.sigma > 0 else 0

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` ``x`` smoothed in Y and X (the same array when there is nothing to do)."""
        if self.sigma <= 0:
            return x
        return ndi.gaussian_filter(x, (0.0, self.sigma, self.sigma), truncate=TRUNCATE).astype(np.float32, copy=False)

    def describe(self) -> str:
        """A line for the user: what was done and why (empty when nothing was done)."""
        if self.blank:
            return BLANK_NOTE
        if self.level is None or not math.isfinite(self.level):
            return f"smoothed, sigma {self.sigma:g} px (as asked)" if self.sigma > 0 else ""
        if self.sigma > 0:
            return f"noisy image (noise {self.level:.2f}): smoothed, sigma {self.sigma:g} px"
        return ""


def steps_of(config: Any) -> list[list[float]]:
    """The model's smoothing steps (``config.denoise["steps"]``), or none."""
    return [list(map(float, s)) for s in (getattr(config, "denoise", None) or {}).get("steps", [])]


def choose_smoothing(steps: Sequence[Sequence[float]], window: np.ndarray, mode: str | bool) -> Smoothing:
    """The smoothing of a plane whose normalised central window is ``window`` (``(C, h, w)``), by a
    model's ``steps`` (:func:`steps_of`): by its rule (``"auto"``), always (True: the rule's
    sigma, at least the first step's; ``DEFAULT_SIGMA`` without steps), or never (False); the
    words :func:`parse_denoise` takes are taken too."""
    mode = parse_denoise(mode)
    if mode is False:
        return Smoothing()
    if mode == AUTO and not steps:
        return Smoothing()
    level = noise_level(window)
    sigma = rule_sigma(level, steps)
    if mode == AUTO and sigma > 0 and dark_share(window) < MIN_DARK_SHARE:
        sigma = 0.0  # no dark background: not the fluorescence the rule knows (pure noise, brightfield)
    if mode is True and sigma <= 0:
        sigma = float(steps[0][1]) if steps else DEFAULT_SIGMA
    return Smoothing(sigma, level if math.isfinite(level) else None)


def prepared_plane(config: Any, plane: np.ndarray, mode: str | bool, channel_axis: int | None = None,
                   channels: Sequence[int] | None = None, rgb: bool | None = None) -> tuple[np.ndarray, Smoothing]:
    """What a model sees of an image plane in inference (its normalised channels, smoothed where
    noisy: :func:`smoothed`) and the smoothing it got (``blank`` for white noise or a constant
    plane: :func:`is_blank`, then not smoothed)."""
    from seglab.inference.normalize import normalized_channels, select_channels

    raw = select_channels(plane, config.input_channels, channel_axis, channels, rgb)
    blank = is_blank(structure_ratio(raw))
    x = normalized_channels(raw, config.normalization)
    if blank:  # white noise or constant: no objects, nothing to smooth
        return x, Smoothing(blank=True)
    return smoothed(x, steps_of(config), mode)


def is_blank(ratio: float) -> bool:
    """Whether a plane whose :func:`structure_ratio` (of its channels as the model takes them,
    before normalisation, at full resolution: :class:`StructureMeter` out of core) is ``ratio`` is
    white noise or constant: an empty view, nothing to segment (below :data:`MIN_STRUCTURE`; empty
    fields of DSB2018 `val` background: 1.03-1.08, three nuclei among them: 2.0 and up;
    docs/benchmarks.md, "Empty views")."""
    return ratio < MIN_STRUCTURE


def smoothed(x: np.ndarray, steps: Sequence[Sequence[float]], mode: str | bool = AUTO) -> tuple[np.ndarray, Smoothing]:
    """A normalised ``(C, H, W)`` plane smoothed by ``steps`` as inference smooths it (the noise read
    on its central window), and the smoothing it got."""
    smoothing = choose_smoothing(steps, x[(slice(None), *noise_window(*x.shape[1:]))], mode)
    return smoothing.apply(x), smoothing


def describe_planes(smoothings: Sequence[Smoothing]) -> str:
    """A line for the user about a run's planes (empty when none was smoothed or blank)."""
    if len(smoothings) == 1:
        return smoothings[0].describe()
    lines = []
    blank = sum(s.blank for s in smoothings)
    if blank:
        lines.append(f"{blank} of {len(smoothings)} planes {BLANK_NOTE}")
    done = [s for s in smoothings if s.sigma > 0]
    if done:
        levels = [s.level for s in done if s.level is not None]
        sigmas = sorted({s.sigma for s in done})
        noise = f" (up to {max(levels):.2f})" if levels else ""
        lines.append(f"{len(done)} of {len(smoothings)} planes noisy{noise}: smoothed, "
                     f"sigma {'/'.join(f'{v:g}' for v in sigmas)} px")
    return "; ".join(lines)
