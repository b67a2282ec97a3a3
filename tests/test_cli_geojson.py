"""``seglab segment --geojson`` end to end: the file QuPath imports, read back with json + shapely."""

import json

import numpy as np
import pytest
import tifffile
from shapely.geometry import shape

from seglab.cli import main
from seglab.models import families
from tests_helpers import blob_image


@pytest.fixture
def flows_dir(tmp_path, monkeypatch):
    """A model whose objects are the bright regions (no training): known outlines."""
    from flows_helpers import FlowsModel
    from seglab.models.storage import new_model, save_model

    monkeypatch.setitem(families.FAMILIES, FlowsModel.family, "flows_helpers:FlowsModel")
    return save_model(new_model("test-flows", "flows", tile_context=8), tmp_path / "flows")


def _read(path):
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    return data["features"]


def test_segment_geojson_from_labels(tmp_path, flows_dir):
    img, _ = blob_image((80, 96), n=6, seed=3)
    img[30:50, 30:50] = 220  # an object with a hole
    img[38:42, 38:42] = 20
    tifffile.imwrite(tmp_path / "a.tif", img)
    out = tmp_path / "out"
    assert main(["segment", "-m", str(flows_dir), "-o", str(out), str(tmp_path / "a.tif"), "--device", "cpu",
                 "--diameter", "none", "--geojson", "-q"]) == 0
    labels = tifffile.imread(out / "a_labels.tif")
    feats = _read(out / "a_objects.geojson")
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert sorted(f["properties"]["label"] for f in feats) == ids.tolist() and len(ids) >= 6
    holes = 0
    for f in feats:
        g = shape(f["geometry"])
        n = counts[ids.tolist().index(f["properties"]["label"])]
        assert g.is_valid and g.area == n == f["properties"]["measurements"]["area"]
        assert f["properties"]["objectType"] == "detection" and "score" in f["properties"]
        holes += sum(len(p.interiors) for p in getattr(g, "geoms", [g]))
    assert holes == 1
    # like the other outputs: kept unless --overwrite
    (out / "a_labels.tif").unlink()
    assert main(["segment", "-m", str(flows_dir), "-o", str(out), str(tmp_path / "a.tif"), "--geojson", "-q"]) == 2


def test_segment_geojson_stack_planes(tmp_path, flows_dir):
    img, _ = blob_image((64, 64), n=4, seed=1)
    tifffile.imwrite(tmp_path / "s.tif", np.stack([img, img[::-1], np.zeros_like(img)]), metadata={"axes": "ZYX"},
                     photometric="minisblack")
    out = tmp_path / "out"
    assert main(["segment", "-m", str(flows_dir), "-o", str(out), str(tmp_path / "s.tif"), "--device", "cpu",
                 "--diameter", "none", "--geojson", "-q"]) == 0
    labels = tifffile.imread(out / "s_labels.tif")
    feats = _read(out / "s_objects.geojson")
    assert len(feats) == len(np.unique(labels)) - 1 == 8
    for f in feats:
        z = f["properties"]["plane"]
        assert f["geometry"]["plane"] == {"c": -1, "z": z, "t": 0}
        assert np.any(labels[z] == f["properties"]["label"])


def test_segment_geojson_polygons_of_a_stardist_model(tmp_path, tiny_star_dir):
    img, _ = blob_image((70, 90), n=5, seed=0)
    tifffile.imwrite(tmp_path / "b.tif", img)
    out = tmp_path / "out"
    assert main(["segment", "-m", str(tiny_star_dir), "-o", str(out), str(tmp_path / "b.tif"), "--device", "cpu",
                 "--geojson", "-q"]) == 0
    labels = tifffile.imread(out / "b_labels.tif")
    feats = _read(out / "b_objects.geojson")
    assert len(feats) == len(np.unique(labels)) - 1 > 0
    for f in feats:  # the model's polygon, on the pixel-edge grid: it covers its object's pixels
        g = shape(f["geometry"])
        ys, xs = np.nonzero(labels == f["properties"]["label"])
        assert g.is_valid and g.geom_type == "Polygon"
        inside = g.buffer(1.0).contains(shape({"type": "MultiPoint", "coordinates": np.c_[xs + 0.5, ys + 0.5]}))
        assert inside


def test_segment_geojson_of_a_box_model_traces_masks_and_classifies(tmp_path):
    from maskrcnn_helpers import tiny_maskrcnn
    from seglab.models.storage import save_model

    model = tiny_maskrcnn()
    # untrained: keep every detection and its whole box, so there are objects to write
    model.config.thresholds = {**model.config.thresholds, "score_thresh": 0.0, "mask_thresh": 0.0}
    model_dir = save_model(model, tmp_path / "tiny-maskrcnn")
    img, _ = blob_image((70, 90), n=5, seed=0)
    tifffile.imwrite(tmp_path / "c.tif", img)
    out = tmp_path / "out"
    assert main(["segment", "-m", str(model_dir), "-o", str(out), str(tmp_path / "c.tif"), "--device", "cpu",
                 "--no-amp", "--geojson", "-q"]) == 0
    labels = tifffile.imread(out / "c_labels.tif")
    feats = _read(out / "c_objects.geojson")
    assert len(feats) == len(np.unique(labels)) - 1 > 0
    for f in feats:
        p = f["properties"]
        assert shape(f["geometry"]).area == np.count_nonzero(labels == p["label"])  # the mask, not the box
        assert p["classification"]["name"] == "Class 1"
        assert {"bbox_y0", "bbox_x1", "score", "area"} <= set(p["measurements"])


def test_geojson_carries_the_measurements_as_the_csv(tmp_path, flows_dir):
    """--geojson --measure: each feature's measurements are the object's row of the CSV."""
    import csv

    img, _ = blob_image((80, 96), n=6, seed=3)
    tifffile.imwrite(tmp_path / "a.tif", img, resolution=(2.0, 2.0), metadata={"unit": "um"}, imagej=True)
    out = tmp_path / "out"
    assert main(["segment", "-m", str(flows_dir), "-o", str(out), str(tmp_path / "a.tif"), "--device", "cpu",
                 "--diameter", "none", "--geojson", "--measure", "-q"]) == 0
    rows = {int(r["label"]): r for r in csv.DictReader(open(out / "a_measurements.csv"))}
    feats = _read(out / "a_objects.geojson")
    assert len(feats) == len(rows) >= 6
    for f in feats:
        m, row = f["properties"]["measurements"], rows[f["properties"]["label"]]
        for col in ("area", "perimeter", "solidity", "mean_intensity_ch0", "area_um2"):
            assert m[col] == pytest.approx(float(row[col]), rel=1e-5)
        assert m["area_um2"] == pytest.approx(m["area"] * 0.25)
