"""Batches made in worker processes (training/data.py WorkerSampler) and the recipes'
``--workers`` / ``--train-only`` (training/recipes.py)."""

import json

import numpy as np
import pytest
import torch

from seglab.errors import SeglabError
from seglab.models.storage import load_model, new_model
from seglab.training.data import Augment, PatchSampler, PrefetchSampler, WorkerSampler, background_sampler, make_pair
from seglab.training.recipes import main
from tests_helpers import blob_image, fake_dsb


def _sampler(seed=0, teacher=None):
    model = new_model("stardist", "s", architecture={"widths": [4, 8], "convs_per_block": 1, "n_rays": 8,
                                                    "grid": 2, "head_width": 4})
    pairs = []
    for s in range(3):
        img, lab = blob_image((96, 96), n=6, seed=s)
        pairs.append(make_pair(img, lab, 1, model.config.normalization))
    return model, PatchSampler(pairs, 64, Augment(), seed=seed, teacher=teacher)


def _take(sampler, model, k, n=2):
    return [sampler.batch(n, model) for _ in range(k)]


def test_worker_batches_have_the_threads_shapes_and_differ_between_workers():
    model, inner = _sampler()
    x0, t0, v0 = PatchSampler(inner.pairs, 64, Augment(), seed=0).batch(2, model)
    ws = WorkerSampler(inner, 2, model, workers=2)
    try:
        batches = _take(ws, model, 4)
    finally:
        ws.close()
    for x, t, v in batches:
        assert x.shape == x0.shape and x.dtype == torch.float32 and v.shape == v0.shape
        assert set(t) == set(t0) and all(t[k].shape == t0[k].shape for k in t)
    # each worker draws its own patches: no two batches alike
    flat = [b[0].numpy() for b in batches]
    assert all(not np.array_equal(flat[i], flat[j]) for i in range(4) for j in range(i + 1, 4))
    assert ws.served == 4
    with pytest.raises(SeglabError, match="stopped"):
        ws.batch(2, model)


def test_worker_batches_are_reproducible_for_a_seed_and_change_with_it():
    def first_images(seed):
        model, inner = _sampler(seed)
        ws = WorkerSampler(inner, 2, model, workers=2)
        try:
            return sorted((b[0].numpy().tobytes() for b in _take(ws, model, 4)))
        finally:
            ws.close()

    assert first_images(3) == first_images(3)
    assert first_images(3) != first_images(4)


def test_worker_sampler_refuses_a_teacher_other_batch_sizes_and_no_workers():
    model, inner = _sampler()
    with pytest.raises(SeglabError, match="at least 1"):
        WorkerSampler(inner, 2, model, workers=0)
    _, with_teacher = _sampler(teacher=model)
    with pytest.raises(SeglabError, match="teacher"):
        WorkerSampler(with_teacher, 2, model, workers=1)
    ws = WorkerSampler(inner, 2, model, workers=1)
    try:
        with pytest.raises(SeglabError, match="one batch size"):
            ws.batch(3, model)
    finally:
        ws.close()
    assert isinstance(background_sampler(inner, 2, model, 0), PrefetchSampler)


def test_recipe_with_workers_and_train_only_then_finish(tmp_path):
    data, out = tmp_path / "dsb", tmp_path / "run"
    fake_dsb(data)
    common = ["--data", str(data), "--steps", "3", "--batch-size", "2", "--validate-every", "2", "--device", "cpu"]
    assert main(["stardist-nuclei", *common, "--out", str(out), "--workers", "2", "--train-only"]) in (0, None)
    run = json.loads((out / "train_result.json").read_text())
    assert run["steps"] == 3 and run["data_workers"] == 2 and run["trained_on"] == "cpu"
    assert (out / "best").is_dir() and not (out / "final").exists()  # not finished
    assert main(["finish-stardist-nuclei", *common, "--out", str(out)]) in (0, None)
    training = load_model(out / "final").config.training
    assert training["data_workers"] == 2 and training["trained_on"] == "cpu" and training["steps"] == 3
    for bad in (["--workers", "-1"], ["--workers", "2", "--teacher", str(out / "final")]):
        with pytest.raises(SystemExit):
            main(["stardist-nuclei", *common, "--out", str(tmp_path / "bad"), *bad])
