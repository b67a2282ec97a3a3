"""napari: Labels and Shapes layers saved as GeoJSON (File > Save Selected Layer(s)), read back
with json + shapely."""

import json

import numpy as np
import pytest
from shapely.geometry import shape

napari = pytest.importorskip("napari")

from seglab.plugin.writer import write_labels_geojson, write_shapes_geojson  # noqa: E402


def _features(path):
    data = json.loads(open(path).read())
    assert data["type"] == "FeatureCollection"
    return data["features"]


def test_labels_layer_saved_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    lab = np.zeros((40, 50), np.int32)
    lab[5:25, 5:25] = 3
    lab[10:14, 10:14] = 0  # a hole
    lab[30:35, 30:45] = 70000
    layer = viewer.add_labels(lab, scale=(0.5, 0.5),
                              features={"index": [3, 70000], "score": [0.8, np.nan], "area": [384, 75],
                                        "note": ["a", "b"]})
    viewer.layers.selection = {layer}
    paths = viewer.layers.save(str(tmp_path / "seg.geojson"), selected=True, plugin="napari-seglab")
    assert paths == [str(tmp_path / "seg.geojson")]
    feats = {f["properties"]["label"]: f for f in _features(paths[0])}
    assert sorted(feats) == [3, 70000]
    g = shape(feats[3]["geometry"])
    assert g.is_valid and g.area == 384 and len(g.interiors) == 1  # pixels, not the layer's scale
    assert feats[3]["properties"]["score"] == pytest.approx(0.8)
    assert feats[3]["properties"]["measurements"] == {"score": pytest.approx(0.8), "area": 384}
    assert "score" not in feats[70000]["properties"] and shape(feats[70000]["geometry"]).area == 75


def test_labels_stack_planes(tmp_path):
    lab = np.zeros((3, 20, 20), np.int32)
    lab[2, 3:6, 3:6] = 9
    out = write_labels_geojson(str(tmp_path / "stack"), lab, {"axis_labels": ("z", "y", "x")})
    assert out == [str(tmp_path / "stack.geojson")]
    (f,) = _features(out[0])
    assert f["properties"]["plane"] == 2 and f["geometry"]["plane"] == {"c": -1, "z": 2, "t": 0}
    assert shape(f["geometry"]).area == 9


def test_shapes_layer_saved_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    square = np.array([[0, 0], [0, 4], [4, 4], [4, 0]], dtype=float)
    layer = viewer.add_shapes([square, square + 10, square + 20], shape_type=["polygon", "rectangle", "ellipse"],
                              features={"label": [5, 6, 7], "score": [0.5, 0.6, 0.7]})
    viewer.layers.selection = {layer}
    paths = viewer.layers.save(str(tmp_path / "outlines.geojson"), selected=True, plugin="napari-seglab")
    feats = _features(paths[0])
    assert [f["properties"]["label"] for f in feats] == [5, 6, 7]
    polygon, rect, ellipse = (shape(f["geometry"]) for f in feats)
    assert polygon.bounds == (0.5, 0.5, 4.5, 4.5) and polygon.area == 16  # napari centres -> pixel edges
    assert rect.area == 16 and rect.bounds == (10.5, 10.5, 14.5, 14.5)
    assert ellipse.area == pytest.approx(np.pi * 4, rel=0.01) and ellipse.is_valid
    assert feats[1]["properties"]["measurements"]["score"] == pytest.approx(0.6)


def test_shapes_planes_and_refusals(tmp_path):
    tri = np.array([[1, 2, 2], [1, 2, 8], [1, 8, 2]], dtype=float)  # plane 1 of a stack
    (f,) = _features(write_shapes_geojson(str(tmp_path / "a.geojson"), [tri], {"shape_type": ["polygon"]})[0])
    assert f["properties"]["plane"] == 1 and f["geometry"]["plane"]["z"] == 1
    assert f["properties"]["label"] == 1  # no features: 1..n
    with pytest.raises(ValueError, match="not line"):
        write_shapes_geojson(str(tmp_path / "b.geojson"), [tri[:2, 1:]], {"shape_type": ["line"]})
    assert not (tmp_path / "b.geojson").exists()
