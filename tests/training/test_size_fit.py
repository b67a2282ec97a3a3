"""Fitting a model's size model (seglab.training.size_fit) on annotated images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from seglab.errors import SeglabError
from seglab.evaluation import AnnotatedImage
from seglab.inference.diameter import equivalent_diameters
from seglab.inference.size_model import SIZE_MODEL_FILE, n_features
from seglab.models.storage import CONFIG_FILE, WEIGHTS_FILE, load_model, save_model
from seglab.progress import run_to_end
from seglab.training import size_fit
from tests_helpers import blob_image, fake_dsb


def test_samples_are_the_probe_windows_of_each_resized_image(tiny_model):
    tiny_model.config.object_diameter = 16.0
    items = [AnnotatedImage(*blob_image((96, 96), n=8, seed=s), None, f"b{s}") for s in range(3)]
    items.append(AnnotatedImage(np.zeros((96, 96), np.uint8), np.zeros((96, 96), np.int32), None, "empty"))
    X, y, groups, primary = run_to_end(size_fit.size_samples_iter(tiny_model, items, (0.5, 1.0, 2.0)))
    assert X.shape == (9, n_features(tiny_model.network)) and list(groups) == [0] * 3 + [1] * 3 + [2] * 3
    assert primary.all()
    d0 = float(np.median(equivalent_diameters(items[0].labels)))
    np.testing.assert_allclose(y[:3], [math.log(d0 * f / 16.0) for f in (0.5, 1.0, 2.0)])
    tiny_model.config.object_diameter = None
    with pytest.raises(SeglabError, match="object_diameter"):
        run_to_end(size_fit.size_samples_iter(tiny_model, items))


def test_large_planes_give_several_windows_and_the_one_auto_reads_comes_first(tiny_model):
    """A plane probed through a window gives ``windows`` samples (distinct windows, the one ``auto``
    reads first and marked primary); one probed whole gives one. Features are those of
    :func:`probe_tile`'s tile, as the run reads them."""
    from seglab.inference.diameter import WHOLE_PROBE_AREA, probe_tile, probe_windows
    from seglab.inference.normalize import model_input
    from seglab.inference.size_model import window_features

    tiny_model.config.object_diameter = 16.0
    item = AnnotatedImage(*blob_image((480, 480), n=60, seed=4), None, "big")
    assert 480 * 480 > WHOLE_PROBE_AREA >= 240 * 240
    X, y, groups, primary = run_to_end(size_fit.size_samples_iter(tiny_model, [item], (0.5, 1.0), windows=3))
    assert len(y) == 1 + 3 and list(primary) == [True, True, False, False]
    assert len({tuple(v[:4]) for v in X[1:]}) == 3  # three different windows
    x = model_input(item.image, tiny_model.config.input_channels, tiny_model.config.normalization, None)
    rows, cols = probe_windows(x, 1.0, k=3)[0]
    np.testing.assert_allclose(X[1], window_features(tiny_model.network, *probe_tile(tiny_model, x[:, rows, cols], False)),
                               rtol=1e-5, atol=1e-6)


def test_fit_writes_the_size_model_and_its_facts_without_rewriting_the_weights(tmp_path, tiny_model):
    data = tmp_path / "dsb"
    fake_dsb(data, n_train=6, n_val=2)
    tiny_model.config.object_diameter = 14.0
    folder = save_model(tiny_model, tmp_path / "m")
    weights = (folder / WEIGHTS_FILE).read_bytes()
    assert size_fit.main([str(folder), "--data", str(data), "--windows", "1"]) == 0
    assert (folder / WEIGHTS_FILE).read_bytes() == weights
    mode = (folder / WEIGHTS_FILE).stat().st_mode
    assert (folder / SIZE_MODEL_FILE).stat().st_mode == mode  # not left private, as a temporary file is
    model = load_model(folder)
    facts = json.loads((folder / CONFIG_FILE).read_text())["training"]["size_model"]
    assert model.size_model is not None and (folder / SIZE_MODEL_FILE).is_file()
    assert facts["images"] == 6 and facts["samples"] == 6 * len(size_fit.FACTORS)  # train only, never val
    assert facts["windows_per_large_image"] == 1
    assert facts["data"] == "DSB2018 split train" and 0 <= facts["cv_within_30_percent"] <= 1
