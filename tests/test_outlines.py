import numpy as np
import pytest

from seglab.inference.engine import segment
from seglab.models.storage import new_model
from seglab.outlines import collect_outlines
from tests_helpers import blob_image

TINY = {"widths": [4, 8, 16], "convs_per_block": 1, "n_rays": 8, "grid": 2, "head_width": 8}


@pytest.fixture
def star():
    import torch

    torch.manual_seed(1)
    return new_model("stardist", "tiny-star", architecture=dict(TINY), tile_context=16)


def test_outlines_of_a_stack_carry_plane_coordinates_and_unique_labels(star):
    img, _ = blob_image((64, 64), n=4, seed=2)
    stack = np.stack([img, img[::-1]])
    seg = segment(star, stack, device="cpu", amp=False, thresholds={"prob_thresh": 0.5})
    out = collect_outlines(seg)
    assert out is not None and len(out) == seg.n_objects > 0
    assert out.shape_type == "polygon"
    assert len(np.unique(out.label)) == len(out.label)
    assert set(out.label) == set(seg.table["label"])
    for verts, plane, lab in zip(out.data, out.plane, out.label):
        assert verts.shape == (8, 3) and np.all(verts[:, 0] == plane)
        # the outline's label is the object it belongs to in that plane
        assert lab in np.unique(seg.labels[plane])
    # features come from the object table, row by row
    row = {int(v): i for i, v in enumerate(seg.table["label"])}
    np.testing.assert_allclose(out.features["score"], seg.table["score"][[row[int(v)] for v in out.label]])


def test_models_without_outlines_give_none(tiny_model):
    img, _ = blob_image((64, 64), n=4, seed=2)
    assert collect_outlines(segment(tiny_model, img, device="cpu")) is None
