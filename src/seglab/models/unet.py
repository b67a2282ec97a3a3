"""U-Net family: foreground probability + normalised distance map, then seeded watershed."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.morphology import reconstruction
from skimage.segmentation import watershed
from torch import nn
from torch.nn import functional as F

from seglab.models.base import ModelConfig, Prediction, SegmentationModel
from seglab.models.targets import normalized_distance, touching_boundaries
from seglab.models.unet_net import BatchNormFolding, UNet
from seglab.objects import object_table


def h_maxima_in_components(dist: np.ndarray, fg: np.ndarray, h: float, floor: float) -> np.ndarray:
    """Regional maxima of ``dist`` at least ``h`` high and above ``floor``, within foreground.

    Computed per connected foreground component on its bounding box (background set
    to 0), which gives the h-maxima of the whole map at a fraction of the cost.
    """
    comp, n = ndi.label(fg)
    peaks = np.zeros(fg.shape, dtype=bool)
    if n == 0:
        return peaks
    tops = ndi.maximum(dist, comp, np.arange(1, n + 1))
    for i, sl in enumerate(ndi.find_objects(comp), start=1):
        if sl is None or tops[i - 1] <= floor:
            continue
        mask = comp[sl] == i
        sub = np.where(mask, dist[sl], 0.0)
        rec = reconstruction(sub - h, sub, method="dilation")
        peaks[sl] |= ((sub - rec) >= h - 1e-6) & mask
    return peaks & (dist > floor)


def instances_from_maps(
    prob: np.ndarray,
    dist: np.ndarray,
    prob_thresh: float,
    seed_thresh: float,
    min_area: float,
    seed_h: float = 0.0,
) -> np.ndarray:
    """Seeded watershed of the foreground on the (smoothed) normalised distance map.

    Seeds are the regional maxima of the distance that stand at least ``seed_h``
    above their surroundings (h-maxima) and above ``seed_thresh``; with
    ``seed_h == 0`` seeds are simply the connected regions above ``seed_thresh``.
    Foreground components that hold no seed become objects of their own.
    """
    fg = prob > prob_thresh
    if not fg.any():
        return np.zeros(prob.shape, dtype=np.int32)
    if seed_h > 0:
        dist = ndi.gaussian_filter(dist.astype(np.float32, copy=False), 1.0)
        seeds, n_seeds = ndi.label(h_maxima_in_components(dist, fg, seed_h, seed_thresh))
    else:
        seeds, n_seeds = ndi.label(fg & (dist > seed_thresh))
    labels = watershed(-dist, seeds, mask=fg) if n_seeds else np.zeros(prob.shape, dtype=np.int32)
    rest, n_rest = ndi.label(fg & (labels == 0))
    if n_rest:
        labels = np.where(rest > 0, rest + n_seeds, labels)
    labels = labels.astype(np.int32, copy=False)
    # drop small objects and relabel consecutively
    n = int(labels.max())
    if n == 0:
        return labels
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep = area >= max(min_area, 1)
    keep[0] = False
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[labels]


class UNetModel(BatchNormFolding, SegmentationModel):
    """U-Net predicting (foreground logit, normalised distance logit)."""

    family: ClassVar[str] = "unet"
    architecture_keys: ClassVar[frozenset[str]] = frozenset({"widths", "convs_per_block"})
    output_kind: ClassVar[str] = "dense"
    finetune_lr: ClassVar[float] = 1e-3
    default_thresholds: ClassVar[dict[str, float]] = {
        "prob_thresh": 0.5,
        "seed_thresh": 0.4,
        "seed_h": 0.1,
        "min_area": 8.0,
    }
    threshold_grid: ClassVar[dict[str, list[float]]] = {
        "prob_thresh": [0.4, 0.5, 0.6],
        "seed_h": [0.05, 0.1, 0.15, 0.2],
        "seed_thresh": [0.3, 0.5],
        "min_area": [5.0, 15.0],
    }

    @classmethod
    def build_network(cls, config: ModelConfig) -> nn.Module:
        arch = dict(config.architecture)
        return UNet(
            in_channels=config.input_channels,
            out_channels=2,
            widths=tuple(arch.get("widths", (16, 32, 64, 128))),
            convs_per_block=int(arch.get("convs_per_block", 2)),
        )

    def forward_tiles(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._inference_network()(batch).float())

    def postprocess(
        self, maps: np.ndarray, thresholds: dict[str, float], shape: tuple[int, int] | None = None
    ) -> Prediction:
        prob, dist = maps[0], maps[1]
        labels = instances_from_maps(
            prob, dist, thresholds["prob_thresh"], thresholds["seed_thresh"], thresholds["min_area"],
            thresholds.get("seed_h", 0.0),
        )
        return Prediction(labels=labels, table=object_table(labels, prob))

    def make_targets(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        border = ndi.binary_dilation(touching_boundaries(labels), iterations=1)
        return {
            "fg": (labels > 0).astype(np.float32),
            "dist": normalized_distance(labels),
            "border": border.astype(np.float32),
        }

    def loss(
        self,
        outputs: torch.Tensor,
        targets: dict[str, torch.Tensor],
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        valid = valid.float()
        n = valid.sum().clamp_min(1.0)
        fg_t = targets["fg"].unsqueeze(1)
        dist_t = targets["dist"].unsqueeze(1)
        # pixels where touching objects meet decide merges and splits: optionally weigh them more
        bw = float(self.config.loss.get("border_weight", 0.0))
        border = targets["border"].unsqueeze(1) if bw > 0 and "border" in targets else None
        fg_logit, dist_logit = outputs[:, :1].float(), outputs[:, 1:2].float()
        bce = (F.binary_cross_entropy_with_logits(fg_logit, fg_t, reduction="none") * valid).sum() / n
        p = torch.sigmoid(fg_logit) * valid
        dice = 1 - (2 * (p * fg_t).sum() + 1) / (p.sum() + (fg_t * valid).sum() + 1)
        # distance regressed on a sigmoid, weighted towards foreground where it matters
        w = valid * (0.2 + fg_t) if border is None else valid * (0.2 + fg_t + bw * border)
        dist_err = ((torch.sigmoid(dist_logit) - dist_t) ** 2 * w).sum() / w.sum().clamp_min(1.0)
        total = bce + dice + 4.0 * dist_err
        return total, {"bce": bce.detach().item(), "dice": dice.detach().item(), "dist": dist_err.detach().item()}
