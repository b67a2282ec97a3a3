"""GeoJSON export: read back with json + shapely (validity, areas = pixel counts, holes, properties)."""

import json

import numpy as np
import pytest
from shapely.geometry import Point, shape

from seglab.errors import SeglabError
from seglab.inference.engine import Segmentation
from seglab.io.geojson import (
    label_geometries,
    labels_features,
    outline_features,
    plane_position,
    segmentation_features,
    write_geojson,
)
from seglab.objects import object_table


def _check_exact(labels):
    """Every object's geometry is valid and covers exactly its pixels."""
    geoms = label_geometries(labels)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert sorted(geoms) == ids.tolist()
    for i, n in zip(ids.tolist(), counts.tolist()):
        g = shape(geoms[i])
        assert g.is_valid, (i, geoms[i])
        assert g.area == pytest.approx(n, abs=1e-9)
        ys, xs = np.nonzero(labels == i)  # every pixel centre inside, every other pixel centre outside
        assert all(g.contains(Point(x + 0.5, y + 0.5)) for y, x in zip(ys[:50], xs[:50]))
    return geoms


def test_square_follows_pixel_edges_counter_clockwise():
    lab = np.zeros((6, 7), dtype=np.uint16)
    lab[1:3, 2:5] = 4
    g = _check_exact(lab)[4]
    assert g["type"] == "Polygon" and len(g["coordinates"]) == 1
    ring = g["coordinates"][0]
    assert ring[0] == ring[-1]
    assert {tuple(p) for p in ring} == {(2, 1), (5, 1), (5, 3), (2, 3)}  # [x, y] corners only
    assert shape(g).exterior.is_ccw  # RFC 7946: exterior rings counter-clockwise


def test_holes_are_interior_rings():
    lab = np.zeros((12, 12), dtype=np.int32)
    lab[1:11, 1:11] = 1
    lab[3:5, 3:5] = 0  # a hole
    lab[6:9, 6:9] = 2  # an object inside a hole of object 1
    g = _check_exact(lab)
    p1 = shape(g[1])
    assert g[1]["type"] == "Polygon" and len(p1.interiors) == 2
    assert p1.area == 100 - 4 - 9
    assert not p1.interiors[0].is_ccw  # holes clockwise
    assert shape(g[2]).area == 9 and p1.intersection(shape(g[2])).area == 0


def test_pieces_and_corner_touching_cases_are_valid():
    lab = np.zeros((8, 8), dtype=np.int32)
    lab[1, 1] = lab[2, 2] = 1  # two pieces touching at a corner
    lab[5:7, 1:3] = 2
    lab[4, 5] = 2  # a separate piece
    g = _check_exact(lab)
    assert g[1]["type"] == "MultiPolygon" and len(g[1]["coordinates"]) == 2
    assert g[2]["type"] == "MultiPolygon"
    # a hole touching the outside (and another hole) only at a corner
    lab = np.zeros((7, 7), dtype=np.int32)
    lab[1:6, 1:6] = 3
    lab[1, 1] = lab[2, 2] = lab[3, 3] = 0
    _check_exact(lab)


def test_random_labels_exact_and_valid():
    rng = np.random.default_rng(0)
    for _ in range(150):  # noise with every kind of pinch, hole and neighbour
        lab = rng.integers(0, 4, (int(rng.integers(1, 14)), int(rng.integers(1, 14))))
        _check_exact(lab)
    for _ in range(20):
        lab = (rng.random((40, 40)) < 0.65) * rng.integers(1, 3, (40, 40))
        _check_exact(lab)


def test_labels_features_properties_and_measurements():
    lab = np.zeros((20, 20), dtype=np.int32)
    lab[2:6, 2:8] = 1
    lab[10:15, 10:13] = 7
    table = object_table(lab)
    table["score"] = np.array([0.9, np.nan])
    table["class"] = np.array([1, 2])
    feats = labels_features(lab, table=table)
    assert [f["properties"]["label"] for f in feats] == [1, 7]
    p = feats[0]["properties"]
    assert feats[0]["type"] == "Feature" and p["objectType"] == "detection" and p["name"] == "1"
    assert p["score"] == pytest.approx(0.9)
    assert p["measurements"]["area"] == 24 and p["measurements"]["centroid_x"] == pytest.approx(4.5)
    assert "label" not in p["measurements"] and "class" not in p["measurements"]
    assert p["classification"]["name"] == "Class 1" and len(p["classification"]["color"]) == 3
    q = feats[1]["properties"]
    assert "score" not in q and "score" not in q["measurements"]  # NaN is left out (not JSON)
    assert q["classification"]["name"] == "Class 2"
    named = labels_features(lab, table=table, class_names={2: "Tumor"}, object_type="annotation")
    assert named[1]["properties"]["classification"]["name"] == "Tumor"
    assert named[1]["properties"]["objectType"] == "annotation"
    with pytest.raises(SeglabError, match="objectType"):
        labels_features(lab, object_type="cell nucleus")


def test_stack_planes_as_properties_and_qupath_plane():
    lab = np.zeros((2, 3, 10, 10), dtype=np.int32)  # T, Z
    lab[1, 2, 1:4, 1:4] = 5
    table = {"label": np.array([5]), "plane": np.array([5]), "area": np.array([9])}
    (f,) = labels_features(lab, table=table, stack_axes="TZ")
    assert f["properties"]["plane"] == 5 and f["properties"]["measurements"]["area"] == 9
    assert f["geometry"]["plane"] == {"c": -1, "z": 2, "t": 1}
    # an object spanning planes: rows per plane (a linked table), or one row for all its planes
    lab[0, 1, 1:4, 1:4] = 5
    per_plane = {"label": np.array([5, 5]), "plane": np.array([1, 5]), "area": np.array([9, 8])}
    assert [f["properties"]["measurements"]["area"] for f in labels_features(lab, table=per_plane)] == [9, 8]
    one_row = {"label": np.array([5]), "plane": np.array([3]), "area": np.array([18])}
    assert [f["properties"]["measurements"]["area"] for f in labels_features(lab, table=one_row)] == [18, 18]
    assert plane_position(3, (4,), "T") == {"c": -1, "z": 0, "t": 3}
    assert plane_position(3, (4,), "Q") == {"c": -1, "z": 3, "t": 0}  # a lone undeclared axis: Z
    assert plane_position(5, (2, 3), "QQ") == {"c": -1, "z": 2, "t": 1}  # napari's order: T, Z


def test_outlines_move_to_pixel_edges():
    square = np.array([[0, 0], [0, 2], [2, 2], [2, 0]], dtype=float)  # napari (y, x), centres at integers
    feats = outline_features([square, square + [[5, 5]]], [3, 4], shape_type=["polygon", "rectangle"],
                             table={"label": np.array([3, 4]), "score": np.array([0.5, 0.25])})
    g = shape(feats[0]["geometry"])
    assert g.bounds == (0.5, 0.5, 2.5, 2.5) and g.exterior.is_ccw
    assert feats[1]["properties"]["score"] == 0.25 and shape(feats[1]["geometry"]).area == pytest.approx(4)
    with pytest.raises(SeglabError, match="ellipse"):
        outline_features([square], [1], shape_type="ellipse")


def test_segmentation_features_sources():
    lab = np.zeros((12, 12), dtype=np.int32)
    lab[2:6, 2:6] = 1
    tri = np.array([[2.0, 2.0], [2.0, 8.0], [8.0, 2.0]])
    seg = Segmentation(lab, object_table(lab), extras=[{"shapes": {"type": "polygon", "data": [tri], "label": [1]}}])
    (auto,) = segmentation_features(seg)
    assert shape(auto["geometry"]).area == pytest.approx(18)  # the model's polygon
    (traced,) = segmentation_features(seg, source="labels")
    assert shape(traced["geometry"]).area == 16
    boxes = Segmentation(lab, object_table(lab),
                         extras=[{"shapes": {"type": "rectangle", "data": [tri], "label": [1]}}])
    assert shape(segmentation_features(boxes)[0]["geometry"]).area == 16  # a box is not the object's shape
    assert shape(segmentation_features(boxes, source="outlines")[0]["geometry"]).area == pytest.approx(36)
    # a measurements table joins the result's own table: its columns added, the score kept
    (joined,) = segmentation_features(seg, source="labels", table={"label": np.array([1]),
                                                                  "mean_intensity": np.array([7.5])})
    assert joined["properties"]["measurements"]["mean_intensity"] == 7.5
    assert joined["properties"]["measurements"]["area"] == 16
    with pytest.raises(SeglabError, match="no outlines"):
        segmentation_features(Segmentation(lab, object_table(lab)), source="outlines")


def test_write_geojson_round_trip(tmp_path):
    lab = np.zeros((30, 30), dtype=np.int32)
    lab[5:10, 5:10] = 1
    lab[15:25, 15:25] = 2
    lab[18:20, 18:20] = 0
    table = object_table(lab)
    table["score"] = np.array([np.nan, 0.75])
    path = write_geojson(tmp_path / "x_objects.geojson", labels_features(lab, table=table))
    text = path.read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 2
    for f, n in zip(data["features"], (25, 96)):
        g = shape(f["geometry"])
        assert g.is_valid and g.area == n == f["properties"]["measurements"]["area"]
    assert len(shape(data["features"][1]["geometry"]).interiors) == 1
    assert json.loads(write_geojson(tmp_path / "empty.geojson", []).read_text()) == {
        "type": "FeatureCollection", "features": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.geojson", "x_objects.geojson"]  # no temp files


def test_bad_labels_refused():
    with pytest.raises(SeglabError, match="integers"):
        label_geometries(np.zeros((3, 3), dtype=float))
    with pytest.raises(SeglabError, match="negative"):
        label_geometries(-np.ones((3, 3), dtype=np.int32))
    with pytest.raises(SeglabError, match="2D"):
        label_geometries(np.zeros((2, 3, 3), dtype=np.int32))


def test_join_tables_by_label_and_plane():
    from seglab.io.geojson import join_tables

    base = {"label": np.array([1, 1, 2]), "plane": np.array([0, 1, 1]), "score": np.array([0.5, 0.6, 0.7])}
    extra = {"label": np.array([1, 2]), "plane": np.array([1, 1]), "area_um2": np.array([3, 4]),
             "name": np.array(["a", "b"])}
    out = join_tables(base, extra)
    assert np.isnan(out["area_um2"][0]) and list(out["area_um2"][1:]) == [3, 4]
    assert "name" not in out and list(out["score"]) == [0.5, 0.6, 0.7]
    whole = join_tables({"label": np.array([2, 1])}, {"label": np.array([1, 2]), "n": np.array([10, 20])})
    assert list(whole["n"]) == [20, 10] and whole["n"].dtype.kind == "i"
    with pytest.raises(SeglabError, match="label column"):
        join_tables(base, {"area": np.array([1])})
