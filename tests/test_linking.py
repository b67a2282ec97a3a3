"""Linking a stack's objects across planes by overlap (seglab.linking)."""

import numpy as np
import pytest

from seglab.errors import SeglabError
from seglab.inference.engine import Segmentation
from seglab.linking import link_planes, link_segmentation, one_row_per_object, relabel_table, z_axis
from seglab.objects import concat_tables, object_table


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _engine_like(planes):
    """Planes with ids 1..n each, offset so that ids are unique over the stack (as the engine gives)."""
    out, offset = [], 0
    for p in planes:
        q = np.where(p > 0, p + offset, 0)
        offset = max(offset, int(q.max()))
        out.append(q)
    return np.stack(out)


def moving_discs(n_planes=6, shape=(64, 80)):
    """Three discs drifting 2 px per plane (one of them shrinking), ids renumbered per plane in a
    different order each time."""
    planes = []
    for k in range(n_planes):
        lab = np.zeros(shape, dtype=np.int32)
        discs = [(15 + 2 * k, 15, 8), (40, 20 + 2 * k, 9), (30, 60 - 2 * k, 10 - k // 2)]
        order = np.roll(np.arange(3), k)  # the per-plane id of each disc changes from plane to plane
        for d, (cy, cx, r) in zip(order, discs):
            lab[_disc(shape, cy, cx, r)] = d + 1
        planes.append(lab)
    return planes


def test_moving_discs_keep_one_id_through_the_stack():
    planes = moving_discs()
    for stack in (_engine_like(planes), np.stack(planes)):  # unique ids, or ids repeating per plane
        linked = link_planes(stack, min_iou=0.3).labels
        assert set(np.unique(linked)) == {0, 1, 2, 3}
        for k in range(1, len(planes)):  # the same disc (same pixels' owner) keeps its id
            a, b = linked[k - 1], linked[k]
            both = (a > 0) & (b > 0)
            assert np.array_equal(a[both], b[both])
        assert np.array_equal(linked > 0, stack > 0)


def test_gap_and_low_overlap_start_new_ids():
    shape = (40, 40)
    planes = [np.zeros(shape, np.int32) for _ in range(4)]
    planes[0][_disc(shape, 20, 20, 6)] = 1
    planes[1][_disc(shape, 20, 20, 6)] = 1
    planes[3][_disc(shape, 20, 20, 6)] = 1  # back after a plane without it
    linked = link_planes(np.stack(planes)).labels
    assert [int(p.max()) for p in linked] == [1, 1, 0, 2]
    shifted = [np.zeros(shape, np.int32) for _ in range(2)]
    shifted[0][_disc(shape, 20, 14, 6)] = 1
    shifted[1][_disc(shape, 20, 22, 6)] = 1  # IoU about 0.16
    assert [int(p.max()) for p in link_planes(np.stack(shifted), min_iou=0.3).labels] == [1, 2]
    assert [int(p.max()) for p in link_planes(np.stack(shifted), min_iou=0.1).labels] == [1, 1]


def test_split_and_merge_rule():
    shape = (30, 60)
    whole = np.zeros(shape, np.int32)
    whole[10:20, 10:50] = 1
    halves = np.zeros(shape, np.int32)
    halves[10:20, 10:33] = 1  # the larger half: IoU 230/400
    halves[10:20, 34:50] = 2  # IoU 160/400
    split = link_planes(np.stack([whole, halves]), min_iou=0.3).labels
    assert split[1, 15, 20] == 1 and split[1, 15, 40] == 2  # the better match keeps the id
    merge = link_planes(np.stack([halves, whole]), min_iou=0.3).labels
    assert merge[0, 15, 20] == 1 and merge[0, 15, 40] == 2
    assert set(np.unique(merge[1])) == {0, 1}  # the merged object continues the better-matching id


def test_other_stack_axes_are_linked_separately():
    planes = moving_discs(3)
    tz = np.stack([_engine_like(planes), _engine_like(planes[::-1])])  # (T, Z, Y, X)
    tz[1][tz[1] > 0] += 100
    link = link_planes(tz, axis=1)
    assert set(np.unique(link.labels[0])) == {0, 1, 2, 3} and set(np.unique(link.labels[1])) == {0, 4, 5, 6}
    # the flat plane index of each object-plane row follows the (T, Z) layout
    assert sorted(set(link.plane.tolist())) == list(range(6))
    assert all(np.any(link.labels.reshape(6, *tz.shape[2:])[p] == n) for p, n in zip(link.plane, link.new))


def test_link_segmentation_keeps_table_and_outlines_consistent():
    planes = moving_discs(4)
    labels = _engine_like(planes)
    tables = [object_table(p) for p in labels]
    for t in tables:
        t["score"] = t["label"] / 100.0
    table = concat_tables(tables, {"plane": list(range(4))})
    extras = [{"shapes": {"type": "polygon", "data": [np.zeros((3, 2))] * 3, "label": t["label"]}} for t in tables]
    seg = link_segmentation(Segmentation(labels, table, extras=extras))
    assert set(np.unique(seg.labels)) == {0, 1, 2, 3} and seg.n_objects == 3  # objects, not object-planes
    t = seg.table
    assert list(t["plane"]) == list(table["plane"]) and np.array_equal(t["score"], table["score"])
    for lab, plane, area in zip(t["label"], t["plane"], t["area"]):  # each row still describes its object
        assert np.count_nonzero(seg.labels[plane] == lab) == area
    for p, extra in enumerate(seg.extras):
        rows = t["plane"] == p
        assert list(extra["shapes"]["label"]) == list(t["label"][rows])
    merged = one_row_per_object(t)  # napari's layer features: one row per object
    assert list(merged["label"]) == [1, 2, 3] and list(merged["n_planes"]) == [4, 4, 4]
    for lab, area, cy in zip(merged["label"], merged["area"], merged["centroid_y"]):
        zs, ys, _ = np.nonzero(seg.labels == lab)
        assert area == zs.size and cy == pytest.approx(ys.mean())
    # a table without planes works when ids were unique over the stack
    flat = relabel_table({"label": table["label"]}, link_planes(labels))
    assert np.array_equal(flat["label"], t["label"])


def test_more_than_65535_objects_get_unique_uint32_ids():
    """Two planes of 40,000 objects: linked, 40,000 ids; shifted so nothing overlaps, 80,000 ids."""
    n = 200
    plane = np.zeros((3 * n, 3 * n), dtype=np.uint16)
    plane[np.ix_(np.arange(n) * 3, np.arange(n) * 3)] = np.arange(1, n * n + 1, dtype=np.uint16).reshape(n, n)
    same = link_planes(np.stack([plane, plane]))
    assert int(same.labels.max()) == n * n and np.array_equal(same.labels[0], same.labels[1])
    moved = np.stack([plane, np.roll(plane, 1, axis=1)])  # no overlaps: every object-plane is new
    linked = link_planes(moved).labels
    assert int(linked.max()) == 2 * n * n > 65535
    assert linked.dtype.itemsize >= 4 and np.iinfo(linked.dtype).max >= 2 * n * n  # not squeezed into uint16
    assert not set(np.unique(linked[0])[1:]) & set(np.unique(linked[1])[1:])
    from seglab.io import labels_dtype

    assert labels_dtype(linked) is np.uint32


def test_z_axis_and_bad_inputs():
    assert z_axis("TZ") == 1 and z_axis("Z") == 0 and z_axis("Q") == 0
    assert z_axis("T") is None and z_axis("") is None and z_axis("TQ") == 1 and z_axis("QQ") == 1
    stack = np.zeros((2, 5, 5), np.int32)
    with pytest.raises(SeglabError, match="stack of planes"):
        link_planes(stack[0])
    with pytest.raises(SeglabError, match="IoU"):
        link_planes(stack, min_iou=0)
    with pytest.raises(SeglabError, match="IoU"):
        link_planes(stack, min_iou=1.5)
    with pytest.raises(SeglabError, match="stack axis"):
        link_planes(stack, axis=-1)
    with pytest.raises(SeglabError, match="integers"):
        link_planes(stack.astype(float))


def test_segment_link_z_end_to_end(tmp_path, monkeypatch, capsys):
    """``seglab segment --link-z`` on a Z stack of moving discs: one id per disc through the stack,
    in the label TIFF, the object table and the GeoJSON alike."""
    import csv
    import json

    import tifffile

    from flows_helpers import FlowsModel
    from seglab.cli import main
    from seglab.models import families
    from seglab.models.storage import new_model, save_model

    monkeypatch.setitem(families.FAMILIES, FlowsModel.family, "flows_helpers:FlowsModel")
    model_dir = save_model(new_model("test-flows", "flows", tile_context=8), tmp_path / "flows")
    stack = np.stack([(p > 0) * 200 + 20 for p in moving_discs(5)]).astype(np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "out"
    args = ["segment", "-m", str(model_dir), "-o", str(out), str(tmp_path / "z.tif"), "--device", "cpu",
            "--diameter", "none", "-q"]
    assert main(args + ["--link-z", "--geojson"]) == 0
    labels = tifffile.imread(out / "z_labels.tif")
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    with open(out / "z_objects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15 and sorted({r["label"] for r in rows}) == ["1", "2", "3"]
    for r in rows:
        assert np.count_nonzero(labels[int(r["plane"])] == int(r["label"])) == int(r["area"])
    feats = json.loads((out / "z_objects.geojson").read_text())["features"]
    assert sorted((f["properties"]["plane"], f["properties"]["label"]) for f in feats) == sorted(
        (int(r["plane"]), int(r["label"])) for r in rows)
    # without --link-z: ids unique per plane (15); a bad --link-iou is refused before any work
    assert main(args + ["--overwrite"]) == 0
    assert len(np.unique(tifffile.imread(out / "z_labels.tif"))) == 16
    assert main(args + ["--overwrite", "--link-z", "--link-iou", "0"]) == 2
    assert "--link-iou must be in (0, 1]" in capsys.readouterr().err


def test_link_stack_picks_z_and_leaves_other_images_alone():
    from seglab.errors import SeglabWarning
    from seglab.linking import link_stack

    planes = moving_discs(3)
    labels = _engine_like(planes)
    seg = Segmentation(labels, concat_tables([object_table(p) for p in labels], {"plane": [0, 1, 2]}))
    assert link_stack(seg, "ZYX").n_objects == 3
    assert link_stack(seg, "ZCYX").n_objects == 3  # channels are not planes
    with pytest.warns(SeglabWarning, match="no Z axis"):
        assert link_stack(seg, "TYX") is seg
    flat = Segmentation(labels[0], object_table(labels[0]))
    assert link_stack(flat, "YX") is flat
