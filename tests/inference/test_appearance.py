"""Telling stained brightfield from fluorescence and grey stored as RGB."""

import warnings

import numpy as np
import pytest
import zarr

from seglab.datasets import image_kind, load_split
from seglab.errors import SeglabError, SeglabWarning
from seglab.inference.appearance import colour_model_note, rgb_appearance
from seglab.inference.engine import segment
from seglab.inference.lazy import segment_lazy
from seglab.models.config import ModelConfig
from seglab.samples import load_sample
from tests.conftest import shared_dsb_or_skip


@pytest.fixture(scope="module")
def samples():
    stained, _ = load_sample("stained")
    fluo, _ = load_sample("fluorescence")
    bright, _ = load_sample("brightfield")
    return stained, fluo, bright


def _rgb(*channels):
    return np.stack(channels, -1)


def test_stained_sample_is_stained_in_any_dtype(samples):
    stained, _, _ = samples
    for data in (stained, stained.astype(np.uint16) * 257, stained.astype(np.float32) / 255):
        app = rgb_appearance(data)
        assert app.kind == "stained" and app.stained, app
        assert app.signal_channels == (0, 1, 2)
    assert rgb_appearance(np.concatenate([stained, np.full(stained.shape[:2] + (1,), 255, np.uint8)], -1)).stained
    assert "stained brightfield" in rgb_appearance(stained).describe()
    # tissue beside a scanner's black padding (as much black as tissue) is still stained tissue
    padded = np.zeros((stained.shape[0], stained.shape[1] * 2, 3), np.uint8)
    padded[:, :stained.shape[1]] = stained
    look = rgb_appearance(padded)
    assert look.dark_background and look.stained, look
    assert look.describe() == "stained brightfield (coloured, beside a dark surround)"
    # a little tissue on a white slide (here 1/25 of it) is still a stained slide
    slide = np.full((stained.shape[0] * 5, stained.shape[1] * 5, 3), 242, np.uint8)
    slide[:stained.shape[0], :stained.shape[1]] = stained
    assert rgb_appearance(slide).stained


def test_grey_stored_as_rgb_is_grey(samples):
    _, fluo, bright = samples
    for grey, dark in ((fluo, True), (bright, False)):
        app = rgb_appearance(_rgb(grey, grey, grey))
        assert app.kind == "grey" and app.dark_background == dark, app
    assert rgb_appearance(_rgb(fluo, fluo, fluo)).describe() == "grey stored as RGB (the three channels alike, dark background)"
    noisy = np.clip(_rgb(fluo, fluo, fluo).astype(int)
                    + np.random.default_rng(0).integers(-3, 4, fluo.shape + (3,)), 0, 255).astype(np.uint8)
    assert rgb_appearance(noisy).kind == "grey"
    assert rgb_appearance(np.full((40, 50, 3), 7, np.uint8)).kind == "grey"  # constant


def test_fluorescence_in_one_colour_or_a_composite(samples):
    _, fluo, bright = samples
    zero = np.zeros_like(fluo)
    blue = rgb_appearance(_rgb(zero, zero, fluo))
    assert blue.kind == "fluorescence" and blue.signal_channels == (2,)
    assert blue.describe() == "fluorescence (dark background) in blue"
    other = np.roll(fluo, (101, 57), axis=(0, 1))  # a second stain elsewhere in the cells
    composite = rgb_appearance(_rgb(zero, other, fluo))
    assert composite.kind == "fluorescence" and composite.signal_channels == (1, 2)
    assert composite.describe().endswith("in green and blue")
    # one colour on a bright background is no stained slide either
    zb = np.zeros_like(bright)
    assert rgb_appearance(_rgb(zb, bright, zb)).kind == "one channel"


def test_nan_pixels_are_ignored_and_bad_shapes_refused(samples):
    stained, _, _ = samples
    data = stained.astype(np.float32)
    data[:20] = np.nan
    assert rgb_appearance(data).stained
    assert rgb_appearance(np.full((8, 8, 3), np.nan, np.float32)).kind == "grey"
    with pytest.raises(SeglabError, match="RGB"):
        rgb_appearance(np.zeros((8, 8)))
    with pytest.raises(SeglabError, match="RGB"):
        rgb_appearance(np.zeros((8, 8, 2)))


def test_dsb2018_val_images_as_they_arrive():
    """Every stained `val` image reads as stained; no grey one does, as RGB or in one colour."""
    items = load_split(shared_dsb_or_skip(), "val")
    for item in items:
        kind = image_kind(item)
        if item.channel_axis is not None:
            assert rgb_appearance(item.image).stained, kind
            continue
        im = item.image
        zero = np.zeros_like(im)
        for data in (_rgb(im, im, im), _rgb(zero, zero, im), _rgb(zero, im, zero)):
            assert not rgb_appearance(data).stained, kind


@pytest.fixture(scope="module")
def rgb_model():
    from seglab.models.storage import new_model
    from tests.conftest import TINY_STAR

    return new_model("stardist", "he-tiny", input_channels=3, architecture=dict(TINY_STAR), tile_context=16)


def _warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, SeglabWarning)]


def test_a_colour_model_given_fluorescence_as_rgb_warns(samples, rgb_model):
    stained, fluo, _ = samples
    fluo = fluo[:128, :128]
    zero = np.zeros_like(fluo)
    blue = _rgb(zero, zero, fluo)
    (msg,) = _warnings(lambda: segment(rgb_model, blue, diameter=None))
    assert msg.startswith("he-tiny reads RGB colour, as in stained brightfield tissue, but this image looks like "
                          "fluorescence (dark background) in blue")
    assert "stardist-nuclei" in msg
    # a stack is judged by its middle plane; the warning comes once
    assert len(_warnings(lambda: segment(rgb_model, np.stack([blue, blue]), diameter=None))) == 1
    # a grey fluorescence image, which such a model gets in all three channels: told too
    (msg,) = _warnings(lambda: segment(rgb_model, fluo, diameter=None))
    assert "this image looks like a grey image with a dark background (fluorescence)" in msg
    # stained tissue, grey brightfield, channels picked by the user, or a grey model: nothing to say
    assert not _warnings(lambda: segment(rgb_model, stained[:128, :128], diameter=None))
    bright = samples[2][:128, :128]
    assert not _warnings(lambda: segment(rgb_model, _rgb(bright, bright, bright), diameter=None))
    assert not _warnings(lambda: segment(rgb_model, bright, diameter=None))
    assert not _warnings(lambda: segment(rgb_model, blue, channels=[2], diameter=None))
    assert colour_model_note(ModelConfig(name="g", family="stardist"), blue) is None
    # three fluorescence channels (CYX, not RGB) are taken as R, G, B by such a model: told too
    cyx = np.stack([fluo, np.roll(fluo, (40, 23), axis=(0, 1)), zero])
    (msg,) = _warnings(lambda: segment(rgb_model, cyx, axes="CYX", diameter=None))
    assert "looks like fluorescence (dark background) in red and green" in msg


def test_a_colour_model_given_fluorescence_out_of_core_warns(tmp_path, samples, rgb_model):
    _, fluo, _ = samples
    grey_rgb = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=fluo.shape + (3,), chunks=(256, 256, 3),
                         dtype=fluo.dtype)
    grey_rgb[:] = _rgb(fluo, fluo, fluo)
    msgs = _warnings(lambda: segment_lazy(rgb_model, grey_rgb, tmp_path / "out.zarr", axes="YXS", diameter=None))
    assert any("looks like grey stored as RGB" in m for m in msgs), msgs
    grey = zarr.open(str(tmp_path / "grey.zarr"), mode="w", shape=fluo.shape, chunks=(256, 256), dtype=fluo.dtype)
    grey[:] = fluo
    msgs = _warnings(lambda: segment_lazy(rgb_model, grey, tmp_path / "out2.zarr", axes="YX", diameter=None))
    assert any("looks like a grey image with a dark background" in m for m in msgs), msgs
