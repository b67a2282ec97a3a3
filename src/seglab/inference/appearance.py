"""What an RGB image looks like: stained brightfield tissue, fluorescence, or grey stored as RGB.

An RGB file is not always a stained slide: fluorescence is often exported as RGB (the grey
image in all three channels, or a stain in one colour on black), and a model for H&E tissue
finds almost nothing there (`stardist-he` on DSB2018 `val` fluorescence given as RGB: AP@0.5
0.002, against 0.858 for `stardist-nuclei`). Two measures tell them apart on normalised
pixels (1st-99.8th percentile of all channels together, so any dtype or exposure reads the
same):

- **colour**: the 99th percentile of each pixel's spread between its channels (99th, so that a
  little tissue on a white slide counts). Zero for grey stored as RGB; 0.32-0.91 on DSB2018's
  107 stained images and MoNuSeg's 16 H&E tiles.
- **dark fraction**: the share of pixels darker than 0.2 (luma). Brightfield light passes
  the background, fluorescence glows on a dark one: at most 0.38 on the stained images and
  tiles (the densest MoNuSeg tile), 0.51-1.0 on DSB2018's 541 dark-background grey images.

A mostly dark image is told apart by the saturation of its lit parts (3x3 block means of the
sample whose channel maximum is >= 0.2, so that a grey image's noise is no colour): near zero,
grey with noise; pure colours, a fluorescence composite (a model reading grey mixes its colours:
pick a channel): 0.91-1.0 (5th percentile up) for DSB2018's dark-background images given in two
or three colours; pastel, stained tissue beside a scanner's black padding: 0.18-0.67 for the
MoNuSeg tiles rotated 30 degrees with black corners or beside as much black, 0.02-0.64 for
DSB2018's stained images beside as much black (the palest of them read as grey).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from seglab.errors import SeglabError, SeglabWarning

if TYPE_CHECKING:
    from seglab.models.config import ModelConfig

#: below this colour the channels are the same image (grey stored as RGB, up to compression noise)
GREY_COLOUR = 0.1
#: at or above this share of dark pixels the image has a dark background (fluorescence)
DARK_FRACTION = 0.45
#: a channel carries signal when its range is at least this share of the brightest channel's
SIGNAL_SHARE = 0.1
#: in a mostly dark image, lit pixels below this median saturation are grey (noise), at or above
#: ``GLOW_SATURATION`` pure colours (fluorescence); between, pastel stains beside black padding
GREY_SATURATION = 0.1
GLOW_SATURATION = 0.8
#: the saturation measure averages blocks of this many sampled pixels a side
POOL = 3
#: the side of the central window read of a lazy (dask, zarr) plane to judge its look
LOOK_SIDE = 1024
#: pixels read (a strided view of larger planes)
SAMPLE_PIXELS = 160 * 160
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
COLOUR_NAMES = ("red", "green", "blue")


@dataclass(frozen=True)
class Appearance:
    """How an RGB plane looks. ``kind``: ``"stained"`` (brightfield, coloured),
    ``"fluorescence"`` (dark background: one colour, or a composite of several),
    ``"grey"`` (the channels alike) or ``"one channel"`` (one colour on a bright background)."""

    kind: str
    colour: float
    dark_fraction: float
    signal_channels: tuple[int, ...]
    #: median saturation ((max - min) / max of the channels) of the pixels that are not dark
    saturation: float = 0.0

    @property
    def stained(self) -> bool:
        return self.kind == "stained"

    @property
    def dark_background(self) -> bool:
        """Fluorescence-like: most pixels dark (:data:`DARK_FRACTION`)."""
        return self.dark_fraction >= DARK_FRACTION

    @property
    def composite(self) -> bool:
        """Fluorescence in several colours: a model that reads grey mixes them."""
        return self.kind == "fluorescence" and len(self.signal_channels) > 1

    def describe(self) -> str:
        """A short phrase for messages, e.g. 'fluorescence (dark background) in blue'."""
        if self.kind == "stained":
            if self.dark_background:
                return "stained brightfield (coloured, beside a dark surround)"
            return "stained brightfield (bright background, coloured)"
        if self.kind == "grey":
            background = "dark" if self.dark_background else "bright"
            return f"grey stored as RGB (the three channels alike, {background} background)"
        if self.kind == "one channel":
            return f"one colour channel ({COLOUR_NAMES[self.signal_channels[0]]}) on a bright background"
        where = ""
        if len(self.signal_channels) == 1:
            where = f" in {COLOUR_NAMES[self.signal_channels[0]]}"
        elif self.signal_channels:
            where = " in " + " and ".join(COLOUR_NAMES[c] for c in self.signal_channels)
        return f"fluorescence (dark background){where}"


def _sample(plane: np.ndarray) -> np.ndarray:
    """At most about :data:`SAMPLE_PIXELS` pixels of an ``(H, W, C)`` plane, evenly strided."""
    h, w = plane.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / SAMPLE_PIXELS))))
    return np.asarray(plane[::step, ::step, :3], dtype=np.float32)


def rgb_appearance(plane: np.ndarray) -> Appearance:
    """Classify an RGB(A) plane ``(H, W, 3|4)`` (colour last; alpha is ignored)."""
    arr = np.asarray(plane) if isinstance(plane, np.ndarray) else plane
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise SeglabError(f"expected an RGB(A) plane (height, width, 3 or 4), got shape {tuple(arr.shape)}")
    sample = _sample(arr)
    finite = np.isfinite(sample).all(axis=-1)
    px = sample[finite] if not finite.all() else sample.reshape(-1, 3)
    if px.size == 0:
        return Appearance("grey", 0.0, 1.0, ())
    lo, hi = np.percentile(px, [1.0, 99.8])
    if not hi > lo:  # constant
        return Appearance("grey", 0.0, 1.0, ())
    norm = np.clip((px - lo) / (hi - lo), 0.0, 1.0)
    colour = float(np.percentile(norm.max(axis=1) - norm.min(axis=1), 99))
    dark = float(np.mean(norm @ _LUMA < 0.2))
    low, high = np.percentile(norm, [1.0, 99.8], axis=0)
    ranges = high - low
    signal = tuple(int(c) for c in np.flatnonzero(ranges >= SIGNAL_SHARE * max(float(ranges.max()), 1e-6)))
    saturation = _lit_saturation(sample, lo, hi)
    if len(signal) == 1:
        kind = "fluorescence" if dark >= DARK_FRACTION else "one channel"
    elif colour < GREY_COLOUR:
        kind = "grey"
    elif dark < DARK_FRACTION:
        kind = "stained"
    elif saturation < GREY_SATURATION:  # the lit pixels have no colour: grey with noise
        kind = "grey"
    elif saturation >= GLOW_SATURATION:  # lit pixels of pure colours: stains glowing
        kind = "fluorescence"
    else:  # pastel colours beside much dark: tissue next to a scanner's black padding or a rotated tile's corners
        kind = "stained"
    return Appearance(kind, colour, dark, signal, saturation)


def _lit_saturation(px: np.ndarray, lo: float, hi: float, pool: int = POOL) -> float:
    """Median saturation of the lit pixels (channel maximum >= 0.2) of ``pool x pool`` block
    means of the normalised ``(h, w, 3)`` sample, so that per-pixel noise (a grey image's
    compression) does not pass for colour."""
    h, w = (px.shape[0] // pool) * pool, (px.shape[1] // pool) * pool
    if h == 0 or w == 0:
        return 0.0
    blocks = np.clip((px[:h, :w] - lo) / (hi - lo), 0.0, 1.0)
    blocks = np.nan_to_num(blocks).reshape(h // pool, pool, w // pool, pool, 3).mean(axis=(1, 3)).reshape(-1, 3)
    value = blocks.max(axis=1)
    lit = value >= 0.2
    if not lit.any():
        return 0.0
    return float(np.median((value[lit] - blocks.min(axis=1)[lit]) / value[lit]))


def centre_slices(height: int, width: int, side: int = LOOK_SIDE) -> tuple[slice, slice]:
    """Rows and columns of the central ``side x side`` window of a plane (what is read of a
    lazy image to judge its look)."""
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return slice(top, top + side), slice(left, left + side)


def colour_model_note(config: ModelConfig, plane: np.ndarray) -> str | None:
    """Why a model that reads RGB colour (trained on stained brightfield tissue, as H&E models
    are) does not suit this plane, RGB ``(H, W, 3|4)`` or grey ``(H, W)`` (which such a model gets
    in all three channels): a dark background (fluorescence), where `stardist-he` scores AP@0.5
    0.002 on DSB2018 `val`. None otherwise, and for a model that reads one channel. Grey
    brightfield is left alone: on it the H&E model is not always the worse (MoNuSeg `val` tiles
    turned grey: PQ 0.509 against `stardist-nuclei`'s 0.368; DSB2018's grey brightfield
    cytology: AP@0.5 0.284 against 0.536)."""
    if config.input_channels != 3:
        return None
    grey = plane.ndim == 2
    look = rgb_appearance(np.repeat(np.asarray(plane)[..., None], 3, axis=-1) if grey else plane)
    if look.stained or not look.dark_background:
        return None
    what = "a grey image with a dark background (fluorescence)" if grey else look.describe()
    return (f"{config.name} reads RGB colour, as in stained brightfield tissue, but this image looks like "
            f"{what}, where such a model finds little; a one-channel model (e.g. stardist-nuclei) "
            "reads it as grey")


def colour_check_needed(config: ModelConfig, channels: object, rgb: bool | None, n_channels: int | None) -> bool:
    """Whether :func:`warn_if_colour_unsuited` has anything to look at: a model that reads colour,
    given RGB, three channels (which it takes as R, G, B) or a grey image (``n_channels`` None: it
    gets it in all three), none of them picked by the user."""
    return config.input_channels == 3 and channels is None and (bool(rgb) or n_channels in (3, None))


def warn_if_colour_unsuited(config: ModelConfig, plane: np.ndarray) -> None:
    """:func:`colour_model_note` as a :class:`~seglab.errors.SeglabWarning`."""
    note = colour_model_note(config, plane)
    if note:
        warnings.warn(note, SeglabWarning, stacklevel=3)


def grey_model_note(config: ModelConfig, plane: np.ndarray, colour_models: Callable[[], list[str]]) -> str | None:
    """A hint when a one-channel model gets an RGB plane it reads as a mixture: stained
    brightfield tissue while a model that reads colour is installed (``colour_models()``, e.g.
    ``["stardist-he"]``, asked only then), or a fluorescence composite of several colours."""
    if config.input_channels != 1:
        return None
    look = rgb_appearance(plane)
    if look.stained:
        names = colour_models()
        if names:
            return (f"this RGB image looks like stained brightfield tissue: {config.name} reads it as grey, "
                    f"the model {names[0]} reads its colour")
    if look.composite:
        return (f"this RGB image looks like {look.describe()}: {config.name} reads their mixture as grey; if "
                "the nuclei are in one colour, pick it (--channels, or Channels in a widget: 0 red, 1 green, 2 blue)")
    return None
