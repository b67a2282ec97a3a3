import numpy as np
from torch import nn

from seglab import evaluation
from seglab.evaluation import AnnotatedImage, tune_thresholds
from seglab.models.base import Prediction


class _ThresholdModel:
    """Finds every object exactly when its threshold ``t`` is one of the image's good values, else nothing."""

    network = nn.Module()

    def thresholds(self, overrides=None):
        return {"t": 0.0, **(overrides or {})}

    def raw_thresholds(self, th, grid):
        return {}

    def postprocess_iter(self, maps, th, shape=None):
        yield (0, 1)
        labels = maps["labels"] if th["t"] in maps["good"] else np.zeros_like(maps["labels"])
        return Prediction(labels, {})


def _fake_raw(goods):
    def raw_output_iter(model, it, th, run):
        yield None
        return {"labels": it.labels, "good": goods[it.name]}
    return raw_output_iter


def _item(name, good):
    labels = np.zeros((16, 16), dtype=np.int32)
    labels[2:6, 2:6], labels[9:14, 8:12] = 1, 2
    return AnnotatedImage(labels.astype(np.float32), labels, None, name), good


def test_keep_images_move_the_choice_to_thresholds_that_suit_both(monkeypatch):
    user = [_item("u0", {1.0, 3.0}), _item("u1", {1.0, 3.0})]
    keep = [_item("k0", {2.0, 3.0})]
    goods = {it.name: g for it, g in user + keep}
    monkeypatch.setattr(evaluation, "raw_output_iter", _fake_raw(goods))
    grid = {"t": [1.0, 2.0, 3.0]}
    best, ap, trials = tune_thresholds(_ThresholdModel(), [it for it, _ in user], grid)
    assert best == {"t": 1.0} and ap == 1.0  # the first point that is best on the user's images
    best, ap, trials = tune_thresholds(_ThresholdModel(), [it for it, _ in user], grid, keep=[it for it, _ in keep])
    assert best == {"t": 3.0} and ap == 1.0  # best on both; the AP reported is on the user's images
    by_t = {tr["t"]: (tr["ap50"], tr["ap50_keep"]) for tr in trials}
    assert by_t == {0.0: (0.0, 0.0), 1.0: (1.0, 0.0), 2.0: (0.0, 1.0), 3.0: (1.0, 1.0)}


def test_points_that_cost_the_keep_images_more_than_the_tolerance_do_not_compete(monkeypatch):
    # t=0 (current): finds u0 only (AP 0.5 on the user's images) and every keep image (1.0);
    # t=1: finds both user images (1.0) but misses one keep image in ten (0.9): the mean of the
    # two would prefer it, the tolerance of 0.01 refuses it, one of 0.2 accepts it
    user = [_item("u0", {0.0, 1.0}), _item("u1", {1.0})]
    keep = [_item(f"k{i}", {0.0} if i == 0 else {0.0, 1.0}) for i in range(10)]
    goods = {it.name: g for it, g in user + keep}
    monkeypatch.setattr(evaluation, "raw_output_iter", _fake_raw(goods))
    users, keeps = [it for it, _ in user], [it for it, _ in keep]
    best, ap, trials = tune_thresholds(_ThresholdModel(), users, {"t": [1.0]}, keep=keeps)
    assert [(tr["t"], tr["ap50"], tr["ap50_keep"]) for tr in trials] == [(0.0, 0.5, 1.0), (1.0, 1.0, 0.9)]
    assert best == {"t": 0.0} and ap == 0.5
    best, ap, _ = tune_thresholds(_ThresholdModel(), users, {"t": [1.0]}, keep=keeps, keep_tolerance=0.2)
    assert best == {"t": 1.0} and ap == 1.0


def test_crop_keeps_the_channel_axis_where_it_is():
    labels = np.arange(4 * 6, dtype=np.int32).reshape(4, 6)
    first = AnnotatedImage(np.stack([labels * 10, labels * 20]), labels, 0, "c-first")
    last = AnnotatedImage(np.moveaxis(first.image, 0, -1), labels, -1, "c-last")
    grey = AnnotatedImage(labels * 10, labels, None, "grey")
    for item in (first, last, grey):
        c = item.crop(slice(1, 3), slice(2, 5))
        np.testing.assert_array_equal(c.labels, labels[1:3, 2:5])
        assert c.channel_axis == item.channel_axis and c.name == item.name
    np.testing.assert_array_equal(first.crop(slice(1, 3), slice(2, 5)).image, first.image[:, 1:3, 2:5])
    np.testing.assert_array_equal(last.crop(slice(1, 3), slice(2, 5), name="x").image, last.image[1:3, 2:5, :])
    assert grey.crop(slice(0, 1), slice(0, 1), name="x").name == "x"


def test_evaluate_command_passes_batch_size_and_precision_to_the_engine(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import tifffile

    from seglab.cli import main
    from seglab.inference import engine
    from tests_helpers import blob_image

    imgs, labs = tmp_path / "i", tmp_path / "l"
    imgs.mkdir()
    labs.mkdir()
    for k in range(2):
        img, lab = blob_image((64, 80), n=4, seed=k)
        tifffile.imwrite(imgs / f"{k}.tif", img)
        tifffile.imwrite(labs / f"{k}.tif", lab.astype(np.uint16))
    seen, casts = [], []
    real_maps, real_autocast = engine.predict_maps_iter, engine.autocast

    def spy_maps(model, x, **kw):
        seen.append(kw)
        return (yield from real_maps(model, x, **kw))

    def spy_autocast(device, enabled=True):
        casts.append(enabled)
        return real_autocast(device, enabled)

    monkeypatch.setattr(engine, "predict_maps_iter", spy_maps)
    monkeypatch.setattr(engine, "autocast", spy_autocast)
    args = ["evaluate", "-m", str(tiny_model_dir), "--images", str(imgs), "--labels", str(labs), "--json", "-q",
            "--device", "cpu", "--tile-size", "32"]
    assert main(args + ["--no-amp", "--batch-size", "3"]) == 0
    assert len(seen) == 2 and all(kw["batch_size"] == 3 and kw["amp"] is False and kw["tile_size"] == 32 for kw in seen)
    assert casts and not any(casts)
    seen.clear(), casts.clear()
    assert main(args) == 0
    assert all(kw["batch_size"] == 4 and kw["amp"] is True for kw in seen) and all(casts)
    capsys.readouterr()
