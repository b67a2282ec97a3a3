"""Image axes: which axis holds channels, whether they are RGB colour, and where Y and X are.

Axes are written as in tifffile and csbdeep: one letter per array axis, ``Y`` and ``X``
the plane, ``C`` channels, ``S`` colour samples (RGB/RGBA as stored in a TIFF),
``T``/``Z`` (and any other letter) stack axes segmented plane by plane. ``Q`` and
``I`` are tifffile's letters for axes a file does not declare.

The rule for arrays without axes (Python callers, napari layers) is in :func:`arrange`.
"""

from __future__ import annotations

import numpy as np

from seglab.errors import SeglabError

CHANNEL_LETTERS = "CS"
UNDECLARED_LETTERS = "QI"
# an undeclared axis with this many entries may be channels or planes: the user must say which
AMBIGUOUS_SIZES = (2, 3, 4)


def parse_axes(axes: str, ndim: int) -> str:
    """Upper-case ``axes`` and check it fits an array of ``ndim`` dimensions."""
    if not isinstance(axes, str) or not axes.isalpha():
        raise SeglabError(f"axes must be letters such as YX, ZYX or YXC, got {axes!r}")
    axes = axes.upper()
    if len(axes) != ndim:
        raise SeglabError(f"axes {axes!r} name {len(axes)} axes but the image has {ndim}")
    if len(set(axes)) != len(axes):
        raise SeglabError(f"axes {axes!r} name an axis twice")
    if "Y" not in axes or "X" not in axes:
        raise SeglabError(f"axes {axes!r} must include Y and X")
    if sum(axes.count(c) for c in CHANNEL_LETTERS) > 1:
        raise SeglabError(f"axes {axes!r} have more than one channel axis (C or S)")
    return axes


def ambiguous_axes(axes: str, shape: tuple[int, ...]) -> list[int]:
    """Axes a file does not declare (``Q``/``I``) whose size could be channels or planes."""
    return [i for i, (a, n) in enumerate(zip(axes, shape)) if a in UNDECLARED_LETTERS and n in AMBIGUOUS_SIZES]


def check_declared(axes: str, shape: tuple[int, ...], name: str) -> None:
    """A clear error when some axis of a file could be channels or planes (see :func:`ambiguous_axes`)."""
    bad = ambiguous_axes(axes, shape)
    if bad:
        n = shape[bad[0]]
        example_c = "".join("C" if i == bad[0] else ("Z" if a in UNDECLARED_LETTERS else a) for i, a in enumerate(axes))
        example_z = "".join("Z" if a in UNDECLARED_LETTERS else a for a in axes)
        raise SeglabError(
            f"{name} has shape {tuple(shape)} and does not say whether axis {bad[0]} ({n} entries) holds "
            f"channels or planes; give the axes, e.g. --axes {example_c} ({n} channels) or --axes {example_z} "
            f"({n} planes)"
        )


def guess_channel_axis(shape: tuple[int, ...]) -> int | None:
    """The rule for arrays without axes: a last axis of at most 4 entries after two larger
    ones (``(..., H, W, C)``) holds channels; anything else has none."""
    if len(shape) >= 3 and shape[-1] <= 4 and shape[-2] > 4 and shape[-3] > 4:
        return len(shape) - 1
    return None


def arrange(
    image: np.ndarray,
    *,
    axes: str | None = None,
    channel_axis: int | None = None,
    rgb: bool | None = None,
) -> tuple[np.ndarray, int | None, bool]:
    """The image as the engine wants it: stack axes, then Y, X, then the channel axis (if any).

    Returns ``(array, channel_axis, rgb)`` with ``channel_axis`` -1 or None. Which axis
    holds channels comes from ``axes`` (``C`` or ``S``), else ``channel_axis``, else the
    rule of :func:`guess_channel_axis`. The channels are RGB colour when ``rgb`` says so;
    when it is None, when they are ``S`` samples or (without axes) a last axis of 3 or 4
    entries. Non-RGB channels are never mixed into grey (see ``select_channels``).
    """
    ndim = image.ndim
    if axes is not None:
        axes = parse_axes(axes, ndim)
        ca = next((i for i, a in enumerate(axes) if a in CHANNEL_LETTERS), None)
        stack = [i for i, a in enumerate(axes) if a not in "YX" and i != ca]
        order = stack + [axes.index("Y"), axes.index("X")] + ([ca] if ca is not None else [])
        out = np.transpose(image, order) if order != list(range(ndim)) else image
        if ca is None:
            return out, None, False
        is_rgb = rgb if rgb is not None else (axes[ca] == "S" and image.shape[ca] in (3, 4))
        return out, -1, bool(is_rgb)
    if channel_axis is None and rgb:
        channel_axis = ndim - 1
    if channel_axis is None:
        channel_axis = guess_channel_axis(image.shape)
        if channel_axis is None:
            return image, None, False
    if not -ndim <= channel_axis < ndim:
        raise SeglabError(f"channel axis {channel_axis} does not exist for an image of shape {image.shape}")
    channel_axis %= ndim
    if rgb is None:
        rgb = channel_axis == ndim - 1 and image.shape[-1] in (3, 4)
    return np.moveaxis(image, channel_axis, -1), -1, bool(rgb)
