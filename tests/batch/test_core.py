"""seglab.batch.core: planning (resume by finished label images), outcomes, Dask and cancel."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile

from seglab.batch.core import BatchSettings, batch_inputs, batch_iter, plan_batch
from seglab.errors import SeglabError
from seglab.files import SegmentOptions
from seglab.io.labels import write_labels
from seglab.models.storage import load_model
from seglab.outputs import labels_software
from seglab.progress import run_to_end

OPTIONS = SegmentOptions(device="cpu", diameter=None, tile_size=256)


def events_and_summary(gen):
    events = []
    summary = run_to_end(gen, events.append)
    return events, summary


def test_in_process_batch_reports_each_file_and_a_failure_without_stopping(tmp_path, bad_folder, tiny_model_dir):
    model = load_model(tiny_model_dir)
    paths = batch_inputs([bad_folder])
    events, summary = events_and_summary(batch_iter(model, paths, tmp_path / "out", ["objects"], OPTIONS,
                                                    BatchSettings(workers=0)))
    assert summary.where == "this process"
    assert [o.status for o in summary.outcomes] == ["done", "failed", "done", "done"]
    bad = summary.outcomes[1]
    assert "img1.tif" in bad.error and "Traceback" not in bad.error
    assert not (tmp_path / "out" / "img1_labels.tif").exists()
    assert not summary.ok and summary.failed == [bad]
    file_events = [e for e in events if e.stage == "file"]
    assert [e.done for e in file_events] == [1, 2, 3, 4] and file_events[-1].fraction == 1.0
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)  # progress over files only moves forward
    for o in summary.with_status("done"):
        labels = tifffile.imread(o.outputs["labels"])
        ids = np.unique(labels[labels > 0])
        assert o.n_objects == len(ids)
        if len(ids):
            assert o.mean_area == pytest.approx(np.mean([(labels == i).sum() for i in ids]))
        assert o.outputs["objects"].exists()


def test_finished_files_are_skipped_and_half_done_ones_redone(tmp_path, image_folder, tiny_model_dir):
    out = tmp_path / "out"
    out.mkdir()
    paths = batch_inputs([image_folder])
    write_labels(out / "img0_labels.tif", np.ones((4, 4), np.uint8), software=labels_software())  # finished earlier
    (out / "img1_objects.csv").write_text("half-written")  # an interrupted image: side file, no labels
    todo, skipped = plan_batch(paths, out, ["objects"])
    assert [j.path.name for j in todo] == ["img1.tif", "img2.tif", "img3.tif"]
    assert [o.path.name for o in skipped] == ["img0.tif"] and skipped[0].status == "skipped"
    model = load_model(tiny_model_dir)
    _, summary = events_and_summary(batch_iter(model, paths, out, ["objects"], OPTIONS, BatchSettings(workers=0)))
    assert [o.status for o in summary.outcomes] == ["skipped", "done", "done", "done"] and summary.ok
    assert tifffile.imread(out / "img0_labels.tif").shape == (4, 4)  # left alone
    assert (out / "img1_objects.csv").read_text().startswith("label,")  # replaced
    todo, skipped = plan_batch(paths, out, ["objects"], overwrite=True)
    assert len(todo) == 4 and not skipped


def test_a_users_own_labels_file_is_neither_finished_nor_replaced(tmp_path, image_folder, tiny_model_dir):
    """A label image seglab did not write (the user's ground truth under seglab's name) is not a
    finished run, is never replaced (Redo too), and its image fails with that reason; seglab's own
    label images carry its mark and are recognised as finished."""
    from seglab.outputs import written_by_seglab

    out = tmp_path / "out"
    out.mkdir()
    paths = batch_inputs([image_folder])
    truth = np.full((96, 112), 7, np.uint16)
    tifffile.imwrite(out / "img0_labels.tif", truth)  # the user's own labels, named as seglab names its own
    todo, skipped = plan_batch(paths, out, ["objects"])
    assert [j.path.name for j in todo] == ["img0.tif", "img1.tif", "img2.tif", "img3.tif"] and not skipped
    model = load_model(tiny_model_dir)
    for overwrite in (False, True):
        _, summary = events_and_summary(batch_iter(model, paths, out, ["objects"], OPTIONS,
                                                   BatchSettings(workers=0, overwrite=overwrite)))
        first = summary.outcomes[0]
        assert first.status == "failed" and not summary.ok
        assert first.error.startswith("img0_labels.tif exists and was not written by seglab; left as is")
        assert np.array_equal(tifffile.imread(out / "img0_labels.tif"), truth)
        assert not (out / "img0_objects.csv").exists()  # nothing of that image written
        assert [o.status for o in summary.outcomes[1:]] == ["done"] * 3  # (redone, with overwrite)
    assert not written_by_seglab(out / "img0_labels.tif")
    assert all(written_by_seglab(out / f"img{i}_labels.tif") for i in (1, 2, 3))
    todo, skipped = plan_batch(paths, out, ["objects"])
    assert [j.path.name for j in todo] == ["img0.tif"] and len(skipped) == 3


def test_outputs_next_to_the_images_are_not_inputs_of_a_rerun(tmp_path, image_folder, tiny_model_dir):
    model = load_model(tiny_model_dir)
    paths = batch_inputs([image_folder])
    _, summary = events_and_summary(batch_iter(model, paths, None, [], OPTIONS, BatchSettings(workers=0)))
    assert summary.ok and (image_folder / "img0_labels.tif").exists()
    (image_folder / ".img9_labels.tif.abc.tif").write_bytes(b"temporary file of a killed run")
    assert batch_inputs([image_folder]) == paths
    todo, skipped = plan_batch(batch_inputs([image_folder]), None, [])
    assert not todo and len(skipped) == 4



def test_colliding_names_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for d in (a, b):
        tifffile.imwrite(d / "x.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(SeglabError, match="share the name 'x'"):
        plan_batch([a / "x.tif", b / "x.tif"], tmp_path / "out", [])
    todo, _ = plan_batch([a / "x.tif", b / "x.tif"], None, [])  # next to each image: no collision
    assert len(todo) == 2


def test_single_file_runs_in_process_but_a_scheduler_is_always_used():
    assert BatchSettings(workers=4).in_process(1) and not BatchSettings(workers=4).in_process(2)
    assert BatchSettings(workers=0).in_process(10)
    assert not BatchSettings(workers=0, scheduler="tcp://x:1").in_process(1)


def test_on_a_scheduler_each_worker_loads_the_model_once(tmp_path, tiny_model_dir, local_cluster, make_images):
    from distributed import Client

    paths = make_images(tmp_path / "imgs", 6, corrupt=(2,))
    model = load_model(tiny_model_dir)
    settings = BatchSettings(scheduler=local_cluster.scheduler_address)
    events, summary = events_and_summary(batch_iter(model, paths, tmp_path / "out", ["objects"], OPTIONS, settings,
                                                    model_ref=str(tiny_model_dir)))
    assert summary.where.startswith(f"Dask scheduler {local_cluster.scheduler_address}")
    assert [o.status for o in summary.outcomes] == ["done", "done", "failed", "done", "done", "done"]
    assert "img2.tif" in summary.outcomes[2].error
    with Client(local_cluster.scheduler_address, set_as_default=False) as client:
        loads = client.run(lambda dask_worker: dask_worker.plugins["seglab-models"].loads)
    assert sum(loads.values()) >= 1 and all(n <= 1 for n in loads.values())  # once per worker, not per file


def test_closing_the_generator_cancels_the_files_not_done(tmp_path, tiny_model_dir, local_cluster, make_images):
    paths = make_images(tmp_path / "imgs", 12, shape=(192, 192))
    out = tmp_path / "out"
    model = load_model(tiny_model_dir)
    gen = batch_iter(model, paths, out, [], OPTIONS, BatchSettings(scheduler=local_cluster.scheduler_address),
                     model_ref=str(tiny_model_dir))
    for event in gen:
        if event.stage == "file":
            break
    t0 = time.monotonic()
    gen.close()
    closed = time.monotonic() - t0
    time.sleep(1.5)  # running tasks see the cancel within CANCEL_POLL_SECONDS and stop
    done = sorted(out.glob("*_labels.tif"))
    time.sleep(1.5)
    assert sorted(out.glob("*_labels.tif")) == done  # nothing more is written after the cancel
    assert 1 <= len(done) < len(paths)
    assert closed < 5
    for p in done:  # whatever counts as finished is complete
        assert tifffile.imread(p).shape == (192, 192)


def test_out_of_core_outputs_mark_finished_files(tmp_path):
    """Large inputs finish as a labels store (``<stem>_labels.zarr``), not a TIFF: a re-run with the
    same --out-of-core setting skips them."""
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "x.tif", np.zeros((32, 32), np.uint16))
    out = tmp_path / "out"
    (out / "x_labels.zarr").mkdir(parents=True)
    todo, skipped = plan_batch([src / "x.tif"], out, [], out_of_core=True)
    assert not todo and skipped[0].outputs["labels"] == out / "x_labels.zarr"
    todo, skipped = plan_batch([src / "x.tif"], out, [])  # a small TIFF read in memory: its TIFF is missing
    assert len(todo) == 1 and not skipped


def _positions_file(path, n=2, shape=(96, 96)):
    from tests_helpers import blob_image

    with tifffile.TiffWriter(path, ome=True) as w:
        for k in range(n):
            w.write(blob_image(shape, n=6, seed=k)[0], metadata={"axes": "YX"})
    return path


def test_a_multi_position_file_is_finished_when_every_position_is(tmp_path, tiny_model_dir):
    """Planning counts the images of a multi-position TIFF: a re-run redoes a file whose last
    position was not written; the names of its positions collide with another input's."""
    src = tmp_path / "in"
    src.mkdir()
    _positions_file(src / "wells.ome.tif")
    tifffile.imwrite(src / "plain.tif", np.zeros((32, 32), np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    paths = batch_inputs([src])
    write_labels(out / "wells_s0_labels.tif", np.ones((4, 4), np.uint8), software=labels_software())
    todo, skipped = plan_batch(paths, out, [])
    assert [j.path.name for j in todo] == ["plain.tif", "wells.ome.tif"] and not skipped
    todo, skipped = plan_batch(paths, out, [], series="first")  # the first only, named as the file
    assert len(todo) == 2
    write_labels(out / "wells_s1_labels.tif", np.ones((4, 4), np.uint8), software=labels_software())
    todo, skipped = plan_batch(paths, out, [])
    assert [j.path.name for j in todo] == ["plain.tif"] and skipped[0].outputs["labels"] == out / "wells_s0_labels.tif"
    tifffile.imwrite(src / "wells_s1.tif", np.zeros((32, 32), np.uint8))
    with pytest.raises(SeglabError, match="several inputs share the name 'wells_s1'"):
        plan_batch(batch_inputs([src]), out, [])
    plan_batch(batch_inputs([src]), out, [], series="first")  # no collision when positions are not written apart


def test_a_batch_writes_each_position_and_averages_over_all_their_objects(tmp_path):
    from seglab.models.base import ModelConfig
    from seglab.models.unet import UNetModel
    from tests_helpers import threshold_net

    model = UNetModel(ModelConfig(name="blobs", family="unet", tile_context=16,
                                  thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5}),
                      network=threshold_net())
    src = _positions_file(tmp_path / "wells.ome.tif", n=3)
    out = tmp_path / "out"
    events, summary = events_and_summary(batch_iter(model, [src], out, ["objects"], OPTIONS, BatchSettings(workers=0)))
    (o,) = summary.outcomes
    assert o.status == "done" and o.outputs["labels"] == out / "wells_s0_labels.tif"
    assert o.size.startswith("3 images: s0: ")
    areas, n = [], 0
    for k in range(3):
        labels = tifffile.imread(out / f"wells_s{k}_labels.tif")
        ids = np.unique(labels[labels > 0])
        areas += [(labels == i).sum() for i in ids]
        n += len(ids)
        assert (out / f"wells_s{k}_objects.csv").exists()
    assert o.n_objects == n > 3
    assert o.mean_area == pytest.approx(np.mean(areas))
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)
