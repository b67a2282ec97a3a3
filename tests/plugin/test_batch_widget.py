import time

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")

from seglab.plugin import batch_widget as bw  # noqa: E402
from tests_helpers import blob_image, record_finish  # noqa: E402


@pytest.fixture
def tiny_in_models(models_dir, tiny_model):
    from seglab.models.storage import save_model

    save_model(tiny_model, models_dir / "tiny-unet")
    return "tiny-unet"


@pytest.fixture
def notes(monkeypatch):
    seen = {"error": [], "info": [], "warning": []}
    monkeypatch.setattr(bw, "show_error", lambda msg: seen["error"].append(msg))
    monkeypatch.setattr(bw, "show_info", lambda msg: seen["info"].append(msg))
    monkeypatch.setattr(bw, "show_warning", lambda msg: seen["warning"].append(msg))
    return seen


@pytest.fixture
def viewer_widget(make_napari_viewer, tiny_in_models):
    viewer = make_napari_viewer()
    widget = bw.BatchWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = tiny_in_models
    widget.diameter.value = "none"
    widget.device.value = "cpu"
    return viewer, widget


def write_folder(folder, n, shape=(96, 112), corrupt=()):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if i in corrupt:
            (folder / f"img{i}.tif").write_bytes(b"not a TIFF")
        else:
            tifffile.imwrite(folder / f"img{i}.tif", blob_image(shape, n=6, seed=i)[0])
    return folder


def run(qtbot, widget, timeout=120_000):
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    return worker


def table_rows(widget):
    return [list(r) for r in widget.table.data]


def test_batch_fills_the_table_reports_a_failure_and_opens_a_result(tmp_path, qtbot, viewer_widget, notes):
    viewer, widget = viewer_widget
    folder = write_folder(tmp_path / "imgs", 4, corrupt=(2,))
    widget.folder.value = folder
    widget.destination.value = bw.IN_FOLDER
    widget.outdir.value = tmp_path / "out"
    run(qtbot, widget)
    rows = table_rows(widget)
    assert [r[0] for r in rows] == ["img0.tif", "img1.tif", "img2.tif", "img3.tif"]
    assert [r[3] for r in rows[:2] + rows[3:]] == ["done"] * 3
    assert rows[2][3].startswith("failed: cannot read img2.tif")
    for i in (0, 1, 3):
        labels = tifffile.imread(tmp_path / "out" / f"img{i}_labels.tif")
        ids = np.unique(labels[labels > 0])
        assert rows[i][1] == str(len(ids))
        if len(ids):
            assert float(rows[i][2]) == pytest.approx(np.mean([(labels == j).sum() for j in ids]), abs=0.05)
        assert (tmp_path / "out" / f"img{i}_objects.csv").exists()  # the default outputs: labels + objects
    assert widget.status.value.startswith("3 segmented, 0 skipped, 1 failed")
    assert len(notes["error"]) == 1 and "1 of 4 images failed: img2.tif" in notes["error"][0]
    # a user's layer of the same name is never touched; opening adds new layers
    user = viewer.add_labels(np.zeros((5, 5), np.int32), name="img0_labels")
    layers = widget.open_result(0)
    assert [type(lyr).__name__ for lyr in layers] == ["Image", "Labels"]
    assert layers[0].data.shape == (96, 112) and layers[1] is not user
    np.testing.assert_array_equal(layers[1].data, tifffile.imread(tmp_path / "out" / "img0_labels.tif"))
    assert user.data.shape == (5, 5) and not user.data.any() and user.name == "img0_labels"
    n = len(viewer.layers)
    assert widget.open_result(0) == layers and len(viewer.layers) == n  # opened again: shown, not added twice
    assert widget.open_result(2) == [] and notes["warning"]  # the failed file has nothing to open


def test_a_multi_position_file_opens_each_position(tmp_path, qtbot, viewer_widget, notes):
    """A TIFF of two positions: one row, each position written apart and opened as its own image
    and labels, also when a re-run finds the file finished."""
    viewer, widget = viewer_widget
    folder = tmp_path / "imgs"
    folder.mkdir()
    shapes = [(96, 112), (64, 80)]
    with tifffile.TiffWriter(folder / "wells.ome.tif", ome=True) as w:
        for k, shape in enumerate(shapes):
            w.write(blob_image(shape, n=4, seed=k)[0], metadata={"axes": "YX"})
    widget.folder.value = folder
    widget.destination.value = bw.IN_FOLDER
    widget.outdir.value = tmp_path / "out"
    for status in ("done", "finished earlier (skipped)"):
        run(qtbot, widget)
        rows = table_rows(widget)
        assert [r[0] for r in rows] == ["wells.ome.tif"] and rows[0][3] == status
        layers = widget.open_result(0)
        assert [(type(lyr).__name__, lyr.name) for lyr in layers] == [
            ("Image", "wells_s0"), ("Labels", "wells_s0_labels"), ("Image", "wells_s1"), ("Labels", "wells_s1_labels")]
        for k, shape in enumerate(shapes):
            assert layers[2 * k].data.shape == shape
            np.testing.assert_array_equal(layers[2 * k + 1].data, tifffile.imread(tmp_path / "out" / f"wells_s{k}_labels.tif"))
        for lyr in layers:
            viewer.layers.remove(lyr)
    assert not notes["error"] and not notes["warning"]


def test_cancel_is_immediate_and_a_rerun_skips_finished_images(tmp_path, qtbot, viewer_widget, notes):
    viewer, widget = viewer_widget
    folder = write_folder(tmp_path / "imgs", 10, shape=(256, 256))
    widget.folder.value = folder  # outputs next to the images
    worker = widget.start()
    files = []
    worker.yielded.connect(lambda ev: files.append(ev) if ev.outcome is not None else None)
    ended = record_finish(worker)
    qtbot.waitUntil(lambda: len(files) >= 1, timeout=120_000)
    t0 = time.monotonic()
    widget.cancel()
    assert time.monotonic() - t0 < 0.5
    assert not widget.running and widget.status.value == "cancelled" and widget.run_button.enabled
    qtbot.waitUntil(lambda: bool(ended), timeout=2_000)  # the batch itself stops within 2 s
    assert ended[0] - t0 < 2.0
    finished = sorted(p.name for p in folder.glob("img*_labels.tif"))
    assert 1 <= len(finished) < 10
    qtbot.wait(300)
    assert sorted(p.name for p in folder.glob("img*_labels.tif")) == finished  # nothing written after the cancel
    run(qtbot, widget)
    rows = table_rows(widget)
    assert len(rows) == 10  # the outputs next to the images are not taken for inputs
    assert sum(r[3] == "finished earlier (skipped)" for r in rows) == len(finished)
    assert sum(r[3] == "done" for r in rows) == 10 - len(finished)
    assert not notes["error"]


def test_on_a_local_dask_cluster(tmp_path, qtbot, viewer_widget, notes):
    viewer, widget = viewer_widget
    widget.folder.value = write_folder(tmp_path / "imgs", 3)
    widget.workers.value = 1
    run(qtbot, widget)
    assert [r[3] for r in table_rows(widget)] == ["done"] * 3
    assert widget.summary.where.startswith("local Dask cluster: 1 worker thread")
    assert not notes["error"]


def test_outputs_come_from_the_registry(monkeypatch, viewer_widget):
    from seglab.outputs import OutputKind, output_kinds

    viewer, widget = viewer_widget
    names = [w.name for w in widget.outputs]
    assert names == list(output_kinds())
    labels = next(w for w in widget.outputs if w.name == "labels")
    assert labels.value and not labels.enabled
    rois = next(w for w in widget.outputs if w.name == "rois")
    assert not rois.enabled and "gives no outlines" in rois.tooltip  # a U-Net gives no polygons
    monkeypatch.setitem(bw.output_kinds.__globals__["_OUTPUTS"], "geojson",
                        OutputKind("geojson", ".geojson", lambda *a: None, "GeoJSON polygons"))
    widget._on_model_changed()
    box = next(w for w in widget.outputs if w.name == "geojson")
    assert box.enabled and box.text == "geojson" and "GeoJSON polygons" in box.tooltip
    box.value = True
    assert "geojson" in widget.selected_outputs() and "labels" not in widget.selected_outputs()


def test_missing_folder_is_a_notification(viewer_widget, notes):
    _, widget = viewer_widget
    assert widget.start() is None
    assert notes["error"] == ["seglab: choose a folder of images"]


def test_every_field_has_a_tooltip(viewer_widget):
    from seglab.plugin.tooltips import fields

    _, widget = viewer_widget
    widget.advanced.expanded = True
    missing = [f.label or f.name or getattr(f, "text", "") for f in fields(widget) if not f.tooltip]
    assert not missing, f"fields without a tooltip: {missing}"


def test_cancel_on_a_local_dask_cluster_within_2_s(tmp_path, qtbot, viewer_widget, notes):
    viewer, widget = viewer_widget
    folder = write_folder(tmp_path / "imgs", 10, shape=(256, 256))
    widget.folder.value = folder
    widget.workers.value = 1
    worker = widget.start()
    files = []
    worker.yielded.connect(lambda ev: files.append(ev) if ev.outcome is not None else None)
    ended = record_finish(worker)
    qtbot.waitUntil(lambda: len(files) >= 1, timeout=120_000)
    widget.cancel()
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: bool(ended), timeout=5_000)  # the cluster is closed too
    print(f"Dask batch stopped {ended[0] - t0:.2f} s after Cancel")
    assert ended[0] - t0 < 2.0
    finished = sorted(p.name for p in folder.glob("img*_labels.tif"))
    qtbot.wait(500)
    assert sorted(p.name for p in folder.glob("img*_labels.tif")) == finished and len(finished) < 10


def test_fields_reach_the_batch(tmp_path, qtbot, viewer_widget, notes, monkeypatch):
    from seglab.batch.core import BatchSummary

    seen = {}

    def fake_batch_iter(model, paths, outdir, outputs, options, settings, model_ref=None):
        seen.update(paths=paths, outdir=outdir, outputs=outputs, options=options, settings=settings, ref=model_ref)
        return BatchSummary([], "nowhere", 0.0)
        yield  # a generator

    monkeypatch.setattr(bw, "batch_iter", fake_batch_iter)
    viewer, widget = viewer_widget
    folder = write_folder(tmp_path / "imgs", 2)
    widget.folder.value = folder
    widget.diameter.value = "25"
    widget.channels.value = "0"
    widget.tile_size.value = 512
    widget.workers.value = 2
    widget.overwrite.value = True
    assert widget.denoise.value == "auto"
    widget.denoise.value = "off"
    assert widget.augment.enabled and not widget.augment.value  # a U-Net: augmentation offered, off by default
    widget.augment.value = True
    name = widget.thresholds[0].name
    widget.thresholds[0].value = 0.35
    run(qtbot, widget, timeout=30_000)
    assert [p.name for p in seen["paths"]] == ["img0.tif", "img1.tif"] and seen["outdir"] is None
    assert seen["outputs"] == ["objects"]
    opts = seen["options"]
    assert opts.diameter == 25.0 and list(opts.channels) == [0] and opts.tile_size == 512 and opts.device == "cpu"
    assert opts.denoise is False and opts.augment is True
    assert opts.thresholds[name] == pytest.approx(0.35)
    assert seen["settings"].workers == 2 and not seen["settings"].processes and seen["settings"].overwrite
    assert seen["ref"].endswith("tiny-unet")


def test_augmentation_is_not_offered_for_mask_rcnn(tmp_path, viewer_widget):
    _, widget = viewer_widget
    widget.folder.value = write_folder(tmp_path / "imgs", 1)
    widget.augment.value = True
    widget.model.value = "maskrcnn-nuclei"
    assert not widget.augment.enabled and not widget.augment.value and "not for this" in widget.augment.text
    assert widget._inputs()[2]["augment"] is False


def test_a_users_own_label_image_is_reported_and_never_replaced(tmp_path, qtbot, viewer_widget, notes):
    """The user's ground truth ``img1_labels.tif`` beside ``img1.tif`` is not 'finished earlier' and
    is left as it is, with *Redo finished images* too; the row says why."""
    viewer, widget = viewer_widget
    folder = write_folder(tmp_path / "imgs", 2)
    truth = np.full((96, 112), 7, np.uint16)
    tifffile.imwrite(folder / "img1_labels.tif", truth)
    widget.folder.value = folder
    for redo in (False, True):
        notes["error"].clear()
        widget.overwrite.value = redo
        run(qtbot, widget)
        rows = table_rows(widget)
        assert [r[0] for r in rows] == ["img0.tif", "img1.tif"] and rows[0][3] == "done"
        assert rows[1][3].startswith("failed: img1_labels.tif exists and was not written by seglab; left as is")
        assert len(notes["error"]) == 1
        assert "img1.tif: img1_labels.tif exists and was not written by seglab" in notes["error"][0]
        np.testing.assert_array_equal(tifffile.imread(folder / "img1_labels.tif"), truth)
        assert not (folder / "img1_objects.csv").exists()
    assert widget.open_result(1) == []  # nothing of seglab's to open for it


def test_results_are_shown_again_only_while_the_opened_layers_are_the_widgets(tmp_path, qtbot, viewer_widget, notes):
    """*Open* shows the layers it opened before again, but a renamed one is the user's: the result
    opens anew (as for a layer that was removed); duplicates (metadata copied) are never taken."""
    from napari.layers._layer_actions import _duplicate_layer

    viewer, widget = viewer_widget
    widget.folder.value = write_folder(tmp_path / "imgs", 1)
    run(qtbot, widget)
    image, labels = widget.open_result(0)
    viewer.layers.selection = {labels}
    _duplicate_layer(viewer.layers)
    viewer.layers.remove(labels)  # the copy (metadata copied) stays
    again = widget.open_result(0)
    assert len(again) == 2 and again[1] is not labels and all(lyr.name != "img0_labels copy" for lyr in again)
    again[1].name = "my corrected labels"
    third = widget.open_result(0)
    assert len(third) == 2 and third[1] not in again and again[1].name == "my corrected labels"
