"""Mask R-CNN family (He et al., ICCV 2017) on torchvision: boxes, classes and masks per object.

Inference: the family's own plane path (:meth:`MaskRCNNModel.raw_output_iter`,
:mod:`seglab.models.detections`) runs :meth:`MaskRCNNModel.forward_tiles` per batch of
tiles (one tile per batch on the CPU, so that a cancel waits for one tile at most), keeps
each detection in the tile whose core holds its box centre (the network chooses proposals
by objectness, ``rpn_score_thresh``, not by a per-tile top-N, so a tile's choice near an
object does not depend on the rest of the tile), and
:meth:`postprocess_iter` pastes the plane's masks into labels (higher score wins overlaps). Training: :meth:`training_loss` turns each label
patch into boxes and masks and returns torchvision's summed losses.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from seglab.models.base import ModelConfig, Prediction, SegmentationModel, Step, ThresholdSpec
from seglab.models.detections import Detections, detect_plane_iter, paste_detections_iter
from seglab.models.maskrcnn_net import DEFAULT_ARCHITECTURE, MaskRCNNNet, inference_copy
from seglab.models.unet_net import BatchNormFolding
from seglab.progress import run_to_end

if TYPE_CHECKING:
    from seglab.inference.engine import ProgressEvent, TileRun

#: objects that keep less than this fraction of their pixels inside ``valid`` are not targets
MIN_VALID_FRACTION = 0.5
#: objects (or fragments at a patch edge) smaller than this many pixels are not targets
MIN_TARGET_AREA = 4


def targets_from_labels(labels: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """torchvision targets for one label patch ``(H, W)``: ``boxes`` (x0, y0, x1, y1, pixel k
    spanning [k, k+1)), ``labels`` (all 1) and binary ``masks`` (N, H, W).

    Objects mostly outside ``valid`` (padding, unannotated regions) and tiny fragments are
    dropped; a patch without objects gives empty targets.
    """
    lab = labels.long()
    h, w = lab.shape
    ids = torch.unique(lab)
    ids = ids[ids > 0]
    masks = lab[None] == ids[:, None, None] if len(ids) else torch.zeros((0, h, w), dtype=torch.bool, device=lab.device)
    if len(ids):
        area = masks.flatten(1).sum(1)
        keep = area >= MIN_TARGET_AREA
        if valid is not None:
            inside = (masks & valid.bool()[None]).flatten(1).sum(1)
            keep &= inside >= MIN_VALID_FRACTION * area
        masks = masks[keep]
    if len(masks):
        rows, cols = masks.any(2), masks.any(1)
        ar_h = torch.arange(h, device=lab.device)
        ar_w = torch.arange(w, device=lab.device)
        y0 = torch.where(rows, ar_h, h).amin(1)
        y1 = torch.where(rows, ar_h, -1).amax(1) + 1
        x0 = torch.where(cols, ar_w, w).amin(1)
        x1 = torch.where(cols, ar_w, -1).amax(1) + 1
        boxes = torch.stack([x0, y0, x1, y1], 1).float()
    else:
        boxes = torch.zeros((0, 4), dtype=torch.float32, device=lab.device)
    return {"boxes": boxes, "labels": torch.ones(len(masks), dtype=torch.int64, device=lab.device),
            "masks": masks.to(torch.uint8)}


def fill_invalid(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Replace pixels outside ``valid`` by the median of each image's valid pixels.

    Mask R-CNN's losses cannot skip pixels, so padded or unannotated image content would
    teach it that nuclei there are background; a flat fill shows it nothing instead.
    """
    v = valid.bool().expand_as(x)
    if bool(v.all()):
        return x
    out = x.clone()
    for i in range(x.shape[0]):
        vi = v[i]
        fill = x[i][vi].median() if bool(vi.any()) else x.new_zeros(())
        out[i] = torch.where(vi, x[i], fill)
    return out


class MaskRCNNModel(BatchNormFolding, SegmentationModel):
    """torchvision Mask R-CNN with a compact FPN backbone, at the image's own pixel scale; inference
    runs a copy with the backbone's batch norm folded (:func:`~seglab.models.maskrcnn_net.inference_copy`)."""

    family: ClassVar[str] = "maskrcnn"
    architecture_keys: ClassVar[frozenset[str]] = frozenset(DEFAULT_ARCHITECTURE)
    has_boxes: ClassVar[bool] = True
    shape_type: ClassVar[str | None] = "rectangle"
    threshold_specs: ClassVar[dict[str, ThresholdSpec]] = {
        "score_thresh": ThresholdSpec(
            0.5, 0.0, 1.0, 0.05, "lowest detection score kept: raise it to drop doubtful objects, "
            "lower it to find faint ones", (0.3, 0.4, 0.5, 0.6, 0.7)),
        "mask_thresh": ThresholdSpec(
            0.5, 0.0, 1.0, 0.05, "mask probability where an object ends: raise it for tighter "
            "outlines, lower it for fuller ones", (0.4, 0.5, 0.6)),
        "nms_thresh": ThresholdSpec(
            0.5, 0.0, 1.0, 0.05, "box overlap (IoU) above which the weaker of two detections is "
            "dropped: lower it if objects are doubled, raise it if touching objects go missing", (0.3, 0.5)),
        "min_area": ThresholdSpec(
            5.0, 0.0, 1e6, 1.0, "smallest object kept, in pixels: raise it to drop specks and "
            "fragments", (5.0, 15.0)),
    }

    @classmethod
    def build_network(cls, config: ModelConfig) -> nn.Module:
        return MaskRCNNNet(config.input_channels, dict(config.architecture))

    @staticmethod
    def _inference_copy(net: nn.Module) -> nn.Module:
        return inference_copy(net)

    def forward_tiles(self, batch: torch.Tensor, thresholds: dict[str, float] | None = None) -> list[dict]:
        th = self.thresholds(thresholds)
        return self._inference_network().detect(batch.float(), th["score_thresh"], th["nms_thresh"])

    def raw_to_original(self, raw: Detections, sy: float, sx: float, shape: tuple[int, int]) -> Detections:
        """Detections of a plane segmented resized by ``(sy, sx)`` (``diameter=``), in the original
        plane's pixels; :meth:`postprocess_iter` then pastes their masks at full resolution."""
        return raw.rescaled(sy, sx, shape)

    def raw_output_iter(
        self, x: np.ndarray, thresholds: dict[str, float], run: TileRun
    ) -> Generator[ProgressEvent, None, Detections]:
        """The plane's detections (:func:`~seglab.models.detections.detect_plane_iter`), the network
        run in stages (:meth:`MaskRCNNNet.detect_iter`) with a progress event between them, and
        one tile per batch on the CPU, where a batch of large tiles takes many seconds."""
        batch = 1 if run.device.type == "cpu" else None
        th = self.thresholds(thresholds)

        net = self._inference_network()

        def forward(tiles: torch.Tensor):
            return net.detect_iter(tiles.float(), th["score_thresh"], th["nms_thresh"])

        return (yield from detect_plane_iter(self, x, thresholds, run, batch_size=batch, forward=forward))

    def raw_thresholds(self, thresholds: dict[str, float], grid: dict[str, list[float]]) -> dict[str, float]:
        """Detections depend on ``nms_thresh`` and ``score_thresh``: tuning detects once per
        ``nms_thresh`` at the lowest ``score_thresh`` it tries and only filters for the others."""
        low = min([float(thresholds["score_thresh"]), *map(float, grid.get("score_thresh", []))])
        return {"nms_thresh": float(thresholds["nms_thresh"]), "score_thresh": low}

    def postprocess_iter(
        self, maps: Detections, thresholds: dict[str, float], shape: tuple[int, int] | None = None
    ) -> Generator[Step, None, Prediction]:
        """Paste a plane's detections (see :func:`~seglab.models.detections.paste_detections_iter`)."""
        return (yield from paste_detections_iter(maps, maps.shape, thresholds))

    def blank_prediction(self, shape: tuple[int, int], thresholds: dict[str, float]) -> Prediction:
        """No detections pasted: the table has the box columns, the outlines no rectangles."""
        return run_to_end(paste_detections_iter(Detections.empty(shape), shape, thresholds))

    def make_targets(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """The label patch itself; boxes and masks are made per batch in :meth:`training_loss`."""
        return {"labels": np.asarray(labels, dtype=np.int32)}

    def training_loss(
        self,
        net: nn.Module,
        x: torch.Tensor,
        targets: dict[str, torch.Tensor],
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        per_image = [targets_from_labels(lab, val[0]) for lab, val in zip(targets["labels"], valid)]
        losses = net.losses(fill_invalid(x.float(), valid), per_image)
        return self.loss(losses, targets, valid)

    def loss(
        self,
        outputs: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum of torchvision's losses (``outputs`` is the dict that :meth:`MaskRCNNNet.losses` returns)."""
        total = torch.stack([v.float() for v in outputs.values()]).sum()
        parts = {k.removeprefix("loss_"): float(v.detach()) for k, v in outputs.items()}
        return total, parts
