"""Tiny Mask R-CNN variants and a deterministic instance 'family' for fast tests."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage as ndi
from torch import nn
from torchvision.ops import roi_align

from seglab.models.base import ModelConfig, Prediction, SegmentationModel, ThresholdSpec
from seglab.models.detections import Detections, detect_plane_iter, paste_detections

#: a Mask R-CNN small enough for unit tests (same structure as the real one)
TINY_ARCH = {
    "stem": 8, "widths": [8, 16, 16, 16], "blocks": [1, 1, 1, 1], "fpn_channels": 16, "box_head": 32,
    "mask_head": [16], "detections_per_img": 300, "rpn_pre_nms_top_n": 300, "rpn_post_nms_top_n": 300,
    "rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 300, "box_batch_size_per_image": 64,
    # an untrained network's objectness is near 0.5 everywhere, so an objectness threshold would
    # keep every anchor: tiny test models keep torchvision's top-N budgets
    "rpn_score_thresh": 0.0,
}


def tiny_maskrcnn(name: str = "tiny-maskrcnn", **fields):
    from seglab.models.storage import new_model

    return new_model("maskrcnn", name, description="tiny test model", architecture=dict(TINY_ARCH),
                     tile_context=32, **fields)


class BlobDetectorNet(nn.Module):
    divisor = 8


class BlobDetector(SegmentationModel):
    """Detects bright connected components of each tile, like a perfect, local detector.

    Boxes, scores and masks depend only on the pixels of the object, so they are the
    same in every tile that holds it whole; masks are sampled with torchvision's RoIAlign
    exactly as Mask R-CNN's training targets are.
    """

    family: ClassVar[str] = "test-blobs"
    has_boxes: ClassVar[bool] = True
    threshold_specs: ClassVar[dict[str, ThresholdSpec]] = {
        "score_thresh": ThresholdSpec(0.1, 0.0, 1.0, 0.05, "lowest score kept"),
        "mask_thresh": ThresholdSpec(0.5, 0.0, 1.0, 0.05, "mask probability where an object ends"),
        "nms_thresh": ThresholdSpec(0.5, 0.0, 1.0, 0.05, "box IoU above which the weaker detection goes"),
        "min_area": ThresholdSpec(1.0, 0.0, 1e6, 1.0, "smallest object kept"),
    }

    @classmethod
    def build_network(cls, config: ModelConfig) -> nn.Module:
        return BlobDetectorNet()

    def forward_tiles(self, batch: torch.Tensor, thresholds=None) -> list[Detections]:
        out = []
        for tile in batch.float().cpu().numpy():
            fg = tile[0] > 0.5
            comp, _ = ndi.label(fg)
            boxes, scores, masks = [], [], []
            for i, sl in enumerate(ndi.find_objects(comp), start=1):
                ys, xs = sl
                box = [xs.start, ys.start, xs.stop, ys.stop]
                m = torch.from_numpy((comp == i).astype(np.float32))[None, None]
                rois = torch.tensor([[0.0, *map(float, box)]])
                masks.append(roi_align(m, rois, (28, 28), 1.0)[0, 0].numpy())
                boxes.append(box)
                # a score that depends on the object only: its mean brightness
                scores.append(float(np.clip(tile[0][comp == i].mean(), 0, 1)) * 0.5 + 0.25)
            out.append(Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                                  np.ones(len(boxes), np.int64), np.asarray(masks, np.float32).reshape(-1, 28, 28),
                                  tile.shape[-2:]))
        return out

    def raw_output_iter(self, x, thresholds, run):
        return (yield from detect_plane_iter(self, x, thresholds, run))

    def postprocess(self, maps: Detections, thresholds: dict[str, float], shape=None) -> Prediction:
        return paste_detections(maps, maps.shape, thresholds)

    def make_targets(self, labels):
        raise NotImplementedError("BlobDetector is not trainable")

    def loss(self, outputs, targets, valid):
        raise NotImplementedError("BlobDetector is not trainable")


def blob_detector(context: int = 32) -> BlobDetector:
    return BlobDetector(ModelConfig(name="blobs", family="test-blobs", tile_context=context))
