"""``seglab segment --workers/--scheduler``: failures at the end, a cluster's scheduler, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

from seglab.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"
FAST = ["--device", "cpu", "--diameter", "none", "-q"]


def test_a_corrupt_file_is_reported_at_the_end_and_the_others_succeed(tmp_path, bad_folder, tiny_model_dir, capsys):
    out = tmp_path / "out"
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(bad_folder), "--workers", "1", *FAST])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    last = err.strip().splitlines()
    assert "3 segmented, 0 skipped (finished earlier), 1 failed" in last[-2]
    assert last[-1].startswith("seglab: error: ") and "img1.tif" in last[-1] and "cannot read" in last[-1]
    assert sorted(p.name for p in out.glob("*_labels.tif")) == ["img0_labels.tif", "img2_labels.tif", "img3_labels.tif"]
    # the re-run skips the three and fails again on the corrupt one
    assert main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(bad_folder), "--workers", "0", *FAST]) == 1
    assert "0 segmented, 3 skipped (finished earlier), 1 failed" in capsys.readouterr().err


def test_a_users_own_labels_file_is_reported_and_left_as_is(tmp_path, image_folder, tiny_model_dir, capsys):
    truth = np.full((96, 112), 3, np.uint16)
    tifffile.imwrite(image_folder / "img2_labels.tif", truth)  # ground truth next to its image
    for extra in ([], ["--overwrite"]):
        rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(image_folder), str(image_folder), "--workers", "0",
                   *FAST, *extra])
        err = capsys.readouterr().err
        assert rc == 1 and "Traceback" not in err
        assert "seglab: img2.tif failed: img2_labels.tif exists and was not written by seglab; left as is" in err
        assert "3 segmented, 0 skipped (finished earlier), 1 failed" in err  # (the others redone with --overwrite)
        assert np.array_equal(tifffile.imread(image_folder / "img2_labels.tif"), truth)


def test_segment_on_an_existing_cluster(tmp_path, image_folder, tiny_model_dir, local_cluster, capsys):
    out = tmp_path / "out"
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(image_folder),
               "--scheduler", local_cluster.scheduler_address, *FAST])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"Dask scheduler {local_cluster.scheduler_address}" in err and "4 segmented" in err
    for i in range(4):
        assert tifffile.imread(out / f"img{i}_labels.tif").shape == (96, 112)
        assert (out / f"img{i}_objects.csv").exists()


def test_unreachable_scheduler_is_one_line(tmp_path, image_folder, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setattr("seglab.batch.cluster.CONNECT_TIMEOUT", 2)
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(tmp_path / "out"), str(image_folder),
               "--scheduler", "tcp://127.0.0.1:9", *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err and "Traceback" not in err


def test_negative_workers_refused(tmp_path, image_folder, tiny_model_dir, capsys):
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(tmp_path / "o"), str(image_folder), "--workers", "-1"])
    assert rc == 2 and "--workers needs 0 or more" in capsys.readouterr().err


def test_resume_after_the_batch_is_killed(tmp_path, tiny_model_dir, make_images):
    images = make_images(tmp_path / "imgs", 12, shape=(384, 384))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "seglab.cli", "segment", "-m", str(tiny_model_dir), "-o", str(out),
           str(tmp_path / "imgs"), "--workers", "1", "--tile-size", "128", "--batch-size", "1", *FAST]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(list(out.glob("img*_labels.tif"))) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the batch did not finish two files in time"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-way, without warning: no cleanup runs
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = {p.name for p in out.glob("img*_labels.tif")}
    assert 2 <= len(finished) < len(images), "the kill came too late to test a resume"
    for name in finished:  # whatever counts as finished is a complete label image
        assert tifffile.imread(out / name).shape == (384, 384)
        assert (out / name.replace("_labels.tif", "_objects.csv")).exists()  # side files come first
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    counts = f"{len(images) - len(finished)} segmented, {len(finished)} skipped (finished earlier), 0 failed"
    assert counts in rerun.stderr
    assert sorted(p.name for p in out.glob("img*_labels.tif")) == sorted(f"img{i}_labels.tif" for i in range(12))
    for i in range(12):
        labels = tifffile.imread(out / f"img{i}_labels.tif")
        assert labels.shape == (384, 384) and np.issubdtype(labels.dtype, np.integer)
    # only complete outputs carry output names (a write killed mid-way leaves at most a hidden temporary file)
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {
        f"img{i}{s}" for i in range(12) for s in ("_labels.tif", "_objects.csv")}


def test_worker_processes(tmp_path, image_folder, tiny_model_dir, capsys):
    out = tmp_path / "out"
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(image_folder), "--workers", "1",
               "--worker-kind", "processes", *FAST])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "local Dask cluster: 1 worker process" in err and "4 segmented" in err
    assert len(list(out.glob("img*_labels.tif"))) == 4


def test_a_multi_position_file_on_a_worker_names_every_position(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in"
    src.mkdir()
    with tifffile.TiffWriter(src / "wells.ome.tif", ome=True) as w:
        for k in range(2):
            w.write(np.full((48, 64), 10 * k, np.uint8), metadata={"axes": "YX"})
    out = tmp_path / "out"
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(src), "--workers", "1",
               "--device", "cpu", "--diameter", "none"])
    err = capsys.readouterr().err
    assert rc == 0, err
    line = next(x for x in err.replace("\r", "\n").splitlines() if x.startswith("wells.ome.tif: "))
    assert "(2 images: s0: " in line and line.endswith(f"-> {out / 'wells_s0_labels.tif'}, {out / 'wells_s1_labels.tif'}")
