import csv

import numpy as np
import pytest
import tifffile

from seglab.datasets import image_kind
from seglab.errors import SeglabError
from seglab.models.registry import ModelRegistry
from seglab.training.finetune import Annotation, FinetuneSettings, prepare
from seglab.training.replay import build_replay_set, load_replay_set, replay_names
from tests_helpers import blob_image

FAST = dict(patch_size=32, batch_size=2, device="cpu")


def _dsb_folder(root, specs):
    """A DSB2018-style folder: specs are (id, split, kind) with kind 'dark', 'bright' or 'colour'."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rows = []
    for i, (name, split, kind) in enumerate(specs):
        img, lab = blob_image((80, 96), n=5, seed=i, rmin=4, rmax=7)
        img = (img / img.max() * 200).astype(np.uint8)
        if kind == "bright":
            img = 255 - img
        if kind == "colour":
            img = np.stack([img, img // 2, 255 - img], axis=-1)
        tifffile.imwrite(root / "images" / f"{name}.tif", img)
        tifffile.imwrite(root / "labels" / f"{name}.tif", lab.astype(np.uint16))
        rows.append({"id": name, "split": split, "height": 80, "width": 96,
                     "channels": 3 if kind == "colour" else 1, "objects": int(lab.max())})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_build_takes_the_asked_number_per_kind_from_the_split_only(tmp_path):
    specs = [(f"d{i}", "train", "dark") for i in range(5)] + [(f"b{i}", "train", "bright") for i in range(3)]
    specs += [(f"c{i}", "train", "colour") for i in range(3)] + [(f"v{i}", "val", "dark") for i in range(4)]
    _dsb_folder(tmp_path / "dsb", specs)
    counts = {"grey, dark background": 4, "grey, bright background": 2, "colour (stained)": 1}
    ids = build_replay_set(tmp_path / "dsb", tmp_path / "replay", counts=counts, size=64)
    assert len(ids) == 7 and not any(i.startswith("v") for i in ids)
    kinds = [i[0] for i in ids]
    assert kinds.count("d") == 4 and kinds.count("b") == 2 and kinds.count("c") == 1
    for i in ids:
        img = tifffile.imread(tmp_path / "replay" / "images" / f"{i}.tif")
        lab = tifffile.imread(tmp_path / "replay" / "labels" / f"{i}.tif")
        assert lab.shape == (64, 64) and img.shape[:2] == (64, 64) and lab.dtype == np.uint16
        assert lab.max() == len(np.unique(lab)) - 1  # objects numbered 1..n after cropping


def test_shipped_set_covers_every_kind():
    assert "dsb2018-train" in replay_names()
    items = load_replay_set("dsb2018-train")
    assert len(items) >= 30
    kinds = {image_kind(it) for it in items}
    assert kinds == {"grey, dark background", "grey, bright background", "colour (stained)"}
    assert all(it.labels.max() > 0 for it in items)


def test_unknown_set_is_a_clear_error():
    with pytest.raises(SeglabError, match="unknown replay set"):
        load_replay_set("no-such-set")


@pytest.fixture
def replaying_model_dir(tmp_path, tiny_model):
    from seglab.models.storage import save_model

    tiny_model.config.training = {"replay_set": "dsb2018-train"}
    return save_model(tiny_model, tmp_path / "tiny-replaying")


def _ann(seed=0):
    img, lab = blob_image((64, 64), n=6, seed=seed, rmin=4, rmax=7)
    return Annotation(img, lab, name=f"img{seed}")


def test_plan_mixes_the_start_models_replay_set_at_the_asked_share(tmp_path, replaying_model_dir):
    settings = FinetuneSettings(epochs=1, replay=0.25, **FAST)
    plan = prepare([_ann(0), _ann(1)], out=tmp_path / "m", start=replaying_model_dir, settings=settings,
                   registry=ModelRegistry())
    pairs = plan.sampler.pairs
    replay = [p for p in pairs if p.name.startswith("replay:")]
    assert len(replay) == len(load_replay_set("dsb2018-train")) and len(pairs) == len(replay) + 2
    share = plan.sampler._p[[p.name.startswith("replay:") for p in pairs]].sum()
    assert share == pytest.approx(0.25)
    assert plan.provenance["replay"] == {"set": "dsb2018-train", "share": 0.25, "crops": len(replay)}
    assert plan.provenance["replay_set"] == "dsb2018-train"  # a model fine-tuned from this one replays too
    # an epoch still covers the user's annotated pixels once: more steps when a quarter are replay
    no_replay = prepare([_ann(0), _ann(1)], out=tmp_path / "m2", start=replaying_model_dir,
                        settings=FinetuneSettings(epochs=1, replay=0.0, **FAST), registry=ModelRegistry())
    assert plan.train.steps == pytest.approx(no_replay.train.steps / 0.75, abs=1)
    assert all(not p.name.startswith("replay:") for p in no_replay.sampler.pairs)


def test_no_replay_from_scratch_or_without_a_set(tmp_path, tiny_model_dir):
    plan = prepare([_ann(0)], out=tmp_path / "a", start=tiny_model_dir, settings=FinetuneSettings(epochs=1, **FAST))
    assert plan.provenance["replay"] is None and len(plan.sampler.pairs) == 1
    plan = prepare([_ann(0)], out=tmp_path / "b", family="unet", settings=FinetuneSettings(epochs=1, **FAST))
    assert plan.provenance["replay"] is None and len(plan.sampler.pairs) == 1


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan")])
def test_bad_replay_share_is_refused(share):
    with pytest.raises(SeglabError, match="replay share"):
        FinetuneSettings(epochs=1, replay=share).check()


#: built-ins without a shipped replay set (fine-tuning them replays nothing): stardist-he, whose
#: H&E training data (MoNuSeg, CC BY-NC-SA) is not shipped and is unlike the DSB2018 set
NO_REPLAY = {"stardist-he"}


def test_builtins_name_the_shipped_set():
    reg = ModelRegistry()
    for info in reg.list():
        if info.source == "builtin":
            expected = None if info.name in NO_REPLAY else "dsb2018-train"
            assert reg.load(info.path).config.training.get("replay_set") == expected


def test_thresholds_tuned_without_validation_also_suit_the_replay_crops(tmp_path, replaying_model_dir):
    from seglab.training.finetune import finetune

    plan = prepare([_ann(0), _ann(1)], out=tmp_path / "m", start=replaying_model_dir,
                   settings=FinetuneSettings(epochs=1, **FAST), registry=ModelRegistry())
    plan.replay_items = plan.replay_items[:3]  # a quick tuning: the test checks the wiring, not the choice
    result = finetune(plan)
    assert result.scores["thresholds_tuned_on"] == "training images (regions), AP@0.5 on the replay crops kept within 0.01"
    assert result.model.config.training["replay_set"] == "dsb2018-train"


def test_a_start_model_naming_an_unknown_set_says_how_to_go_on(tmp_path, tiny_model):
    from seglab.models.storage import save_model

    tiny_model.config.training = {"replay_set": "from-a-newer-version"}
    folder = save_model(tiny_model, tmp_path / "odd")
    with pytest.raises(SeglabError, match="unknown replay set 'from-a-newer-version'.*replay share to 0"):
        prepare([_ann(0)], out=tmp_path / "m", start=folder, settings=FinetuneSettings(epochs=1, **FAST))
    plan = prepare([_ann(0)], out=tmp_path / "m", start=folder, settings=FinetuneSettings(epochs=1, replay=0, **FAST))
    assert plan.provenance["replay"] is None
