"""Small models for the bioimage.io package tests."""

from __future__ import annotations

import numpy as np


def untrained_star(share: float = 0.01):
    """A tiny untrained StarDist-style model that finds objects in the default test image: its
    prob_thresh keeps the top ``share`` of the image's inner pixels (an untrained probability is near
    0.5 everywhere; the image border, where zero padding shifts it, is left out) and its distances
    are raised by 5 px (polygons of a few pixels)."""
    import torch

    from seglab.bmz.export import normalised, example_input
    from seglab.models.storage import new_model

    torch.manual_seed(0)
    model = new_model("stardist", "tiny-star", description="tiny untrained polygon model",
                      architecture={"widths": [4, 8, 16], "convs_per_block": 1, "n_rays": 16, "grid": 2,
                                    "head_width": 8}, tile_context=16)
    with torch.no_grad():
        model.network.head[-1].bias[1:] += 5.0
    x = normalised(model, example_input(model))
    with torch.no_grad():
        prob = model.forward_tiles(torch.from_numpy(x)[None])[0, 0].numpy()
    model.config.thresholds["prob_thresh"] = float(np.quantile(prob[16:-16, 16:-16], 1.0 - share))
    return model
