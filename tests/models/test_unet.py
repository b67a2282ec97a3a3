import numpy as np
import torch

from seglab.models.unet import instances_from_maps
from seglab.models.unet_net import UNet


def test_unet_shapes_and_skips():
    net = UNet(3, 2, (4, 8, 16), 1)
    assert net.divisor == 4
    assert net(torch.zeros(2, 3, 32, 48)).shape == (2, 2, 32, 48)


def test_watershed_splits_touching_objects_by_seeds():
    prob = np.zeros((20, 40), np.float32)
    prob[5:15, 5:35] = 1.0  # one foreground blob ...
    dist = np.zeros_like(prob)
    dist[8:12, 8:14] = 1.0  # ... with two seeds
    dist[8:12, 26:32] = 1.0
    lab = instances_from_maps(prob, dist, 0.5, 0.5, 1)
    assert lab.max() == 2
    assert (lab[5:15, 5:35] > 0).all()


def test_seedless_components_kept_and_small_ones_dropped():
    prob = np.zeros((20, 20), np.float32)
    prob[2:8, 2:8] = 1  # no seed, 36 px: kept
    prob[15:17, 15:17] = 1  # 4 px: dropped
    lab = instances_from_maps(prob, np.zeros_like(prob), 0.5, 0.5, 10)
    assert lab.max() == 1 and (lab[2:8, 2:8] == 1).all() and lab[15, 15] == 0
