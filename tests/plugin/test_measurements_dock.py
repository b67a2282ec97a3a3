"""Measurements in napari: the labels layer's features after Segment, the table dock (click a row:
select, plane, centre; sorting), Measure again after edits, Save measurements (CSV)."""

import csv

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from seglab.measure import measure  # noqa: E402
from seglab.plugin import measurements_dock as md  # noqa: E402
from seglab.plugin import segment_widget as sw  # noqa: E402
from seglab.plugin.object_table import (  # noqa: E402
    keep_table_fresh,
    layer_calibration,
    measured_features,
)


def _objects():
    lab = np.zeros((60, 80), np.int32)
    lab[5:15, 5:25] = 1  # 200 px
    lab[30:50, 40:45] = 2  # 100 px
    lab[52:58, 60:78] = 3  # 108 px
    image = np.zeros((60, 80, 2), np.uint16)
    image[..., 0] = 100
    image[30:50, 40:45, 0] = 900
    image[..., 1] = np.arange(80, dtype=np.uint16)[None, :]
    return lab, image


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = md.MeasurementsDock(viewer)
    viewer.window.add_dock_widget(widget, name="Measurements")
    return viewer, widget


def test_layer_calibration_from_scale_and_units():
    assert layer_calibration({"scale": np.array([2.0, 0.5, 0.25]), "units": ("um", "micron", "micrometer")}) == {
        "pixel_size": (0.5, 0.25), "unit": "µm"}
    assert layer_calibration({"scale": np.array([1.0, 1.0]), "units": ("pixel", "pixel")}) == {}
    assert layer_calibration({"scale": np.array([1.0, 1.0])}) == {}


def test_measured_features_keep_scores_and_one_row_per_id():
    lab, image = _objects()
    old = {"index": np.array([1, 2, 3]), "score": np.array([0.9, 0.8, 0.7]), "class": np.array([1, 1, 2]),
           "bbox_y0": np.array([5.0, 30.0, 52.0])}
    df = measured_features(lab, image, -1, {"pixel_size": (0.5, 0.5), "unit": "µm"}, old)
    assert list(df["index"]) == [1, 2, 3]
    assert list(df["score"]) == [0.9, 0.8, 0.7] and list(df["class"]) == [1, 1, 2] and "bbox_y0" in df
    assert list(df["area_um2"]) == [50.0, 25.0, 27.0]
    assert list(df["mean_intensity_ch0"]) == [100.0, 900.0, 100.0]
    # an id in two planes: napari looks objects up by id, so one row (its largest plane)
    stack = np.zeros((2, 20, 20), np.int32)
    stack[0, 1:3, 1:3] = 4
    stack[1, 5:15, 5:15] = 4
    df = measured_features(stack)
    assert list(df["index"]) == [4] and df["plane"][0] == 1 and df["area"][0] == 100


def test_segment_fills_the_features_with_measurements(make_napari_viewer, qtbot, monkeypatch):
    lab, image = _objects()
    viewer = make_napari_viewer()
    widget = sw.SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)

    def fake_segment(model, data, **kwargs):  # the engine's output for these objects
        from seglab.inference.engine import Segmentation
        from seglab.objects import object_table

        table = object_table(lab, np.array([0.0, 0.9, 0.8, 0.7]))
        yield from ()
        return Segmentation(lab.copy(), table, {"prob_thresh": 0.5})

    monkeypatch.setattr("seglab.inference.engine.segment_iter", fake_segment)
    layer = viewer.add_image(image, name="two", channel_axis=None, rgb=False, scale=(0.5, 0.5, 1.0),
                             units=("um", "um", "um"))
    widget.image.value = layer
    widget.channel_axis.value = 2
    widget.model.value = "unet-nuclei"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    feats = widget.output_layer.features
    want = measure(lab, image, pixel_size=0.5, unit="µm")
    np.testing.assert_array_equal(feats["index"], want["label"])
    for c in ("perimeter", "solidity", "sum_intensity_ch1", "max_intensity_ch0", "area_um2", "perimeter_um"):
        np.testing.assert_allclose(feats[c].to_numpy(dtype=float), want[c].astype(float), err_msg=c)
    assert list(feats["score"]) == [0.9, 0.8, 0.7]


def test_click_a_row_selects_centres_and_sorting_works(dock, qtbot):
    viewer, widget = dock
    lab, image = _objects()
    viewer.add_image(image[..., 0], name="img")
    layer = viewer.add_labels(lab, name="objs", features=measured_features(lab, image[..., 0]))
    assert widget.layer is layer  # follows the active labels layer
    assert widget.model.rowCount() == 3 and widget.image.currentText() == "img"
    header = [widget.model.headerData(i, md.Qt.Orientation.Horizontal) for i in range(widget.model.columnCount())]
    assert header[0] == "label" and "perimeter" in header
    col = header.index("area")
    widget.table.sortByColumn(col, md.Qt.SortOrder.AscendingOrder)
    shown = [int(widget.proxy.data(widget.proxy.index(r, 0))) for r in range(3)]
    assert shown == [2, 3, 1]  # by area: 100, 108, 200 (numbers, not text)
    widget.table.sortByColumn(col, md.Qt.SortOrder.DescendingOrder)
    assert [int(widget.proxy.data(widget.proxy.index(r, 0))) for r in range(3)] == [1, 3, 2]
    widget.select_row(2)  # the row of object 2 as now sorted
    assert layer.selected_label == 2
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (39.5, 42.0))
    # picking a label in the layer selects its row
    layer.selected_label = 3
    rows = widget.table.selectionModel().selectedRows()
    assert [int(widget.proxy.data(r)) for r in rows] == [3]


def test_click_in_a_stack_moves_to_the_plane(dock, qtbot):
    viewer, widget = dock
    stack = np.zeros((4, 30, 30), np.int32)
    stack[1, 2:6, 2:6] = 1
    stack[3, 20:26, 10:14] = 2
    layer = viewer.add_labels(stack, name="zs", scale=(2.0, 0.5, 0.5), features=measured_features(stack))
    widget.set_layer(layer)
    widget.select_row(widget.row_of(2))
    assert layer.selected_label == 2
    assert viewer.dims.current_step[0] == 3
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (22.5 * 0.5, 11.5 * 0.5))
    widget.select_row(widget.row_of(1))
    assert viewer.dims.current_step[0] == 1


def test_measure_again_after_an_edit(dock, qtbot):
    viewer, widget = dock
    lab, image = _objects()
    viewer.add_image(image[..., 0], name="img")
    old = {"index": np.array([1, 2, 3]), "score": np.array([0.9, 0.8, 0.7])}
    layer = viewer.add_labels(lab, name="objs", features=measured_features(lab, image[..., 0], old=old))
    keeper = keep_table_fresh(layer)
    layer.brush_size = 3
    layer.paint((10, 10), 0)  # erase a little of object 1
    qtbot.waitUntil(lambda: not keeper.pending, timeout=5_000)
    table = layer.features.set_index("index")
    assert table.loc[1, "edited"] and np.isnan(table.loc[1, "perimeter"])  # stale: blank until measured
    assert table.loc[2, "perimeter"] == pytest.approx(46.0)
    assert "1 edited" in widget.info.text()
    worker = widget.measure()
    assert worker is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    table = layer.features.set_index("index")
    want = measure(layer.data, image[..., 0])
    np.testing.assert_allclose(table["perimeter"], want["perimeter"])
    np.testing.assert_allclose(table["sum_intensity_ch0"].astype(float), want["sum_intensity_ch0"].astype(float))
    assert np.isnan(table.loc[1, "score"]) and table.loc[2, "score"] == 0.8  # the model's scores stay
    assert not keeper.pending


def test_saved_integers_keep_every_digit_after_an_edit(dock, qtbot, tmp_path):
    viewer, widget = dock
    lab, _ = _objects()
    bright = np.full(lab.shape, 65000, np.uint16)
    layer = viewer.add_labels(lab, name="objs", features=measured_features(lab, bright))
    keeper = keep_table_fresh(layer)
    layer.brush_size = 3
    layer.paint((10, 10), 0)
    qtbot.waitUntil(lambda: not keeper.pending, timeout=5_000)
    assert layer.features["sum_intensity_ch0"].dtype.kind == "f"  # NaN for the edited object
    widget.save(tmp_path / "m.csv")
    with open(tmp_path / "m.csv", newline="") as f:
        rows = {int(r["label"]): r for r in csv.DictReader(f)}
    assert rows[2]["sum_intensity_ch0"] == str(65000 * 100)  # 6500000, not 6.5e+06
    assert rows[3]["sum_intensity_ch0"] == str(65000 * 108) and rows[1]["sum_intensity_ch0"] == ""


def test_save_measurements_writes_csv_atomically(dock, tmp_path, monkeypatch):
    viewer, widget = dock
    lab, image = _objects()
    viewer.add_labels(lab, name="objs", features=measured_features(lab, image))
    target = tmp_path / "m.csv"
    target.write_text("old")
    # the file dialog (which asks before replacing) gives the path
    monkeypatch.setattr(md.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "CSV files (*.csv)"))
    seen = []
    monkeypatch.setattr(md, "show_info", seen.append)
    widget.save_button.click()
    with open(target, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["label"]) for r in rows] == [1, 2, 3]
    assert [int(r["sum_intensity_ch1"]) for r in rows] == measure(lab, image)["sum_intensity_ch1"].tolist()
    assert seen and "saved" in seen[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]  # no temporary left
    # a cancelled dialog writes nothing
    monkeypatch.setattr(md.QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    target.write_text("kept")
    widget.save_button.click()
    assert target.read_text() == "kept"


def test_save_without_a_table_is_one_message(dock, tmp_path, monkeypatch):
    viewer, widget = dock
    viewer.add_labels(np.zeros((10, 10), np.int32), name="empty")
    errors = []
    monkeypatch.setattr(md, "show_error", errors.append)
    monkeypatch.setattr(md.QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "x.csv"), ""))
    widget.save_button.click()
    assert errors == ["seglab: 'empty' has no object table; click Measure first"]
    assert not (tmp_path / "x.csv").exists()
    assert isinstance(widget.model.df, pd.DataFrame)


def test_measure_a_plain_labels_layer_with_an_rgb_image(dock, qtbot):
    viewer, widget = dock
    lab, _ = _objects()
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[..., 2] = 50
    rgb[lab == 2, 2] = 250
    viewer.add_image(rgb, name="colour", rgb=True)
    layer = viewer.add_labels(lab, name="drawn")  # no features yet
    assert "click Measure" in widget.info.text()
    widget.image.setCurrentText("colour")
    assert widget.measure() is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    table = layer.features.set_index("index")
    assert list(table.index) == [1, 2, 3]
    assert table.loc[2, "mean_intensity_ch2"] == 250 and table.loc[1, "mean_intensity_ch2"] == 50
    assert widget.model.rowCount() == 3 and "3 objects" in widget.info.text()


def test_measure_with_an_image_that_does_not_fit_is_one_message(dock, qtbot, monkeypatch):
    viewer, widget = dock
    lab, _ = _objects()
    viewer.add_image(np.zeros((10, 10), np.uint8), name="small")
    layer = viewer.add_labels(lab, name="drawn")
    widget.image.setCurrentText("small")
    errors = []
    monkeypatch.setattr(md, "show_error", errors.append)
    widget.measure()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    assert errors == ["seglab: image 'small' (10, 10) does not fit labels (60, 80)"]
    assert "perimeter" not in layer.features.columns
