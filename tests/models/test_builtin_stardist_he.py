"""The built-in H&E model ``stardist-he``: reads the three RGB channels and segments H&E tissue."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seglab.inference.normalize import model_input
from seglab.models.registry import BUILTIN_DIR, get_model

MONUSEG = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "monuseg-kumar"
#: the MoNuSeg val tile scored below, and floors under the values measured for the shipped weights
VAL_TILE = "TCGA-AR-A1AS-01Z-00-DX1"
AJI_FLOOR = 0.52  # measured 0.590 for the shipped weights (0.593 for the three-phase ones)
AP50_FLOOR = 0.54  # measured 0.656 for the shipped weights (0.618 for the three-phase ones)


@pytest.fixture(scope="module")
def model():
    return get_model("stardist-he")


def _val_tile():
    import tifffile

    if not (MONUSEG / "images" / f"{VAL_TILE}.tif").is_file():
        pytest.skip("../shared/data/monuseg-kumar not available")
    return (tifffile.imread(MONUSEG / "images" / f"{VAL_TILE}.tif"),
            tifffile.imread(MONUSEG / "labels" / f"{VAL_TILE}.tif").astype(np.int32))


def test_config_records_colour_input_licence_size_and_scores():
    cfg = json.loads((BUILTIN_DIR / "stardist-he" / "config.json").read_text())
    assert cfg["name"] == "stardist-he" and cfg["family"] == "stardist" and cfg["input_channels"] == 3
    assert "non-commercial" in cfg["description"]
    assert 5 < cfg["object_diameter"] < 60
    assert "recipe" in cfg["training"] and "MoNuSeg" in cfg["training"]["data"]
    s = cfg["scores"]
    assert "MoNuSeg" in s["dataset"] and 0 < s["aji"] <= 1 and 0 < s["pq_per_image"] <= 1
    assert len(s["per_image"]) == 4
    assert 0 < s["thresholds"]["0.50"]["ap"] <= 1
    assert 0 < s["dsb2018_val_colour"]["thresholds"]["0.50"]["ap"] <= 1
    assert (BUILTIN_DIR / "stardist-he" / "weights.safetensors").stat().st_size < 12 * 2**20


def test_network_takes_three_channels(model):
    first = next(m for m in model.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3


@pytest.mark.data
def test_rgb_is_read_as_colour_not_luma(model):
    image, _ = _val_tile()
    crop = np.ascontiguousarray(image[:256, :256])
    x = model_input(crop, 3, model.config.normalization, channel_axis=-1)
    assert x.shape == (3, 256, 256)
    # the channels arrive as they are (each normalised on its own), not as grey
    assert not np.allclose(x[0], x[2], atol=0.05)
    swapped = x[::-1].copy()
    with torch.no_grad():
        a = model.forward_tiles(torch.from_numpy(x)[None])
        b = model.forward_tiles(torch.from_numpy(swapped)[None])
    # swapping red and blue changes what the network sees: its probability map changes
    assert (a[:, 0] - b[:, 0]).abs().max() > 0.2


@pytest.mark.data
@pytest.mark.slow
def test_scores_on_a_monuseg_val_tile(model):
    from seglab.inference.engine import segment
    from seglab.metrics import evaluate

    image, truth = _val_tile()
    pred = segment(model, image, channel_axis=-1).labels
    m = evaluate([(truth, pred)], thresholds=(0.5,))
    assert m["aji"] > AJI_FLOOR
    assert m["thresholds"]["0.50"]["ap"] > AP50_FLOOR


def test_auto_follows_its_measured_rule(model):
    """Its config's ``auto_rescale`` (measured on its tune set) replaces the grey models' band."""
    from seglab.inference import diameter as dm

    rule = model.config.auto_rescale
    assert rule["tolerance"][0] > dm.AUTO_TOLERANCE[0] and "bench_auto_rule" in rule["measured"]
    assert dm.tolerated_range(model) == tuple(rule["tolerance"]) and dm.model_aim(model) == tuple(rule["aim"])


@pytest.mark.slow
def test_tissue_at_20x_is_enlarged_by_auto(model):
    """A 40x ``val`` tile's corner resized 0.5x (as scanned at 20x): ``auto`` enlarges it (the
    default band left it alone) and finds more nuclei than the model at 20x without rescaling
    (measured: factor 1.55, AP@0.5 0.712 -> 0.782)."""
    from seglab.inference.engine import segment
    from seglab.inference.rescale import resize_image, resize_labels
    from seglab.metrics import evaluate

    image, truth = _val_tile()
    chw = np.moveaxis(image[:600, :600], -1, 0).astype(np.float32)
    small, labels = np.moveaxis(resize_image(chw, (300, 300)), 0, -1), resize_labels(truth[:600, :600], (300, 300))
    auto = segment(model, small, channel_axis=-1)
    plain = segment(model, small, channel_axis=-1, diameter=None)
    assert 1.3 < auto.scale_factor < 2.0 and auto.labels.shape == labels.shape
    ap = [evaluate([(labels, s.labels)], thresholds=(0.5,))["thresholds"]["0.50"]["ap"] for s in (auto, plain)]
    assert ap[0] > ap[1] + 0.03


@pytest.mark.data
@pytest.mark.slow
def test_black_padding_beside_the_tissue_is_no_image(model, tmp_path):
    """A val tile at 20x beside as much black (a scanner's out-of-scan area): the black is filled
    with the glass colour (``normalization["fill_black"]``), so the tissue scores as it does alone,
    in memory and out of core. Left black it pulled the 1st percentile to zero and fooled ``auto``
    (MoNuSeg val: PQ 0.387 against 0.540 alone)."""
    from scipy import ndimage as ndi

    from seglab.inference.engine import segment
    from seglab.inference.lazy import segment_lazy
    from seglab.metrics import evaluate

    assert model.config.normalization["fill_black"] is True
    image, truth = _val_tile()
    half = np.stack([ndi.zoom(image[..., c], 0.5, order=1) for c in range(3)], -1)
    labels = truth[::2, ::2]
    padded = np.zeros((500, 1000, 3), np.uint8)
    padded[:, 500:] = half
    by_itself = segment(model, half)
    alone = evaluate([(labels, by_itself.labels)], thresholds=(0.5,))
    # auto is not fooled by the black (its estimate within 10 %; the AP of a few tenths of a pixel
    # of estimate apart varies by +-0.02, so the tissue is compared at the same size)
    assert segment(model, padded).diameter == pytest.approx(by_itself.diameter, rel=0.1)
    seg = segment(model, padded, diameter=by_itself.diameter)
    beside = evaluate([(labels, seg.labels[:, 500:])], thresholds=(0.5,))
    assert not seg.labels[:, :490].any()  # nothing found in the black
    assert beside["thresholds"]["0.50"]["ap"] > alone["thresholds"]["0.50"]["ap"] - 0.03
    lazy = segment_lazy(model, padded, tmp_path / "out.zarr", axes="YXS", diameter=seg.diameter)
    stored = np.asarray(lazy.labels[:])
    lazy_ap = evaluate([(labels, stored[:, 500:])], thresholds=(0.5,))["thresholds"]["0.50"]["ap"]
    assert lazy_ap > alone["thresholds"]["0.50"]["ap"] - 0.03


def test_black_padding_is_found_only_where_every_channel_is_black():
    from seglab.inference.normalize import FILL_MARGIN, find_black_padding

    rng = np.random.default_rng(0)
    tissue = rng.uniform(40, 250, (3, 64, 64)).astype(np.float32)
    assert find_black_padding(tissue) is None
    dark_in_one = tissue.copy()
    dark_in_one[0, :10] = 0  # black in one channel only: a colour, not padding
    assert find_black_padding(dark_in_one) is None
    padded = tissue.copy()
    padded[:, :, :20] = 0
    pad = find_black_padding(padded)
    assert pad is not None and pad.level == pytest.approx(0.04 * np.percentile(padded, 99.8))
    filled = pad.fill(padded)
    # the padding and the FILL_MARGIN px beside it (a rotation's interpolated edge) take the glass colour
    m = 20 + FILL_MARGIN
    assert (filled[:, :, :m] == pad.glass[:, None, None]).all() and (filled[:, :, m:] == tissue[:, :, m:]).all()
    assert (padded[:, :, :20] == 0).all()  # the input is left as it was
    assert find_black_padding(np.zeros((3, 8, 8), np.float32)) is None  # nothing but black
    # only models that say so fill it
    from seglab.inference.normalize import model_input

    rgb = np.moveaxis(padded, 0, -1)
    filled_input = model_input(rgb, 3, {"low": 1.0, "high": 99.8, "fill_black": True}, channel_axis=-1)
    plain_input = model_input(rgb, 3, {"low": 1.0, "high": 99.8}, channel_axis=-1)
    assert filled_input[:, :, :20].min() > 0.5 and plain_input[:, :, :20].max() <= 0.0  # black: the bottom
