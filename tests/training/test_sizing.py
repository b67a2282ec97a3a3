"""Training for size (issue 11): scale augmentation, the user's objects brought to the start model's size."""

import numpy as np
import pytest

from seglab.inference.diameter import equivalent_diameters
from seglab.models.storage import load_model, save_model
from seglab.training.data import Augment, PatchSampler, TrainPair
from seglab.training.finetune import Annotation, FinetuneSettings, finetune, prepare
from seglab.training.recipes import seen_object_diameter
from seglab.training.sizing import annotated_diameter
from tests_helpers import blob_image

FAST = dict(patch_size=32, batch_size=2, device="cpu")


def _big_blobs(seed=0, shape=(160, 160)):
    img, lab = blob_image(shape, n=8, seed=seed, rmin=12, rmax=15)
    return Annotation(img, lab, name=f"big{seed}", labels_name=f"lab{seed}")


@pytest.fixture
def sized_dir(tmp_path, tiny_model):
    tiny_model.config.object_diameter = 8.0
    tiny_model.config.training = {"object_diameter_range": [5.0, 12.0]}
    return save_model(tiny_model, tmp_path / "sized")


def test_augment_default_shows_objects_from_0_7_to_1_4_times_their_size():
    assert Augment().scale_range == (0.7, 1.4)
    lab = np.zeros((400, 400), np.int32)
    yy, xx = np.mgrid[:400, :400]
    k = 0
    for cy in range(25, 400, 50):
        for cx in range(25, 400, 50):
            k += 1
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 15**2] = k
    true = np.median(equivalent_diameters(lab))
    pair = TrainPair(np.zeros((1, 400, 400), np.float32), lab)
    sampler = PatchSampler([pair], patch_size=128, augment=Augment(flips=False, intensity=False, noise_std=0), seed=1)
    seen = [np.median(equivalent_diameters(sampler.sample()[1], exclude_border=True)) / true for _ in range(60)]
    assert min(seen) < 0.76 and max(seen) > 1.3  # the old (0.8, 1.25) range never reaches these
    assert 0.68 < min(seen) and max(seen) < 1.43


def test_annotated_diameter_counts_objects_inside_regions():
    lab = np.zeros((100, 100), np.int32)
    lab[10:20, 10:20] = 1  # 10 x 10
    lab[50:90, 50:90] = 2  # 40 x 40
    assert annotated_diameter([(lab, None)]) == pytest.approx(np.median(equivalent_diameters(lab)))
    valid = np.zeros_like(lab, bool)
    valid[:30, :30] = True
    assert annotated_diameter([(lab, valid)]) == pytest.approx(2 * np.sqrt(100 / np.pi))
    assert annotated_diameter([(np.zeros((5, 5), np.int32), None)]) is None


def test_finetune_brings_the_users_objects_to_the_start_models_size(tmp_path, sized_dir):
    ann = _big_blobs()
    valid = np.zeros((160, 160), bool)
    valid[:120, :100] = True
    ann.regions = valid
    user = annotated_diameter([(ann.labels, valid)])
    plan = prepare([ann], out=tmp_path / "m" / "mine", start=sized_dir, settings=FinetuneSettings(epochs=1, **FAST))
    factor = 8.0 / user
    pair = plan.sampler.pairs[0]
    assert pair.labels.shape == (round(160 * factor), round(160 * factor))
    assert pair.image.shape[-2:] == pair.labels.shape and pair.valid.shape == pair.labels.shape
    assert np.median(equivalent_diameters(pair.labels)) == pytest.approx(8.0, rel=0.2)
    assert all(it.labels.shape[0] <= round(120 * factor) + 1 for it in plan.tune_items)
    assert plan.provenance["user_object_diameter"] == pytest.approx(user, abs=0.01)
    assert plan.provenance["rescaled_by"] == pytest.approx(factor)
    saved = load_model(finetune(plan).path).config
    assert saved.object_diameter == 8.0  # the start model's: images were brought to it
    assert saved.training["user_object_diameter"] == pytest.approx(user, abs=0.01)
    assert saved.training["object_diameter_range"] == [5.0, 12.0]


def test_finetune_within_the_band_keeps_the_pairs(tmp_path, sized_dir):
    img, lab = blob_image((64, 64), n=6, seed=0, rmin=4, rmax=4)  # discs of 9 px: 8 x 1.1
    plan = prepare([Annotation(img, lab)], out=tmp_path / "m" / "mine", start=sized_dir,
                   settings=FinetuneSettings(epochs=1, **FAST))
    assert plan.sampler.pairs[0].labels.shape == (64, 64) and plan.provenance["rescaled_by"] == 1.0


def test_from_scratch_records_the_users_object_size(tmp_path):
    ann = _big_blobs()
    plan = prepare([ann], out=tmp_path / "scratch", family="unet", settings=FinetuneSettings(epochs=1, **FAST))
    assert plan.sampler.pairs[0].labels.shape == (160, 160)
    assert plan.model.config.object_diameter == pytest.approx(annotated_diameter([(ann.labels, None)]), abs=0.01)


def test_seen_object_diameter_weights_objects_as_the_sampler_shows_them():
    small = np.zeros((10, 10), np.int32)
    small[2:4, 2:4] = 1
    big = np.zeros((100, 100), np.int32)
    big[10:30, 10:30] = 1
    big[50:70, 50:70] = 2
    d, rng = seen_object_diameter([small, big], [1.0, 1.0], (1.0, 1.0))
    assert d == pytest.approx(2 * np.sqrt(4 / np.pi), abs=0.01)  # the small image's object is seen 100x as often
    assert rng[0] <= d <= rng[1]
    d2, _ = seen_object_diameter([small, big], [0.0001, 1.0], (0.7, 1.4))
    assert d2 == pytest.approx(2 * np.sqrt(400 / np.pi) * np.sqrt(0.98), abs=0.01)
