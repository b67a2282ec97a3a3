"""The one model interface that every family (U-Net, StarDist-style, Mask R-CNN) implements.

A model is a folder holding ``config.json`` (a :class:`ModelConfig`) and
``weights.safetensors``. A family subclasses :class:`SegmentationModel` and says:

* how to build its network from ``config.architecture``;
* how the inference engine should run it: ``output_kind == "dense"`` means
  :meth:`forward_tiles` returns per-pixel maps that the engine stitches from tile
  cores and hands to :meth:`postprocess` for the whole plane (U-Net, StarDist);
  ``"instances"`` means the family returns objects per tile, and the engine keeps
  each object in the tile whose core holds its centre (Mask R-CNN);
* what training needs: :meth:`make_targets` and :meth:`loss`, and, for a family whose
  network needs the targets in its forward pass (Mask R-CNN), :meth:`training_loss`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from seglab.errors import SeglabError
from seglab.models.config import ModelConfig


@dataclass
class Prediction:
    """Result of segmenting one plane: instance labels and a per-object table."""

    labels: np.ndarray
    table: dict[str, np.ndarray]
    extras: dict[str, Any] = field(default_factory=dict)


class SegmentationModel(ABC):
    """Base class of all model families."""

    family: ClassVar[str]
    output_kind: ClassVar[str] = "dense"
    #: threshold names and their defaults, used by the CLI and widget to offer overrides
    default_thresholds: ClassVar[dict[str, float]] = {}
    #: values tried when thresholds are tuned on annotated images (empty: keep them)
    threshold_grid: ClassVar[dict[str, list[float]]] = {}
    #: outlines the family can give besides labels, in ``Prediction.extras["shapes"]``:
    #: ``"polygon"``, ``"rectangle"`` or None
    shape_type: ClassVar[str | None] = None
    #: extra label context (pixels) the training sampler crops around each patch for
    #: :meth:`make_targets`; targets are then cropped back to the patch
    target_margin: ClassVar[int] = 0
    #: learning rate for training from a user's annotations when none is given (AdamW; measured
    #: per family in the adaptation benchmark, docs/benchmarks.md)
    finetune_lr: ClassVar[float] = 3e-4
    #: whether predictions carry bounding boxes (table columns ``bbox_y0, bbox_x0, bbox_y1, bbox_x1``)
    has_boxes: ClassVar[bool] = False

    def __init__(self, config: ModelConfig, network: nn.Module | None = None) -> None:
        if config.family != self.family:
            raise SeglabError(f"config family {config.family!r} does not match {self.family!r}")
        self.config = config
        self.network = network if network is not None else self.build_network(config)
        self.network.eval()

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
        """Effective thresholds: family defaults < config < user overrides."""
        out = dict(self.default_thresholds)
        out.update(self.config.thresholds)
        for k, v in (overrides or {}).items():
            if v is None:
                continue
            if k not in out:
                raise SeglabError(
                    f"unknown threshold {k!r} for {self.family}; known: {', '.join(sorted(out))}"
                )
            out[k] = float(v)
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

        Dense families return activated maps ``(B, K, H, W)``. Instance families take a
        ``thresholds`` keyword (the effective thresholds) and return one detection set per
        tile: a dict with ``boxes`` (N, 4) as x0, y0, x1, y1 in tile pixels, ``scores``,
        ``labels`` (classes) and ``masks`` (N, M, M) probabilities over each box (or a
        :class:`~seglab.inference.instances.Detections`).
        """

    @abstractmethod
    def postprocess(
        self, maps: Any, thresholds: dict[str, float], shape: tuple[int, int] | None = None
    ) -> Prediction:
        """Turn stitched maps ``(K, h, w)`` (dense, ``1 / output_stride`` of the plane) or a plane's
        merged :class:`~seglab.inference.instances.Detections` (instances) into instances for one
        plane of ``shape`` (default: the maps' size times the stride)."""

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
