"""StarDist-style family: object probability + radial distances, polygon NMS.

The network (a U-Net whose decoder stops at ``1 / grid`` of the input size, like
StarDist's ``grid=(2, 2)``) predicts per sampled pixel the probability of lying near an
object's centre (its normalised distance to the background) and ``n_rays`` distances to
the object's boundary. Candidates above ``prob_thresh`` become star-convex polygons;
greedy polygon NMS keeps the best; the kept polygons are painted into a label image,
the higher-scoring object winning where polygons overlap.

Maps are dense, so the shared engine stitches them from tile cores and the NMS runs on
the whole plane: every candidate comes from the tile whose core holds its centre, and
tiled and untiled results agree.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from seglab.inference.dihedral import Orientation, ray_channels
from seglab.models.base import TEACHER_KEY, ModelConfig, Prediction, SegmentationModel, Step, ThresholdSpec
from seglab.models.star_geometry import (
    fill_label_holes,
    polygon_coords,
    polygon_nms_iter,
    radial_distances,
    render_polygons_iter,
)
from seglab.models.targets import normalized_distance
from seglab.models.unet_net import BatchNormFolding, UNet, features_iter
from seglab.objects import object_table


def build_star_network(config: ModelConfig) -> UNet:
    """U-Net backbone at ``1 / grid`` resolution with a 3x3 feature layer and a
    ``1 + n_rays`` channel head (probability logit, distances in pixels)."""
    arch = config.architecture
    net = UNet(
        in_channels=config.input_channels,
        out_channels=1 + int(arch.get("n_rays", 32)),
        widths=tuple(arch.get("widths", (16, 32, 64, 128))),
        convs_per_block=int(arch.get("convs_per_block", 2)),
        out_stride=int(arch.get("grid", 2)),
        stem=int(arch.get("stem", 0)),
    )
    hidden = int(arch.get("head_width", 64))
    net.head = nn.Sequential(
        nn.Conv2d(net.out_features, hidden, 3, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, 1 + int(arch.get("n_rays", 32)), 1),
    )
    return net


#: candidates whose polygons are computed between two progress steps
COORD_CHUNK = 65536


def _scaled(gen: Generator[Step, None, np.ndarray], part: int) -> Generator[Step, None, np.ndarray]:
    """A sub-step's ``(done, total)`` as thousandths of part ``part`` of two."""
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        yield (part * 1000 + (1000 * done // total if total else 1000), 2000)


class StarDistModel(BatchNormFolding, SegmentationModel):
    """Star-convex polygons from probability + radial distance maps."""

    family: ClassVar[str] = "stardist"
    architecture_keys: ClassVar[frozenset[str]] = frozenset({"widths", "convs_per_block", "n_rays", "grid", "head_width",
                                                                "stem"})
    shape_type: ClassVar[str | None] = "polygon"
    maps_channel_last: ClassVar[bool] = True  # 1 + n_rays maps, read per candidate pixel
    threshold_specs: ClassVar[dict[str, ThresholdSpec]] = {
        "prob_thresh": ThresholdSpec(
            0.5, 0.0, 1.0, 0.05, "object probability a candidate centre needs: raise it to drop doubtful "
            "objects, lower it to find faint ones", (0.3, 0.4, 0.5, 0.6, 0.7)),
        "nms_thresh": ThresholdSpec(
            0.4, 0.0, 1.0, 0.05, "overlap (of the smaller polygon) above which the weaker of two polygons "
            "is dropped: lower it if objects are doubled, raise it if touching objects go missing",
            (0.2, 0.3, 0.4, 0.5)),
    }
    #: extra label context around each training patch, so that radial distances of objects
    #: cut by the patch border are measured on the whole object
    target_margin: ClassVar[int] = 32
    supports_distillation: ClassVar[bool] = True

    @classmethod
    def build_network(cls, config: ModelConfig) -> nn.Module:
        return build_star_network(config)

    @property
    def output_stride(self) -> int:
        return int(self.config.architecture.get("grid", 2))

    @property
    def n_rays(self) -> int:
        return int(self.config.architecture.get("n_rays", 32))

    def forward_tiles(self, batch: torch.Tensor) -> torch.Tensor:
        out = self._inference_network()(batch).float()
        return self._activate(out)

    def forward_tiles_iter(self, batch: torch.Tensor) -> Generator[None, None, torch.Tensor]:
        """The head's maps as computed (bfloat16 under CPU autocast), not activated: the dense path
        converts the tiles' cores into the plane's float32 maps, then :meth:`activate_maps`."""
        net = self._inference_network()
        if not isinstance(net, UNet):  # another network (tests): one step
            return net(batch)
        features = yield from features_iter(net, batch)
        return net.head(features)

    def activate_maps(self, maps: torch.Tensor) -> None:
        self._activate(maps[None])

    @staticmethod
    def _activate(out: torch.Tensor) -> torch.Tensor:
        """Probability (sigmoid) and distances (at least 0) in place, in the tensor's memory layout."""
        out[:, :1].sigmoid_()
        out[:, 1:].clamp_min_(0.0)
        return out

    def dihedral_channels(self, orientation: Orientation) -> list[int]:
        """The probability stays; the rays trade places as the tile turns."""
        return ray_channels(self.n_rays, orientation)

    def candidates(self, maps: np.ndarray, prob_thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres ``(N, 2)`` in plane pixels, scores and distances ``(N, n_rays)`` above the threshold."""
        prob = maps[0]
        ys, xs = np.nonzero(prob > prob_thresh)
        g = self.output_stride
        points = np.stack([ys * g, xs * g], axis=1).astype(np.float64)
        per_pixel = np.moveaxis(maps, 0, -1)  # (h, w, K): each candidate's rays in a row when stored so
        return points, prob[ys, xs], np.maximum(per_pixel[ys, xs, 1:], 0.5)

    def postprocess_iter(
        self, maps: np.ndarray, thresholds: dict[str, float], shape: tuple[int, int] | None = None
    ) -> Generator[Step, None, Prediction]:
        """Candidates, polygon NMS, painting; yields ``(done, total)`` per chunk of candidates
        and of polygons (two halves of the steps)."""
        g = self.output_stride
        if shape is None:
            shape = (maps.shape[1] * g, maps.shape[2] * g)
        points, scores, dists = self.candidates(maps, thresholds["prob_thresh"])
        yield (0, 2000)
        coords = np.empty((len(points), dists.shape[1], 2), dtype=np.float64)
        for i in range(0, len(points), COORD_CHUNK):
            polygon_coords(points[i : i + COORD_CHUNK], dists[i : i + COORD_CHUNK], out=coords[i : i + COORD_CHUNK])
            yield (0, 2000)
        nms = polygon_nms_iter(coords, scores, thresholds["nms_thresh"], points, dists)
        keep = yield from _scaled(nms, 0)
        del points, dists
        coords, scores = coords[keep], scores[keep]
        labels = yield from _scaled(render_polygons_iter(coords, shape), 1)
        # drop objects painted over entirely, relabel 1..n in score order
        present = np.bincount(labels.ravel(), minlength=len(keep) + 1) > 0
        present[0] = False
        remap = np.zeros(len(keep) + 1, dtype=np.int32)
        remap[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
        labels = remap[labels]
        kept = np.flatnonzero(present[1:])
        score_by_id = np.concatenate([[np.nan], scores[kept]])
        shapes = {
            "type": "polygon",
            "data": [c.astype(np.float32) for c in coords[kept]],
            "label": np.arange(1, len(kept) + 1, dtype=np.int64),
        }
        return Prediction(labels=labels, table=object_table(labels, score_by_id), extras={"shapes": shapes})

    # ---- training -----------------------------------------------------
    def make_targets(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        g = self.output_stride
        labels = fill_label_holes(np.asarray(labels))
        return {
            "prob": np.ascontiguousarray(normalized_distance(labels)[::g, ::g]),
            "dist": radial_distances(labels, self.n_rays, g),
        }

    def loss(
        self,
        outputs: torch.Tensor,
        targets: dict[str, torch.Tensor],
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        g = self.output_stride
        valid = valid[:, :, ::g, ::g].float()
        prob_t = targets["prob"].unsqueeze(1)
        dist_t = targets["dist"]
        logit, dist = outputs[:, :1].float(), outputs[:, 1:].float()
        n = valid.sum().clamp_min(1.0)
        bce = (F.binary_cross_entropy_with_logits(logit, prob_t, reduction="none") * valid).sum() / n
        # distances count where the target probability is high (near centres), as in StarDist
        w = prob_t * valid
        l1 = ((dist - dist_t).abs().mean(dim=1, keepdim=True) * w).sum() / w.sum().clamp_min(1e-6)
        dist_weight = float(self.config.loss.get("dist_weight", 0.2))
        total = bce + dist_weight * l1
        parts = {"bce": bce.detach().item(), "dist_l1": l1.detach().item()}
        if TEACHER_KEY in targets:
            # a teacher's maps: its probability as a soft target everywhere, its distances where
            # it (or the labels) sees a centre
            teacher = targets[TEACHER_KEY].float()
            prob_s, dist_s = teacher[:, :1], teacher[:, 1:]
            kd_bce = (F.binary_cross_entropy_with_logits(logit, prob_s, reduction="none") * valid).sum() / n
            ws = torch.maximum(prob_s, prob_t) * valid
            kd_l1 = ((dist - dist_s).abs().mean(dim=1, keepdim=True) * ws).sum() / ws.sum().clamp_min(1e-6)
            total = total + float(self.config.loss.get("distill_weight", 1.0)) * (kd_bce + dist_weight * kd_l1)
            parts.update({"kd_bce": kd_bce.detach().item(), "kd_l1": kd_l1.detach().item()})
        return total, parts
