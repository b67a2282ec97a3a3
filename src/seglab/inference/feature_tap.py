"""The encoder's features of one window, read from a run's own tiles.

``diameter="auto"``'s size model (:mod:`seglab.inference.size_model`) reads the per-channel mean
and standard deviation of each encoder level on a probe window. The factor-1 probe already runs
the network over that window (with its context), so an :class:`EncoderTap` hooks the encoder
levels of the network that runs during that pass and summarises the window's part of each
level's output there: the size model costs no second pass through the encoder.

The summary is of the window as seen inside its tile (convolutions near the window's edge see
the surrounding pixels, not zero padding): the size model is fitted on exactly that
(:func:`~seglab.inference.diameter.probe_tile`). It matters: on the 67 DSB2018 ``val`` images,
stardist-nuclei's size model fitted on bare windows read sizes 7.9 % (median; 25 % at most)
different from the same windows in their tiles. ``tests/inference/test_feature_tap.py`` checks
that the tap and :func:`probe_tile` agree for every family.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from seglab.inference.size_model import MIN_SIDE, level_window_stats


def running_network(model: Any) -> torch.nn.Module:
    """The network a run calls: the model's inference copy (batch norm folded) where it has one."""
    get = getattr(model, "_inference_network", None)
    return get() if callable(get) else model.network


class EncoderTap:
    """Summaries of the encoder levels' outputs over the plane window ``rows, cols``, taken from
    the first tile of a run that holds the whole window (see :meth:`recording`)."""

    def __init__(self, model: Any, rows: slice, cols: slice) -> None:
        net = running_network(model)
        get = getattr(net, "encoder_modules", None)
        small = min(rows.stop - rows.start, cols.stop - cols.start) < MIN_SIDE  # no features, as window_features
        self.modules: list[torch.nn.Module] = list(get()) if callable(get) and not small else []
        self.rows, self.cols = rows, cols
        self._levels: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.modules)
        self._tiles: Sequence[tuple[int, int, int, int]] = ()
        self._thread = threading.get_ident()

    @property
    def features(self) -> np.ndarray | None:
        """Mean and standard deviation per channel of every level, in :func:`window_features`'s
        order; None until a tile holding the window has gone through the whole encoder."""
        if not self.modules or any(v is None for v in self._levels):
            return None
        return torch.cat([t for v in self._levels for t in v]).double().cpu().numpy()  # type: ignore[union-attr]

    @contextlib.contextmanager
    def recording(self, tiles: Sequence[tuple[int, int, int, int]]) -> Iterator[None]:
        """Hooks on the encoder levels while the network runs a batch of ``tiles`` (each
        ``(top, left, height, width)`` in plane pixels, in batch order); installed and removed
        around each step (and reading this thread's calls only), so other runs of the network are not read."""
        self._tiles = tiles
        self._thread = threading.get_ident()
        handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.modules)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _hook(self, level: int):
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if (self._levels[level] is None and threading.get_ident() == self._thread  # not another thread's run
                    and isinstance(output, torch.Tensor) and output.dim() == 4):
                self._levels[level] = self._window_stats(output)
        return hook

    def _window_stats(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The window's summary from the first tile in the batch that holds it (None: none does)."""
        r0, r1, c0, c1 = self.rows.start, self.rows.stop, self.cols.start, self.cols.stop
        for b, (top, left, h, w) in enumerate(self._tiles[: out.shape[0]]):
            if top <= r0 and r1 <= top + h and left <= c0 and c1 <= left + w:
                return level_window_stats(out[b], (h, w), slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))
        return None

