import numpy as np
import pytest
import torch

from seglab.errors import SeglabError
from seglab.inference.engine import run_to_end
from seglab.models.storage import load_model
from seglab.training import finetune as ft
from seglab.training.finetune import Annotation, FinetuneSettings, finetune, finetune_iter, prepare
from tests_helpers import blob_image

FAST = dict(patch_size=32, batch_size=2, device="cpu")


def _ann(seed=0, shape=(64, 64), n=6, **kw):
    img, lab = blob_image(shape, n=n, seed=seed, rmin=4, rmax=7)
    return Annotation(img, lab, name=f"img{seed}", labels_name=f"lab{seed}", **kw)


def _prepare(tmp_path, anns, start, **kw):
    kw.setdefault("settings", FinetuneSettings(epochs=1, **FAST))
    return prepare(anns, out=tmp_path / "models" / "mine", start=start, **kw)


def test_finetune_saves_a_model_that_loads_and_segments(tmp_path, tiny_model_dir):
    plan = _prepare(tmp_path, [_ann(0), _ann(1, regions=[(0, 0, 40, 40)])], tiny_model_dir,
                    settings=FinetuneSettings(epochs=2, **FAST))
    events = []
    result = run_to_end(finetune_iter(plan), events.append)
    assert [e.stage for e in events][-2:] == ["tune", "save"]
    per_epoch = int(np.ceil((64 * 64 + 40 * 40) / (2 * 32 * 32)))
    assert result.steps == 2 * per_epoch and not result.stopped
    model = load_model(result.path)
    assert model.config.name == "mine" and result.path == tmp_path / "models" / "mine"
    tr = model.config.training
    assert tr["parent"]["name"] == "tiny-unet" and tr["parent"]["path"] == str(tiny_model_dir) and tr["kind"] == "fine-tuned"
    assert [p["image"] for p in tr["pairs"]] == ["img0", "img1"]
    assert tr["pairs"][1]["annotated_pixels"] == 40 * 40 and tr["pairs"][0]["labels_shape"] == [64, 64]
    assert tr["settings"]["epochs"] == 2 and tr["steps"] == result.steps
    assert "ap50_tuned_thresholds" in model.config.scores
    labels = model.predict(_ann(3).image, device="cpu").labels
    assert labels.shape == (64, 64)


def test_a_size_model_is_not_kept_once_training_changed_the_encoder(tmp_path, tiny_model):
    """The size model reads the encoder it was fitted on; one that reads the fine-tuned encoder badly
    (here random) is dropped, and "auto" uses its object measures alone (the config says why)."""
    from seglab.inference.size_model import SIZE_MODEL_FILE, SizeModel, n_features
    from seglab.models.storage import save_model

    n = n_features(tiny_model.network)
    tiny_model.config.object_diameter = 11.0  # about the blobs' size
    rng = np.random.default_rng(0)
    tiny_model.size_model = SizeModel(rng.normal(size=n), np.ones(n), rng.normal(size=(n, 2)), np.zeros(2),
                                      np.ones(2), 0.0)
    start = save_model(tiny_model, tmp_path / "start")
    assert load_model(start).size_model is not None
    result = finetune(_prepare(tmp_path, [_ann(0)], start))
    assert result.steps > 0 and not (result.path / SIZE_MODEL_FILE).exists()
    assert load_model(result.path).size_model is None
    check = load_model(result.path).config.training["size_model"]
    assert not check["kept"] and "not kept" in check["reason"]
    assert check["median_abs_log_error_after_training"] > check["keep_if_at_most"] and check["samples"] > 0


def test_a_size_model_that_still_reads_the_fine_tuned_encoder_is_kept(tmp_path, tiny_model, monkeypatch):
    """The check measures the size model on the fine-tuned encoder; within the bound it is kept (and
    saved with the model), beyond it dropped."""
    from seglab.inference.size_model import SIZE_MODEL_FILE, SizeModel, n_features
    from seglab.models.storage import save_model

    n = n_features(tiny_model.network)
    tiny_model.config.object_diameter = 11.0  # about the blobs' size
    # predicts log ratio 0 whatever it reads: off by |log(size / object_diameter)| at each factor
    tiny_model.size_model = SizeModel(np.zeros(n), np.ones(n), np.zeros((n, 2)), np.zeros(2), np.zeros(2), 0.0)
    start = save_model(tiny_model, tmp_path / "start")
    for bound, kept in ((10.0, True), (0.0, False)):
        monkeypatch.setattr(ft, "SIZE_KEEP_ERROR", bound)
        result = finetune(_prepare(tmp_path, [_ann(0, n=8), _ann(1, n=8)], start, overwrite=True))
        check = load_model(result.path).config.training["size_model"]
        assert check["kept"] is kept and check["samples"] >= 6  # 2 pairs x 3 factors at least
        assert (result.path / SIZE_MODEL_FILE).exists() is kept


def test_from_scratch_with_a_family(tmp_path):
    plan = prepare([_ann(0)], out=tmp_path / "scratch", family="unet",
                   settings=FinetuneSettings(epochs=1, **FAST))
    result = finetune(plan)
    cfg = load_model(result.path).config
    assert cfg.family == "unet" and cfg.training["parent"] is None and cfg.training["kind"] == "from scratch"


def test_rectangles_become_the_valid_mask(tmp_path, tiny_model_dir):
    plan = _prepare(tmp_path, [_ann(0, regions=[(-5.0, 10.2, 20.0, 30.0), (50, 50, 99, 99)])], tiny_model_dir)
    valid = plan.sampler.pairs[0].valid
    expected = np.zeros((64, 64), bool)
    expected[0:20, 10:30] = True  # clipped to the image, edges rounded outwards
    expected[50:64, 50:64] = True
    assert np.array_equal(valid, expected)
    assert _prepare(tmp_path, [_ann(0)], tiny_model_dir).sampler.pairs[0].valid is None


def _loss(plan, model):
    torch.manual_seed(0)
    x, targets, valid = plan.sampler.batch(2, model)
    with torch.no_grad():
        out = model.network(x)
    return x, model.loss(out, targets, valid)[0].item()


def test_pixels_outside_rectangles_do_not_change_the_loss(tmp_path, tiny_model_dir, tiny_model):
    img, lab = blob_image((64, 64), n=6, seed=2, rmin=4, rmax=7)
    box = [(0, 0, 32, 32)]
    assert lab[:32, :32].any()
    outside = lab.copy()
    outside[44:60, 44:60] = 99  # a new object and changed pixels, all outside the rectangle
    outside[lab == lab[lab > 0][-1]] = 0
    inside = lab.copy()
    inside[inside == inside[:32, :32].max()] = 0  # an object removed inside the rectangle
    settings = FinetuneSettings(epochs=1, augment=False, patch_size=64, batch_size=2, device="cpu")

    def loss_with(labels, regions):
        plan = _prepare(tmp_path, [Annotation(img, labels, regions=regions)], tiny_model_dir, settings=settings)
        return _loss(plan, tiny_model)

    (x0, base), (x1, changed_outside) = loss_with(lab, box), loss_with(outside, box)
    assert torch.equal(x0, x1)
    assert changed_outside == base
    assert loss_with(inside, box)[1] != base
    assert loss_with(outside, None)[1] != loss_with(lab, None)[1]  # without rectangles every pixel counts


def test_stop_keeps_and_saves_the_best_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    scores = iter([0.0, 0.9, 0.1, 0.2, 0.3, 0.4, 0.5])  # start model, then every 2 steps
    snapshots = {}

    def fake_ap50(model, items, **kw):
        s = next(scores)
        snapshots[s] = {k: v.clone() for k, v in model.network.state_dict().items()}
        return s

    monkeypatch.setattr(ft, "ap50", fake_ap50)
    settings = FinetuneSettings(time_budget=600, validate_every=2, **FAST)
    plan = _prepare(tmp_path, [_ann(0)], tiny_model_dir, settings=settings, validation=[_ann(5)])
    stop = ft.threading.Event()
    result = run_to_end(finetune_iter(plan, stop), lambda ev: ev.train and ev.train.step >= 6 and stop.set())
    assert result.stopped and result.steps == 6
    saved = load_model(result.path)
    for k, v in saved.network.state_dict().items():
        assert torch.equal(v, snapshots[0.9][k].to(v.dtype)), k
    assert saved.config.training["stopped_early"] is True
    assert saved.config.scores["ap50_best_checkpoint"] == 0.9 and saved.config.scores["ap50_before"] == 0.0


def test_interrupting_leaves_no_model_folder(tmp_path, tiny_model_dir):
    plan = _prepare(tmp_path, [_ann(0)], tiny_model_dir, settings=FinetuneSettings(time_budget=600, **FAST))
    gen = finetune_iter(plan)
    for ev in gen:
        if ev.train is not None and ev.train.step >= 2:
            break
    gen.close()  # the process going away mid-training
    assert not (tmp_path / "models" / "mine").exists()
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.startswith(".")] == []


def test_stop_before_the_first_step_saves_nothing(tmp_path, tiny_model_dir):
    plan = _prepare(tmp_path, [_ann(0)], tiny_model_dir, settings=FinetuneSettings(time_budget=600, **FAST))
    stop = ft.threading.Event()
    stop.set()
    events = []
    result = run_to_end(finetune_iter(plan, stop), events.append)
    assert result.path is None and result.steps == 0 and not events
    assert not (tmp_path / "models" / "mine").exists()


@pytest.mark.parametrize("case,msg", [
    ("none", "no annotations: add at least one pair"),
    ("empty", "no annotations: the labels hold no objects"),
    ("empty_in_rect", "no objects inside the rectangles"),
    ("shape", "differ in shape"),
    ("float", "must hold integer object ids"),
    ("single", "only one object is annotated"),
    ("outside", "rectangle 2 of pair 1 ('img0' / 'lab0') (100, 100)-(120, 130) lies outside the image (64 x 64"),
    ("budget", "too short for one training step"),
    ("epochs", "epochs must be at least 1"),
    ("both", "either a time budget or a number of epochs"),
    ("lr", "learning rate must be a positive number"),
    ("unwritable", "cannot write models to"),
    ("exists", "a model named 'mine' already exists"),
    ("builtin", "'unet-nuclei' is the name of a built-in model"),
    ("badname", "is not usable"),
    ("family", "unknown model family 'nope'"),
    ("nostart", "start from a model or from scratch"),
    ("val_empty", "the validation labels hold no objects"),
    ("stack", "training takes 2D images"),
    ("renamed", "the model's name is its folder's name: 'other' would be saved as 'mine'"),
    ("not_a_model", "is a folder but not a model (no config.json)"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, tiny_model_dir, case, msg):
    a = _ann(0)
    anns, kw = [a], {}
    out = tmp_path / "models" / "mine"
    if case == "none":
        anns = []
    elif case == "empty":
        a.labels = np.zeros_like(a.labels)
    elif case == "empty_in_rect":
        a.labels[:10, :10] = 0
        a.regions = [(0, 0, 10, 10)]
    elif case == "shape":
        a.labels = a.labels[:, :60]
    elif case == "float":
        a.labels = a.labels.astype(np.float32) + 0.5
    elif case == "single":
        a.labels = (a.labels == 1).astype(np.int32)
    elif case == "outside":
        a.regions = [(0, 0, 10, 10), (100, 100, 120, 130)]
    elif case == "budget":
        kw["settings"] = FinetuneSettings(time_budget=0.01)
    elif case == "epochs":
        kw["settings"] = FinetuneSettings(epochs=0)
    elif case == "both":
        kw["settings"] = FinetuneSettings(epochs=1, time_budget=10)
    elif case == "lr":
        kw["settings"] = FinetuneSettings(epochs=1, lr=0)
    elif case == "unwritable":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "mine"
    elif case == "exists":
        out.mkdir(parents=True)
    elif case == "builtin":
        out = tmp_path / "models" / "unet-nuclei"
    elif case == "badname":
        kw["name"] = "../x"
    elif case == "family":
        kw.update(start=None, family="nope")
    elif case == "nostart":
        kw.update(start=None)
    elif case == "val_empty":
        v = _ann(1)
        v.labels = np.zeros_like(v.labels)
        kw["validation"] = [v]
    elif case == "stack":
        a.image, a.labels = np.stack([a.image] * 2), np.stack([a.labels] * 2)
    elif case == "renamed":
        kw["name"] = "other"
    elif case == "not_a_model":  # -o given a folder of other files, with overwriting allowed
        (out / "sub").mkdir(parents=True)
        (out / "notes.txt").write_text("precious")
        kw["overwrite"] = True
    kw.setdefault("start", tiny_model_dir)
    kw.setdefault("settings", FinetuneSettings(epochs=1, **FAST))
    with pytest.raises(SeglabError) as err:
        prepare(anns, out=out, **kw)
    assert msg in str(err.value)
    assert not out.exists() or case in ("exists", "not_a_model")
    if case == "not_a_model":
        assert (out / "notes.txt").read_text() == "precious" and (out / "sub").is_dir()


def test_save_model_never_replaces_a_folder_that_is_not_a_model(tmp_path, tiny_model):
    from seglab.models.storage import save_model

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "table.csv").write_text("1,2")
    with pytest.raises(SeglabError, match="not a model"):
        save_model(tiny_model, folder, overwrite=True)
    assert (folder / "table.csv").read_text() == "1,2"
    (folder / "table.csv").unlink()  # an empty folder may become the model
    save_model(tiny_model, folder, overwrite=True)
    save_model(tiny_model, folder, overwrite=True)  # and a model folder be replaced
    assert load_model(folder).config.name == tiny_model.config.name


def test_ids_beyond_int32_are_numbered_not_wrapped(tmp_path, tiny_model_dir):
    """uint32 labels with ids of billions (and int64 beyond 2**32) train as the same objects."""
    a = _ann(0)
    ids = np.unique(a.labels)[1:]
    for offset, dtype in ((3_000_000_000, np.uint32), (2**32, np.int64)):
        big = np.where(a.labels > 0, a.labels.astype(np.int64) + offset, 0).astype(dtype)
        big[a.labels == ids[0]] = ids[0]  # id k and k + 2**32 both present: they must stay apart
        checked = ft._check_labels(big, "labels")
        assert checked.dtype == np.int32 and checked.min() == 0
        assert np.unique(checked).size == ids.size + 1
        np.testing.assert_array_equal(checked > 0, a.labels > 0)
    plan = _prepare(tmp_path, [Annotation(a.image, big, name="img0", labels_name="big")], tiny_model_dir)
    assert plan.provenance["pairs"][0]["objects"] == ids.size


def test_a_pair_without_objects_beside_annotated_ones_is_named(tmp_path, tiny_model_dir):
    from seglab.errors import SeglabWarning

    empty = _ann(1)
    empty.labels = np.zeros_like(empty.labels)
    with pytest.warns(SeglabWarning, match=r"pair 2 \('img1' / 'lab1'\) has no objects: all of it is trained as background"):
        _prepare(tmp_path, [_ann(0), empty], tiny_model_dir)


def test_existing_name_is_replaced_only_when_asked(tmp_path, tiny_model_dir):
    first = finetune(_prepare(tmp_path, [_ann(0)], tiny_model_dir))
    before = (first.path / "config.json").read_text()
    with pytest.raises(SeglabError, match="already exists"):
        _prepare(tmp_path, [_ann(1)], tiny_model_dir)
    assert (first.path / "config.json").read_text() == before
    second = finetune(_prepare(tmp_path, [_ann(1)], tiny_model_dir, overwrite=True))
    assert load_model(second.path).config.training["pairs"][0]["image"] == "img1"


def test_region_mask_instead_of_rectangles(tmp_path, tiny_model_dir):
    mask = np.zeros((64, 64), bool)
    mask[5:30, 5:50] = True
    plan = _prepare(tmp_path, [_ann(0, regions=mask)], tiny_model_dir)
    assert np.array_equal(plan.sampler.pairs[0].valid, mask)
    assert all(it.labels.shape == (25, 45) for it in plan.tune_items)
    with pytest.raises(SeglabError, match="region mask of pair 1 .* has shape"):
        _prepare(tmp_path, [_ann(0, regions=mask[:10])], tiny_model_dir)


def test_freeze_levels_keeps_the_first_encoder_levels_fixed(tmp_path, tiny_model_dir):
    plan = _prepare(tmp_path, [_ann(0)], tiny_model_dir,
                    settings=FinetuneSettings(epochs=3, freeze_levels=1, **FAST))
    assert plan.provenance["frozen_levels"] == ["encoders.0."]
    net = plan.model.network
    before = {k: v.detach().clone() for k, v in net.state_dict().items()
              if v.is_floating_point() and "running" not in k}
    result = finetune(plan)
    after = result.model.network.state_dict()
    fixed = [k for k in before if k.startswith("encoders.0.")]
    trained = [k for k in before if k.startswith("encoders.1.")]
    assert fixed and trained
    assert all(torch.equal(after[k], before[k]) for k in fixed)
    assert any(not torch.equal(after[k], before[k]) for k in trained)
    # more levels than the encoder has: the whole encoder; 0: every weight trains
    whole = _prepare(tmp_path, [_ann(0)], tiny_model_dir, overwrite=True,
                     settings=FinetuneSettings(epochs=1, freeze_levels=99, **FAST))
    assert whole.provenance["frozen_levels"] == ["encoders.0.", "encoders.1.", "encoders.2."]
    assert not any(p.requires_grad for n, p in whole.model.network.named_parameters() if n.startswith("encoders."))
    assert any(p.requires_grad for p in whole.model.network.parameters())
    none = _prepare(tmp_path, [_ann(0)], tiny_model_dir, overwrite=True,
                    settings=FinetuneSettings(epochs=1, freeze_levels=0, **FAST))
    assert none.provenance["frozen_levels"] == []
    assert all(p.requires_grad for p in none.model.network.parameters())
    # from scratch nothing is fixed, whatever the setting
    scratch = prepare([_ann(0)], out=tmp_path / "scratch", family="unet",
                      settings=FinetuneSettings(epochs=1, freeze_levels=2, **FAST))
    assert scratch.provenance["frozen_levels"] == []
    assert all(p.requires_grad for p in scratch.model.network.parameters())


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_freeze_levels_are_refused(bad):
    with pytest.raises(SeglabError, match="fixed encoder levels"):
        FinetuneSettings(epochs=1, freeze_levels=bad).check()


def test_learning_rate_defaults_to_the_familys(tmp_path, tiny_model_dir):
    plan = _prepare(tmp_path, [_ann(0)], tiny_model_dir)
    assert plan.train.lr == plan.model.finetune_lr == 1e-3  # the U-Net's
    assert plan.provenance["settings"]["lr"] == 1e-3
    star = prepare([_ann(0)], out=tmp_path / "star", family="stardist", settings=FinetuneSettings(epochs=1, **FAST))
    assert star.train.lr == 3e-4
    given = _prepare(tmp_path, [_ann(0)], tiny_model_dir, overwrite=True,
                     settings=FinetuneSettings(epochs=1, lr=5e-5, **FAST))
    assert given.train.lr == given.provenance["settings"]["lr"] == 5e-5


def test_a_time_budget_covers_tuning_and_saving(tmp_path, tiny_model_dir):
    """The whole run (scoring, measuring the tuning, training, tuning, saving) fits the budget;
    tuning reports its own progress."""
    import time

    budget = 8.0
    anns = [_ann(s, shape=(96, 96), n=10) for s in range(2)]
    plan = _prepare(tmp_path, anns, tiny_model_dir, settings=FinetuneSettings(time_budget=budget, **FAST),
                    validation=[_ann(7, shape=(96, 96), n=10)])
    events = []
    t = time.perf_counter()
    result = run_to_end(finetune_iter(plan), events.append)
    took = time.perf_counter() - t
    assert result.path is not None and took < budget + 2.0, took
    tune = [e for e in events if e.stage == "tune"]
    assert len(tune) > 3 and tune[-1].done == tune[-1].total > 0
    assert all(e.fraction == e.done / e.total for e in tune)
    assert result.scores["tuning"]["points_tried"] >= 1 or "skipped" in result.scores["tuning"]
    assert plan.train.time_budget == budget  # the plan is unchanged; the run reserved out of it


def test_tuning_reserve_is_capped_and_replay_crops_trimmed(tiny_model):
    from seglab.evaluation import AnnotatedImage

    items = [AnnotatedImage(np.zeros((64, 64)), np.zeros((64, 64), int), name="u")]
    keep = [AnnotatedImage(np.zeros((128, 128)), np.zeros((128, 128), int), name=f"k{i}") for i in range(40)]
    cheap = ft.plan_tuning(tiny_model, items, keep, ft.TuningCost(1e-9, 1e-9, 1e-6, 1e-6), budget=30.0)
    assert cheap.keep == keep and not cheap.skip and 0 < cheap.reserve < 0.1
    dear = ft.plan_tuning(tiny_model, items, keep, ft.TuningCost(1e-5, 1e-6, 0.0, 0.0), budget=30.0)
    assert dear.reserve == ft.TUNE_SHARE * 30.0 and not dear.skip
    assert 4 <= len(dear.keep) < len(keep) and dear.keep[0] is keep[0]
    # a per-image cost (Mask R-CNN's heads) counts even for small images; too dear: no tuning
    per_image = ft.plan_tuning(tiny_model, items, keep, ft.TuningCost(0.0, 0.0, 3.0, 0.1), budget=30.0)
    assert per_image.skip and per_image.reserve == 0.0 and per_image.estimate > ft.TUNE_SHARE * 30.0


def test_stop_during_tuning_ends_it_and_keeps_the_thresholds(tmp_path, tiny_model_dir):
    import time

    plan = _prepare(tmp_path, [_ann(0, shape=(96, 96), n=10)], tiny_model_dir,
                    settings=FinetuneSettings(epochs=1, **FAST))
    before = dict(plan.model.config.thresholds)
    stop = ft.threading.Event()
    stopped_at = []

    def on_event(ev):
        if ev.stage == "tune" and ev.done > 0 and not stop.is_set():
            stop.set()
            stopped_at.append(time.perf_counter())

    events = []
    result = run_to_end(finetune_iter(plan, stop), lambda ev: (events.append(ev), on_event(ev)))
    assert stopped_at and time.perf_counter() - stopped_at[0] < 2.0
    tune = [e for e in events if e.stage == "tune"]
    assert tune[-1].done < tune[-1].total  # it did not run to the end
    assert result.path is not None and result.stopped and result.scores.get("tuning_stopped") is True
    saved = load_model(result.path)
    assert saved.config.thresholds == before and "ap50_tuned_thresholds" not in saved.config.scores


def test_noisy_pairs_are_smoothed_as_the_start_model_smooths_them_in_inference(tmp_path, tiny_model):
    """A start model with a low-light rule: the user's noisy pair reaches training as segment()
    would give it to the model (smoothed); the rule carries over to the saved model."""
    from seglab.inference.denoise import prepared_plane
    from seglab.models.storage import save_model

    tiny_model.config.denoise = {"steps": [[0.1, 1.0]]}
    start = save_model(tiny_model, tmp_path / "noisy-start")
    img, lab = blob_image((96, 96), n=8, seed=4, rmin=6, rmax=9)
    noisy = np.random.default_rng(0).poisson(img / img.max() * 8).astype(np.uint16)
    plan = _prepare(tmp_path, [Annotation(noisy, lab, name="low-light")], start)
    ref, smoothing = prepared_plane(plan.model.config, noisy, "auto")
    assert smoothing.sigma == 1.0
    np.testing.assert_array_equal(plan.sampler.pairs[0].image, ref)
    assert plan.model.config.denoise == {"steps": [[0.1, 1.0]]}
