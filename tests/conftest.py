"""Shared fixtures: synthetic images with known objects, and a tiny model saved to disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# bioimage.io tests run offline: bioimageio's cache (read when bioimageio.spec is first imported) points
# into the temporary folder, never the user's; nothing there is downloaded (packages are local)
os.environ.setdefault("BIOIMAGEIO_CACHE_PATH", os.path.join(tempfile.gettempdir(), "seglab-tests-bioimageio-cache"))

SHARED_DSB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018"


def disc_image(shape=(128, 160), centres=((30, 40), (80, 100), (60, 30)), radius=10, seed=0):
    """Bright discs on a dark noisy background, with their instance labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    image = (labels > 0) * 200.0 + rng.normal(20, 5, shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.fixture
def discs():
    return disc_image()


@pytest.fixture
def tiny_model():
    """An untrained U-Net small enough for fast tests; its starting weights do not depend on
    which tests ran before (the global torch seed)."""
    import torch

    from seglab.models.storage import new_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return new_model("unet", "tiny-unet", description="tiny test model",
                         architecture={"widths": [4, 8, 16], "convs_per_block": 1}, tile_context=16)


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_model):
    from seglab.models.storage import save_model

    return save_model(tiny_model, tmp_path / "tiny-unet")


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty user models folder (never the real one)."""
    d = tmp_path / "user-models"
    d.mkdir()
    monkeypatch.setenv("SEGLAB_MODELS_DIR", str(d))
    return d


@pytest.fixture(autouse=True)
def _isolated_user_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SEGLAB_MODELS_DIR", str(tmp_path_factory.mktemp("no-user-models")))


def shared_dsb_or_skip() -> Path:
    if not (SHARED_DSB / "manifest.csv").is_file():
        pytest.skip("../shared/data/dsb2018 not available")
    return SHARED_DSB


TINY_STAR = {"widths": [4, 8, 16], "convs_per_block": 1, "n_rays": 16, "grid": 2, "head_width": 8}


@pytest.fixture(scope="session")
def tiny_star_dir(tmp_path_factory):
    """A tiny StarDist-style model trained for a few seconds on synthetic discs (finds them well)."""
    import torch

    from seglab.models.storage import new_model, save_model
    from seglab.training.data import Augment, PatchSampler, make_pair
    from seglab.training.loop import TrainSettings, train_iter
    from tests_helpers import blob_image

    torch.manual_seed(0)
    model = new_model("stardist", "tiny-star", description="tiny polygon test model",
                      architecture=dict(TINY_STAR), tile_context=16, thresholds={"prob_thresh": 0.5, "nms_thresh": 0.3})
    pairs = [make_pair(*blob_image((96, 96), n=8, seed=s), 1, model.config.normalization) for s in range(4)]
    sampler = PatchSampler(pairs, 64, Augment(scale_range=(0.8, 1.25)), seed=0)  # the range it was tuned with
    for _ in train_iter(model, sampler, TrainSettings(steps=150, batch_size=4, lr=1e-2, warmup_steps=5), device="cpu"):
        pass
    return save_model(model, tmp_path_factory.mktemp("star") / "tiny-star")


@pytest.fixture
def augment_passes(monkeypatch):
    """The ``augment`` of every dense-map run of a plane through the engine, in order."""
    from seglab.inference import engine

    seen = []
    real = engine.predict_maps_iter

    def spy(*a, augment=False, **kw):
        seen.append(augment)
        return (yield from real(*a, augment=augment, **kw))

    monkeypatch.setattr(engine, "predict_maps_iter", spy)
    return seen
