"""The one model interface that every family (U-Net, StarDist-style, Mask R-CNN) implements.

A model is a folder holding ``config.json`` (a :class:`ModelConfig`) and
``weights.safetensors``. A family subclasses :class:`SegmentationModel` and says:

* how to build its network from ``config.architecture``;
* its thresholds (:class:`ThresholdSpec`: default, range, step, tuning values, help);
* how a plane is run: :meth:`raw_output_iter` gives the plane's raw output through the
  engine's :class:`~seglab.inference.engine.TileRun` (default: dense maps stitched from
  tile cores, as U-Net and StarDist use; Mask R-CNN overrides it with detections kept
  per tile core), and :meth:`postprocess_iter` turns that output into instances,
  yielding ``(done, total)`` often so that a run can be cancelled at any moment;
* what training needs: :meth:`make_targets` and :meth:`loss`, and, for a family whose
  network needs the targets in its forward pass (Mask R-CNN), :meth:`training_loss`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from seglab.progress import run_to_end
from seglab.errors import SeglabError
from seglab.models.config import ModelConfig

if TYPE_CHECKING:
    from seglab.inference.dihedral import Orientation
    from seglab.inference.engine import ProgressEvent, TileRun
    from seglab.inference.size_model import SizeModel

#: what :meth:`SegmentationModel.postprocess_iter` yields: ``(done, total)`` steps of the plane
Step = tuple[int, int]


#: key of a teacher model's activated output maps among a training batch's targets
#: (knowledge distillation, :mod:`seglab.training.distill`)
TEACHER_KEY = "teacher"


@dataclass(frozen=True)
class ThresholdSpec:
    """One threshold of a family: its default, allowed range, step, tuning values and meaning.

    ``help`` says what the threshold does and which way to move it; the widget shows it as a
    tooltip, the CLI and the widget refuse values outside ``[low, high]`` (and NaN or inf).
    ``grid`` lists the values tried when thresholds are re-tuned on annotated images (empty:
    not tuned).
    """

    default: float
    low: float
    high: float
    step: float
    help: str
    grid: tuple[float, ...] = ()

    def check(self, name: str, value: Any, family: str) -> float:
        """``value`` as a float within the range, or a clear :class:`SeglabError`."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise SeglabError(f"threshold {name} of {family} needs a number from {self.low:g} to {self.high:g}, "
                              f"got {value!r} ({self.help})") from None
        if not math.isfinite(v):
            raise SeglabError(f"threshold {name}={value} of {family} is not a finite number; "
                              f"give a value from {self.low:g} to {self.high:g} ({self.help})")
        if not self.low <= v <= self.high:
            raise SeglabError(f"threshold {name}={v:g} of {family} is outside its range {self.low:g} to "
                              f"{self.high:g} ({self.help})")
        return v


@dataclass
class Prediction:
    """Result of segmenting one plane: instance labels and a per-object table."""

    labels: np.ndarray
    table: dict[str, np.ndarray]
    extras: dict[str, Any] = field(default_factory=dict)


class SegmentationModel(ABC):
    """Base class of all model families."""

    family: ClassVar[str]
    #: the family's thresholds by name: what the CLI (``-t NAME=VALUE``) and the widget offer
    threshold_specs: ClassVar[dict[str, ThresholdSpec]] = {}
    #: derived from ``threshold_specs``: names and defaults
    default_thresholds: ClassVar[dict[str, float]] = {}
    #: derived from ``threshold_specs``: values tried when thresholds are tuned (empty: keep them)
    threshold_grid: ClassVar[dict[str, list[float]]] = {}
    #: outlines the family can give besides labels, in ``Prediction.extras["shapes"]``:
    #: ``"polygon"``, ``"rectangle"`` or None
    shape_type: ClassVar[str | None] = None
    #: pixels of the image reflected beyond its edges before the network sees it (tiles take
    #: their context from them; beyond, the network's own zero padding, as at the edges of its
    #: training patches); at most the tile context. 16 for every family: as accurate on DSB2018
    #: ``val`` as the whole tile context, for 0.84x the pixels of a 2048x2048 image
    #: (docs/benchmarks.md, "Padding at the image's edges")
    image_border: ClassVar[int] = 16
    #: dense maps kept channel-last in memory (a ``(K, h, w)`` view of ``(h, w, K)`` memory, as
    #: the network's channels-last output already is): for a family that reads all K channels at
    #: a few pixels (StarDist's rays at its candidates), stitching then copies whole rows instead
    #: of transposing every map (0.45 s -> 0.07 s of a 2048x2048 StarDist run)
    maps_channel_last: ClassVar[bool] = False
    #: extra label context (pixels) the training sampler crops around each patch for
    #: :meth:`make_targets`; targets are then cropped back to the patch
    target_margin: ClassVar[int] = 0
    #: learning rate for training from a user's annotations when none is given (AdamW; measured
    #: per family in the adaptation benchmark, docs/benchmarks.md)
    finetune_lr: ClassVar[float] = 3e-4
    #: whether predictions carry bounding boxes (table columns ``bbox_y0, bbox_x0, bbox_y1, bbox_x1``)
    has_boxes: ClassVar[bool] = False
    #: whether :meth:`loss` learns from a teacher's maps among the targets (``TEACHER_KEY``;
    #: :mod:`seglab.training.distill`)
    supports_distillation: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs = cls.__dict__.get("threshold_specs")
        if specs is not None:
            cls.default_thresholds = {k: float(s.default) for k, s in specs.items()}
            cls.threshold_grid = {k: [float(v) for v in s.grid] for k, s in specs.items() if s.grid}

    def __init__(self, config: ModelConfig, network: nn.Module | None = None) -> None:
        if config.family != self.family:
            raise SeglabError(f"config family {config.family!r} does not match {self.family!r}")
        self.config = config
        self.network = network if network is not None else self.build_network(config)
        self.network.eval()
        #: object size from the encoder's features (:mod:`seglab.inference.size_model`), when fitted
        self.size_model: SizeModel | None = None

    # ---- construction -------------------------------------------------
    @classmethod
    @abstractmethod
    def build_network(cls, config: ModelConfig) -> nn.Module:
        """A fresh (untrained) network for ``config.architecture``."""

    @property
    def size_divisor(self) -> int:
        """Tile height/width must be a multiple of this."""
        return int(getattr(self.network, "divisor", 1))

    def encoder_levels(self) -> list[str]:
        """Parameter-name prefixes of the feature extractor's levels, from the input down.

        Fine-tuning keeps the first ``FinetuneSettings.freeze_levels`` of them fixed. Empty
        when the network does not say (its ``encoder_levels()`` method).
        """
        levels = getattr(self.network, "encoder_levels", None)
        return list(levels()) if callable(levels) else []

    @property
    def output_stride(self) -> int:
        """Dense maps have ``1 / output_stride`` of the input's height and width."""
        return 1

    def thresholds(self, overrides: dict[str, float] | None = None) -> dict[str, float]:
        """Effective thresholds: family defaults < config < user overrides.

        Overrides must be known names with finite values inside the family's ranges
        (:class:`ThresholdSpec`); anything else is a :class:`SeglabError`.
        """
        out = dict(self.default_thresholds)
        out.update(self.config.thresholds)
        for k, v in (overrides or {}).items():
            if v is None:
                continue
            if k not in out:
                raise SeglabError(
                    f"unknown threshold {k!r} for {self.family}; known: {', '.join(sorted(out))}"
                )
            spec = self.threshold_specs.get(k)
            out[k] = spec.check(k, v, self.family) if spec is not None else float(v)
        return out

    # ---- inference ----------------------------------------------------
    def predict(self, image: np.ndarray, **kwargs: Any) -> Any:
        """Segment an image (2D, or a Z/T stack): a :class:`~seglab.inference.engine.Segmentation`
        with ``labels`` and the per-object ``table``. Keyword arguments as for
        :func:`seglab.inference.engine.segment_iter` (channels, tile size, device, thresholds)."""
        from seglab.inference.engine import segment

        return segment(self, image, **kwargs)

    @abstractmethod
    def forward_tiles(self, batch: torch.Tensor) -> torch.Tensor | list[Any]:
        """Run the network on normalised tiles ``(B, C, H, W)``.

        Dense families return activated maps ``(B, K, H, W)`` (what the default
        :meth:`raw_output_iter` stitches); a family with its own plane path may return
        anything its :meth:`raw_output_iter` understands (Mask R-CNN: detections per tile).
        """

    def forward_tiles_iter(self, batch: torch.Tensor) -> Generator[None, None, Any]:
        """:meth:`forward_tiles` in steps (yielding between them; the dense path runs each step
        under inference mode and autocast and reports progress in between, so that a batch
        of large tiles can be cancelled). The default is one step. A dense family may return its
        maps before their (pixelwise) activation and apply it in :meth:`activate_maps`."""
        return self.forward_tiles(batch)
        yield  # unreachable: makes this a generator

    def activate_maps(self, maps: torch.Tensor) -> None:
        """The activation :meth:`forward_tiles_iter` left out, in place on a plane's stitched float32
        maps ``(K, h, w)`` (the dense path calls it once the tiles' cores are in: a tile's core is
        activated as it would have been in the whole tile, without a float32 copy of every tile
        first). The default: nothing left out."""

    def dihedral_channels(self, orientation: Orientation) -> list[int] | None:
        """For test-time augmentation (:mod:`seglab.inference.dihedral`): which channel of the
        maps of a tile in ``orientation`` (turned back pixel by pixel) holds each of the maps'
        channels; None: the family's output does not turn with the image (the default)."""
        return None

    @classmethod
    def supports_augment(cls) -> bool:
        """Whether test-time augmentation applies to the family (it says how its maps turn)."""
        return cls.dihedral_channels is not SegmentationModel.dihedral_channels

    def raw_output_iter(
        self, x: np.ndarray, thresholds: dict[str, float], run: TileRun
    ) -> Generator[ProgressEvent, None, Any]:
        """The raw output of a normalised plane ``(C, H, W)``: what :meth:`postprocess_iter` takes.

        The default is the dense path: ``run.dense_maps`` stitches :meth:`forward_tiles`'
        maps from tile cores (``(K, h, w)`` at ``1 / output_stride``). A family whose raw
        output depends on thresholds says which in :meth:`raw_thresholds`.
        """
        return (yield from run.dense_maps(self, x))

    def raw_thresholds(self, thresholds: dict[str, float], grid: dict[str, list[float]]) -> dict[str, float]:
        """The thresholds :meth:`raw_output_iter` depends on, for tuning point ``thresholds`` of
        ``grid``: tuning computes the raw output once per distinct answer (default: once)."""
        return {}

    def postprocess_iter(
        self, raw: Any, thresholds: dict[str, float], shape: tuple[int, int] | None = None
    ) -> Generator[Step, None, Prediction]:
        """Turn a plane's raw output into instances for a plane of ``shape`` (default: the
        maps' size times the stride), yielding ``(done, total)`` at least every few hundred
        milliseconds so that closing the generator cancels it at once. The default calls
        :meth:`postprocess` in one step (families override one of the two)."""
        yield (0, 1)
        return self.postprocess(raw, thresholds, shape)

    def postprocess(
        self, maps: Any, thresholds: dict[str, float], shape: tuple[int, int] | None = None
    ) -> Prediction:
        """:meth:`postprocess_iter` run to the end."""
        if type(self).postprocess_iter is SegmentationModel.postprocess_iter:
            raise NotImplementedError(f"{type(self).__name__} implements neither postprocess nor postprocess_iter")
        return run_to_end(self.postprocess_iter(maps, thresholds, shape))

    def blank_prediction(self, shape: tuple[int, int], thresholds: dict[str, float]) -> Prediction:
        """The prediction of a plane with no objects, without the network (a blank plane:
        :func:`seglab.inference.denoise.is_blank`): empty labels, an empty table with the family's
        columns, and no outlines. Families whose postprocessing adds columns override it."""
        from seglab.objects import object_table

        labels = np.zeros(tuple(int(n) for n in shape), dtype=np.int32)
        extras = ({} if self.shape_type is None
                  else {"shapes": {"type": self.shape_type, "data": [], "label": np.zeros(0, np.int64)}})
        return Prediction(labels=labels, table=object_table(labels), extras=extras)

    # ---- training -----------------------------------------------------
    @abstractmethod
    def make_targets(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Per-pixel targets ``{name: (h, w) or (K, h, w)}`` for one label crop, at
        ``1 / output_stride`` of its size."""

    @abstractmethod
    def loss(
        self,
        outputs: torch.Tensor,
        targets: dict[str, torch.Tensor],
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on raw network outputs; ``valid`` (B, 1, H, W) masks pixels that count."""

    def training_loss(
        self,
        net: nn.Module,
        x: torch.Tensor,
        targets: dict[str, torch.Tensor],
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One training forward and its loss (the loop calls this under autocast).

        The default runs ``net(x)`` under the caller's autocast and :meth:`loss` outside
        it (as the loop did before this hook); a family whose network needs the targets in
        its forward (Mask R-CNN) overrides it.
        """
        out = net(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.loss(out, targets, valid)
