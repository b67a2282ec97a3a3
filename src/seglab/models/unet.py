"""U-Net family: foreground probability + normalised distance map, then seeded watershed."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.segmentation import watershed
from torch import nn
from torch.nn import functional as F

from seglab.inference.dihedral import Orientation
from seglab.progress import run_to_end
from seglab.models.base import TEACHER_KEY, ModelConfig, Prediction, SegmentationModel, Step, ThresholdSpec
from seglab.models.grey_reconstruction import reconstruction_dilation
from seglab.models.targets import normalized_distance, touching_boundaries
from seglab.models.unet_net import BatchNormFolding, UNet, features_iter
from seglab.objects import object_table


#: seconds between two progress steps of the postprocessing (a cancel waits at most about this long)
STEP_SECONDS = 0.1


def _h_maxima(sub: np.ndarray, mask: np.ndarray, h: float) -> np.ndarray:
    """Regional maxima at least ``h`` high of one component's distances ``sub`` (0 outside ``mask``)."""
    rec = reconstruction_dilation(sub - h, sub)
    return ((sub - rec) >= h - 1e-6) & mask


def h_maxima_in_components(dist: np.ndarray, fg: np.ndarray, h: float, floor: float) -> np.ndarray:
    """Regional maxima of ``dist`` at least ``h`` high and above ``floor``, within foreground.

    Computed per connected foreground component on its bounding box (background set
    to 0), which gives the h-maxima of the whole map at a fraction of the cost.
    """
    comp, _ = ndi.label(fg)
    peaks = np.zeros(fg.shape, dtype=bool)
    for i, sl in enumerate(ndi.find_objects(comp), start=1):
        if sl is None:
            continue
        mask = comp[sl] == i
        sub = np.where(mask, dist[sl], 0.0)
        if sub.max() > floor:
            peaks[sl] |= _h_maxima(sub, mask, h)
    return peaks & (dist > floor)


def _smoothed(a: np.ndarray, sigma: float, rows: int = 512) -> Generator[Step, None, np.ndarray]:
    """``ndi.gaussian_filter(a, sigma)`` computed in bands of ``rows`` rows (each with the
    kernel's reach of context, so the result is the same), yielding after each band."""
    reach = int(4.0 * sigma + 0.5)  # gaussian_filter's default truncate=4.0
    out = np.empty_like(a)
    h = a.shape[0]
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        lo, hi = max(r0 - reach, 0), min(r1 + reach, h)
        out[r0:r1] = ndi.gaussian_filter(a[lo:hi], sigma)[r0 - lo : r0 - lo + (r1 - r0)]
        yield (0, 1)
    return out


def instances_from_maps_iter(
    prob: np.ndarray,
    dist: np.ndarray,
    prob_thresh: float,
    seed_thresh: float,
    min_area: float,
    seed_h: float = 0.0,
) -> Generator[Step, None, np.ndarray]:
    """Seeded watershed of the foreground on the (smoothed) normalised distance map.

    Seeds are the regional maxima of the distance that stand at least ``seed_h``
    above their surroundings (h-maxima) and above ``seed_thresh``; with
    ``seed_h == 0`` seeds are simply the connected regions above ``seed_thresh``.
    Foreground components that hold no seed become objects of their own.

    Works one connected foreground component at a time (on its bounding box; the
    watershed never crosses between components, so this equals one watershed of the
    whole plane) and yields ``(done, total)`` components about every
    :data:`STEP_SECONDS`, so that a run can be cancelled at any moment.
    """
    fg = prob > prob_thresh
    yield (0, 1)
    if not fg.any():
        return np.zeros(prob.shape, dtype=np.int32)
    if seed_h > 0:
        dist = yield from _smoothed(dist.astype(np.float32, copy=False), 1.0)
    comp, n_comp = ndi.label(fg)
    del fg
    yield (0, n_comp)
    labels = np.zeros(prob.shape, dtype=np.int32)
    seedless: list[int] = []
    n = 0
    last = time.perf_counter()
    for i, sl in enumerate(ndi.find_objects(comp), start=1):
        if sl is None:
            continue
        mask = comp[sl] == i
        d = np.where(mask, dist[sl], 0.0)
        if seed_h > 0:
            peaks = _h_maxima(d, mask, seed_h) & (d > seed_thresh) if d.max() > seed_thresh else None
        else:
            peaks = mask & (d > seed_thresh)
        seeds, k = ndi.label(peaks) if peaks is not None else (None, 0)
        if k == 1:  # one seed floods its whole (connected) component
            labels[sl][mask] = n + 1
            n += 1
        elif k:
            ws = watershed(-d, seeds, mask=mask)
            labels[sl][mask] = ws[mask] + n
            n += k
        else:
            seedless.append(i)
        if time.perf_counter() - last > STEP_SECONDS:
            yield (i, n_comp)
            last = time.perf_counter()
    if seedless:  # components without a seed: objects of their own, numbered after the seeded ones
        ids = np.zeros(n_comp + 1, dtype=np.int32)
        ids[seedless] = np.arange(n + 1, n + 1 + len(seedless), dtype=np.int32)
        rest = ids[comp]
        labels = np.where(rest > 0, rest, labels)
        n += len(seedless)
        yield (n_comp, n_comp)
    del comp
    if n == 0:
        return labels
    # drop small objects and relabel consecutively
    area = np.bincount(labels.ravel(), minlength=n + 1)
    yield (n_comp, n_comp)
    keep = area >= max(min_area, 1)
    keep[0] = False
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[labels]


def instances_from_maps(
    prob: np.ndarray,
    dist: np.ndarray,
    prob_thresh: float,
    seed_thresh: float,
    min_area: float,
    seed_h: float = 0.0,
) -> np.ndarray:
    """:func:`instances_from_maps_iter` run to the end."""
    return run_to_end(instances_from_maps_iter(prob, dist, prob_thresh, seed_thresh, min_area, seed_h))


class UNetModel(BatchNormFolding, SegmentationModel):
    """U-Net predicting (foreground logit, normalised distance logit)."""

    family: ClassVar[str] = "unet"
    architecture_keys: ClassVar[frozenset[str]] = frozenset({"widths", "convs_per_block", "stem", "full_width"})
    finetune_lr: ClassVar[float] = 1e-3
    supports_distillation: ClassVar[bool] = True
    threshold_specs: ClassVar[dict[str, ThresholdSpec]] = {
        "prob_thresh": ThresholdSpec(
            0.5, 0.0, 1.0, 0.05, "foreground probability where objects end: raise it for tighter "
            "objects and fewer false ones, lower it for fuller objects and faint ones", (0.4, 0.5, 0.6)),
        "seed_thresh": ThresholdSpec(
            0.4, 0.0, 1.0, 0.05, "lowest normalised distance to the border where an object's seed may "
            "lie: raise it to merge less readily split objects, lower it to find small ones", (0.3, 0.5)),
        "seed_h": ThresholdSpec(
            0.1, 0.0, 1.0, 0.01, "how far a seed must stand above its surroundings: raise it if objects "
            "are split in pieces, lower it if touching objects are merged (0: no h-maxima)",
            (0.05, 0.1, 0.15, 0.2)),
        "min_area": ThresholdSpec(
            8.0, 0.0, 1e6, 1.0, "smallest object kept, in pixels: raise it to drop specks and fragments",
            (5.0, 15.0)),
    }

    @classmethod
    def build_network(cls, config: ModelConfig) -> nn.Module:
        arch = dict(config.architecture)
        return UNet(
            in_channels=config.input_channels,
            out_channels=2,
            widths=tuple(arch.get("widths", (16, 32, 64, 128))),
            convs_per_block=int(arch.get("convs_per_block", 2)),
            stem=int(arch.get("stem", 0)),
            full=int(arch.get("full_width", 0)),
        )

    def forward_tiles(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._inference_network()(batch).float())

    def forward_tiles_iter(self, batch: torch.Tensor) -> Generator[None, None, torch.Tensor]:
        net = self._inference_network()
        if not isinstance(net, UNet):  # another network (tests): one step
            return self.forward_tiles(batch)
        features = yield from features_iter(net, batch)
        return torch.sigmoid(net.head(features).float())

    def dihedral_channels(self, orientation: Orientation) -> list[int]:
        """Foreground and distance to the border turn with the image: channels stay."""
        return [0, 1]

    def postprocess_iter(
        self, maps: np.ndarray, thresholds: dict[str, float], shape: tuple[int, int] | None = None
    ) -> Generator[Step, None, Prediction]:
        prob, dist = maps[0], maps[1]
        labels = yield from instances_from_maps_iter(
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
        parts = {"bce": bce.detach().item(), "dice": dice.detach().item(), "dist": dist_err.detach().item()}
        if TEACHER_KEY in targets:
            # a teacher's maps: its foreground as a soft target, its distance where it or the
            # labels see foreground
            teacher = targets[TEACHER_KEY].float()
            fg_s, dist_s = teacher[:, :1], teacher[:, 1:2]
            kd_bce = (F.binary_cross_entropy_with_logits(fg_logit, fg_s, reduction="none") * valid).sum() / n
            ws = valid * (0.2 + torch.maximum(fg_t, fg_s))
            kd_dist = ((torch.sigmoid(dist_logit) - dist_s) ** 2 * ws).sum() / ws.sum().clamp_min(1.0)
            total = total + float(self.config.loss.get("distill_weight", 1.0)) * (kd_bce + 4.0 * kd_dist)
            parts.update({"kd_bce": kd_bce.detach().item(), "kd_dist": kd_dist.detach().item()})
        return total, parts
