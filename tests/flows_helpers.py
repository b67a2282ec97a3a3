"""A fourth family for tests (Cellpose-style: a logit map with a threshold in logit units, far
outside [0, 1]), defined outside the package and registered only by the tests that use it."""

from __future__ import annotations

from collections.abc import Generator
from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage as ndi
from torch import nn
from torch.nn import functional as F

from seglab.models.base import ModelConfig, Prediction, SegmentationModel, Step, ThresholdSpec
from seglab.objects import object_table


class LogitNet(nn.Module):
    divisor = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1] = 12.0
            self.conv.bias.fill_(-6.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FlowsModel(SegmentationModel):
    """Objects: connected regions where the logit exceeds ``cell_logit``."""

    family: ClassVar[str] = "test-flows"
    threshold_specs: ClassVar[dict[str, ThresholdSpec]] = {
        "cell_logit": ThresholdSpec(0.0, -6.0, 6.0, 0.5, "logit where a cell ends: raise it for smaller cells",
                                    (-2.0, 0.0, 2.0)),
        "min_area": ThresholdSpec(4.0, 0.0, 1e6, 1.0, "smallest cell kept, in pixels", (4.0, 40.0)),
    }

    @classmethod
    def build_network(cls, config: ModelConfig) -> nn.Module:
        return LogitNet()

    def forward_tiles(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(batch).float()

    def postprocess_iter(self, maps, thresholds, shape=None) -> Generator[Step, None, Prediction]:
        fg = maps[0] > thresholds["cell_logit"]
        yield (0, 2)
        labels, n = ndi.label(fg)
        area = np.bincount(labels.ravel(), minlength=n + 1)
        small = area < thresholds["min_area"]
        small[0] = True
        labels[small[labels]] = 0
        labels, _ = ndi.label(labels > 0)
        yield (1, 2)
        return Prediction(labels.astype(np.int32), object_table(labels, maps[0]))

    def make_targets(self, labels):
        return {"fg": (labels > 0).astype(np.float32)}

    def loss(self, outputs, targets, valid):
        bce = F.binary_cross_entropy_with_logits(outputs[:, :1].float(), targets["fg"][:, None], weight=valid.float())
        return bce, {"bce": float(bce.detach())}
