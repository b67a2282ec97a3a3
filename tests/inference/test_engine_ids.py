"""Object ids at scale (issue 13): more than 65,535 objects in one image and over a stack's planes,
kept by the in-memory engine and by label TIFFs (uint32)."""

import numpy as np
import pytest
import tifffile

from seglab.inference.engine import segment
from seglab.io import labels_dtype, read_labels, write_labels
from seglab.models import families


@pytest.fixture
def flows(monkeypatch):
    """Objects = connected bright regions (no training, fast postprocessing)."""
    from flows_helpers import FlowsModel
    from seglab.models.storage import new_model

    monkeypatch.setitem(families.FAMILIES, FlowsModel.family, "flows_helpers:FlowsModel")
    return new_model("test-flows", "flows", tile_context=8)


def dots(n: int, shift: int = 0) -> np.ndarray:
    """An image of n x n bright 2x2 squares on a 5 px pitch (on a 3 px pitch such a pattern has no
    structure at the scale of 2x2 blocks, and the engine takes it for white noise: an empty view)."""
    img = np.full((5 * n, 5 * n), 10, dtype=np.uint8)
    for dy in range(2):
        for dx in range(2):
            img[dy::5, (dx + shift) % 5::5] = 220
    return img


def test_more_than_65535_objects_in_one_image(flows, tmp_path):
    n = 266  # 70,756 objects
    res = segment(flows, dots(n), device="cpu", amp=False, diameter=None, tile_size=512)
    assert res.n_objects == n * n > 65535
    ids = np.unique(res.labels)[1:]
    assert ids.size == n * n and ids.max() == n * n  # every object its own id, none wrapped round
    assert np.iinfo(res.labels.dtype).max >= n * n
    assert np.array_equal(np.sort(res.table["label"]), ids)
    assert labels_dtype(res.labels) is np.uint32
    path = write_labels(tmp_path / "many_labels.tif", res.labels)
    assert tifffile.imread(path).dtype == np.uint32
    assert np.array_equal(read_labels(path), res.labels)


def test_ids_unique_over_the_planes_of_a_stack_beyond_65535(flows, tmp_path):
    n = 200  # 40,000 objects per plane, 80,000 in the stack
    stack = np.stack([dots(n), dots(n, shift=1)])
    res = segment(flows, stack, axes="ZYX", device="cpu", amp=False, diameter=None)
    first, second = (set(np.unique(p).tolist()) - {0} for p in res.labels)
    assert len(first) == len(second) == n * n and not first & second
    assert max(second) == 2 * n * n > 65535
    t = res.table
    assert t["label"].size == 2 * n * n and np.unique(t["label"]).size == 2 * n * n
    assert set(t["label"][t["plane"] == 1].tolist()) == second
    path = write_labels(tmp_path / "stack_labels.tif", res.labels, axes="ZYX")
    back = tifffile.imread(path)
    assert back.dtype == np.uint32 and np.array_equal(back, res.labels)


def test_ids_past_int32_make_the_labels_int64_and_smaller_ones_stay_int32(flows, monkeypatch):
    """Labels are int32 while every id fits (no int64 copy of a large image); a stack whose ids
    pass 2**31 - 1 becomes int64 with every id kept."""
    import seglab.inference.engine as engine
    from seglab.models.base import Prediction

    big = 2**31 - 10

    def plane(model, x, th, factor, p=0, n_planes=1, **kw):
        lab = np.zeros(x.shape[-2:], np.int64)
        lab[0, 0], lab[1, 1] = 1, big
        return Prediction(labels=lab, table={"label": np.array([1, big], np.int64)})
        yield  # a generator, like the real one

    img = dots(4)
    assert segment(flows, img, device="cpu", amp=False, diameter=None).labels.dtype == np.int32
    monkeypatch.setattr(engine, "scaled_plane_iter", plane)
    one = segment(flows, img, device="cpu", amp=False, diameter=None)
    assert one.labels.dtype == np.int32 and one.labels.max() == big
    two = segment(flows, np.stack([img, img]), device="cpu", amp=False, diameter=None)
    assert two.labels.dtype == np.int64
    assert sorted(np.unique(two.labels)[1:].tolist()) == [1, big, big + 1, 2 * big]
    assert sorted(two.table["label"].tolist()) == [1, big, big + 1, 2 * big]
