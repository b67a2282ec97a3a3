"""The bad-input suite (issue 12): each input ends in a correct result or one clear message,
never a traceback, a hang or a half-written file. The table in docs/bad-inputs.md lists them.

Python API cases use a fixed network that finds bright discs exactly (three per plane), so a
wrong channel, axis or conversion shows as a wrong object count; CLI cases use a tiny saved
U-Net (untrained but deterministic) and compare with the Python API where a result is due.
"""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import tifffile

from conftest import disc_image
from seglab.cli import main
from seglab.errors import SeglabError
from seglab.inference.engine import segment
from seglab.io.images import read_image
from seglab.models.base import ModelConfig
from seglab.models.registry import get_model
from seglab.models.storage import load_model
from seglab.models.unet import UNetModel
from tests_helpers import threshold_net


@pytest.fixture(scope="module")
def disc_model():
    cfg = ModelConfig(name="discs", family="unet", tile_context=16,
                      thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    return UNetModel(cfg, network=threshold_net())


IMG, _ = disc_image()  # (128, 160) uint8, three discs
H, W = IMG.shape
NOISE = np.random.default_rng(3).integers(0, 255, IMG.shape).astype(np.uint8)  # no discs, full range


def _seg(model, image, **kw):
    return segment(model, image, device="cpu", amp=False, **kw)


# ---- Python API: dtypes, values, sizes -------------------------------------------------------
DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_api_every_dtype_finds_the_discs(disc_model, dtype):
    img = IMG > 100 if dtype == "bool" else (IMG // 2).astype(dtype)
    res = _seg(disc_model, img)
    assert res.labels.shape == (H, W) and res.n_objects == 3


@pytest.mark.parametrize("case", ["nan pixels", "inf pixels", "all nan", "all inf", "constant", "1x1", "zeros",
                                  "white edge line", "black edge lines"])
def test_api_special_values_and_sizes(disc_model, case):
    img = IMG.astype(np.float32)
    expect = 3
    if case == "white edge line":  # a camera's or converter's artifact line: no object along it
        img[:, -1] = 255
    elif case == "black edge lines":
        img[:2] = 0
        img[:, :2] = 255
    elif case == "nan pixels":
        img[:5, :5] = np.nan
    elif case == "inf pixels":
        img[:5, :5], img[-5:, -5:] = np.inf, -np.inf
    elif case == "all nan":
        img[:], expect = np.nan, 0
    elif case == "all inf":
        img[:], expect = np.inf, 0
    elif case == "constant":
        img[:], expect = 7, 0
    elif case == "1x1":
        img, expect = img[:1, :1], 0
    elif case == "zeros":
        img, expect = np.zeros((40, 40), np.uint16), 0
    res = _seg(disc_model, img)
    assert res.labels.shape == img.shape and res.n_objects == expect


@pytest.mark.parametrize("shape, msg", [
    ((0, 10), "empty"),
    ((5, 0, 10), "empty"),
    ((10,), "fewer than two spatial axes"),
    ((2, 2, 2, 16, 16), "at most T, Z, Y, X"),
    ((2, 2, 2, 2, 16, 16), "at most T, Z, Y, X"),
])
def test_api_shapes_no_model_takes(disc_model, shape, msg):
    with pytest.raises(SeglabError, match=msg):
        _seg(disc_model, np.zeros(shape, np.float32))


def test_api_object_and_complex_arrays_are_refused(disc_model):
    with pytest.raises(SeglabError, match="data type"):
        _seg(disc_model, np.array([["a"] * 8] * 8))
    with pytest.raises(SeglabError, match="complex"):
        _seg(disc_model, np.zeros((8, 8), np.complex64))


@pytest.mark.parametrize("axes", ["YX", "ZYX", "TZYX"])
def test_api_2d_to_4d_stacks(disc_model, axes):
    img = IMG
    for _ in axes[:-2]:
        img = np.stack([img, img[::-1]])
    res = _seg(disc_model, img, axes=axes)
    n_planes = img.size // IMG.size
    assert res.labels.shape == img.shape and res.n_objects == 3 * n_planes
    assert len(np.unique(res.labels)) - 1 == 3 * n_planes  # ids unique across the stack


# ---- Python API: RGB, RGBA and multichannel in every axis order --------------------------------
def test_api_rgb_uint8_gives_2d_labels(disc_model):
    rgb = np.stack([IMG, IMG, IMG], -1)  # was labels of shape (H, W, 3)
    res = _seg(disc_model, rgb)
    assert res.labels.shape == (H, W) and res.n_objects == 3


def test_api_rgba_gives_2d_labels(disc_model):
    rgba = np.concatenate([np.stack([IMG] * 3, -1), np.full((H, W, 1), 255, np.uint8)], -1)
    res = _seg(disc_model, rgba)
    assert res.labels.shape == (H, W) and res.n_objects == 3


def test_api_two_channels_last_ask_for_a_channel(disc_model):
    two = np.stack([IMG, NOISE], -1)  # was H planes of (W, 2): 0 objects, silently
    with pytest.raises(SeglabError, match="2 non-RGB channel.*channels="):
        _seg(disc_model, two)
    res = _seg(disc_model, two, channels=[0])
    assert res.labels.shape == (H, W) and res.n_objects == 3


@pytest.mark.parametrize("axes", ["CYX", "CXY", "YCX", "YXC", "XCY", "XYC"])
def test_api_multichannel_in_every_axis_order_uses_the_chosen_channel(disc_model, axes):
    cyx = np.stack([NOISE, IMG, NOISE[::-1]])  # the discs are channel 1 only
    order = ["CYX".index(a) for a in axes]
    img = np.transpose(cyx, order)
    res = _seg(disc_model, img, axes=axes, channels=[1])
    assert res.labels.shape == (H, W) and res.n_objects == 3
    with pytest.raises(SeglabError, match="3 non-RGB channel"):  # never mixed with RGB weights
        _seg(disc_model, img, axes=axes)


@pytest.mark.parametrize("axes", ["ZCYX", "CZYX", "ZYXC", "TZCYX"])
def test_api_multichannel_stacks(disc_model, axes):
    planes = np.stack([IMG, IMG[::-1]])  # Z
    zcyx = np.stack([np.stack([NOISE, p]) for p in planes])  # (Z, C, Y, X), discs on channel 1
    src = "ZCYX"
    if axes.startswith("T"):
        zcyx, src = zcyx[None], "TZCYX"
    img = np.transpose(zcyx, [src.index(a) for a in axes])
    res = _seg(disc_model, img, axes=axes, channels=[1])
    assert res.labels.shape == tuple(img.shape[axes.index(a)] for a in axes if a != "C")
    assert res.n_objects == 3 * (img.size // (2 * H * W))


def test_api_non_rgb_composite_is_not_mixed_with_luma(disc_model):
    composite = np.stack([IMG, NOISE, NOISE], -1)  # DAPI + two other stains, not a colour photo
    with pytest.raises(SeglabError, match="3 non-RGB channel"):
        _seg(disc_model, composite, channel_axis=-1, rgb=False)
    assert _seg(disc_model, composite, channel_axis=-1, rgb=False, channels=[0]).n_objects == 3


def test_api_bad_axes_and_channel_axis(disc_model):
    with pytest.raises(SeglabError, match="name 2 axes"):
        _seg(disc_model, np.zeros((3, 16, 16)), axes="YX")
    with pytest.raises(SeglabError, match="channel axis 5 does not exist"):
        _seg(disc_model, np.zeros((3, 16, 16)), channel_axis=5)
    with pytest.raises(SeglabError, match=r"channel\(s\) \[7\] do not exist"):
        _seg(disc_model, np.zeros((3, 16, 16)), axes="CYX", channels=[7])


# ---- get_model: broken model folders -----------------------------------------------------------
class _Boom:
    """Unpickling this would create a marker file: a pickle must never be loaded."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _model_folder(tmp_path, tiny_model_dir, name, broken):
    folder = tmp_path / name
    shutil.copytree(tiny_model_dir, folder)
    broken(folder)
    return folder


def _pickle_instead_of_safetensors(folder):
    (folder / "weights.safetensors").unlink()
    boom = _Boom()
    _Boom.marker = folder.parent / "UNPICKLED"
    (folder / "weights.pt").write_bytes(pickle.dumps(boom))


def _wrong_tensors(folder):
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, folder / "weights.safetensors")


@pytest.mark.parametrize("broken, msg", [
    (lambda f: shutil.rmtree(f) or f.mkdir(), "not a model folder"),
    (_pickle_instead_of_safetensors, "instead of weights.safetensors"),
    (lambda f: (f / "weights.safetensors").write_bytes(b"garbage"), "cannot read weights"),
    (lambda f: (f / "weights.safetensors").write_bytes(b""), "cannot read weights"),
    (_wrong_tensors, "do not fit the architecture"),
    (lambda f: (f / "config.json").write_text("{nope"), "not valid JSON"),
], ids=["empty folder", "pickle instead of safetensors", "garbage weights", "empty weights", "wrong tensors",
        "config not JSON"])
def test_get_model_on_broken_folders(tmp_path, tiny_model_dir, broken, msg):
    folder = _model_folder(tmp_path, tiny_model_dir, "broken", broken)
    with pytest.raises(SeglabError, match=msg):
        get_model(str(folder))
    assert not (tmp_path / "UNPICKLED").exists()


@pytest.mark.parametrize("config", [{"name": "x"}, {"name": "x", "family": "nope"}, [1, 2]],
                         ids=["config without family", "unknown family", "config not an object"])
def test_get_model_on_malformed_configs(tmp_path, tiny_model_dir, config):
    folder = _model_folder(tmp_path, tiny_model_dir, "bad", lambda f: (f / "config.json").write_text(json.dumps(config)))
    with pytest.raises(SeglabError):
        get_model(str(folder))


def test_get_model_unknown_name():
    with pytest.raises(SeglabError, match="unknown model 'no-such-model'"):
        get_model("no-such-model")


# ---- command line ------------------------------------------------------------------------------
def _cli(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])  # an exception escaping here would be a traceback for the user
    except SystemExit as e:  # argparse's usage errors: usage line plus one message, exit status 2
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _no_partial_files(folder):
    left = [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"] if folder.exists() else []
    assert not left, left


def _segment(capsys, model_dir, out, *inputs_and_options):
    return _cli(capsys, "segment", "-m", model_dir, "-o", out, "--device", "cpu", "--no-amp", "-q",
                *inputs_and_options)


def _truncated(p):
    tifffile.imwrite(p, NOISE)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("make, msg", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b"not a tiff at all"), "cannot read"),
    (lambda p: p.write_bytes(b""), "cannot read"),
    (_truncated, "cannot read"),
    (lambda p: tifffile.imwrite(p, np.zeros((0, 5), np.uint8)), "empty|cannot read"),
], ids=["missing file", "corrupt tiff", "zero-byte tiff", "truncated tiff", "0-size tiff"])
def test_cli_unreadable_inputs(tmp_path, capsys, tiny_model_dir, make, msg):
    p = tmp_path / "in.tif"
    make(p)
    out = tmp_path / "out"
    rc, err = _segment(capsys, tiny_model_dir, out, p)
    assert rc != 0 and "seglab: error:" in err
    assert any(m in err for m in msg.split("|"))
    assert not (out / "in_labels.tif").exists()
    _no_partial_files(out)


def test_cli_undeclared_channels_or_planes_is_an_error_not_a_guess(tmp_path, capsys, tiny_model_dir):
    p = tmp_path / "three.tif"
    tifffile.imwrite(p, np.stack([IMG, NOISE, NOISE]).astype(np.float32), photometric="minisblack")
    out = tmp_path / "out"
    rc, err = _segment(capsys, tiny_model_dir, out, p)
    assert rc != 0 and "--axes CYX" in err and "--axes ZYX" in err
    assert not (out / "three_labels.tif").exists()
    rc, _ = _segment(capsys, tiny_model_dir, out, p, "--axes", "ZYX")
    assert rc == 0 and tifffile.imread(out / "three_labels.tif").shape == (3, H, W)
    rc, _ = _segment(capsys, tiny_model_dir, out, p, "--axes", "CYX", "--channels", "0", "--overwrite")
    assert rc == 0 and tifffile.imread(out / "three_labels.tif").shape == (H, W)


def test_cli_imagej_channels_keep_pixel_size_and_unit(tmp_path, capsys, tiny_model_dir):
    p = tmp_path / "cyx.tif"
    cyx = np.stack([NOISE, IMG]).astype(np.uint16)
    tifffile.imwrite(p, cyx, imagej=True, resolution=(1 / 0.325, 1 / 0.325), metadata={"axes": "CYX", "unit": "um"})
    out = tmp_path / "out"
    rc, err = _segment(capsys, tiny_model_dir, out, p)  # a 1-channel model, 2 channels: say which
    assert rc != 0 and "2 non-RGB channel" in err and "--channels" in err
    rc, _ = _segment(capsys, tiny_model_dir, out, "--channels", "1", p)  # the option first, as the error words it
    assert rc == 0
    expect = segment(load_model(tiny_model_dir), cyx[1], device="cpu", amp=False).labels
    with tifffile.TiffFile(out / "cyx_labels.tif") as tif:
        np.testing.assert_array_equal(tif.asarray(), expect)  # channel 1, not 2 planes, not luma
        assert tif.imagej_metadata["unit"] == "micron"
        xn, xd = tif.pages[0].tags["XResolution"].value
        assert xd / xn == pytest.approx(0.325)


def test_cli_channels_is_one_comma_list(tmp_path, capsys, tiny_model_dir):
    p = tmp_path / "cyx.tif"
    tifffile.imwrite(p, np.stack([NOISE, IMG, NOISE]).astype(np.uint16), imagej=True, metadata={"axes": "CYX"})
    out = tmp_path / "out"
    rc, err = _segment(capsys, tiny_model_dir, out, "--channels", "0", "1", p)  # the old form: 1 is not a file
    assert rc != 0 and "no such file or folder: 1" in err and "--channels 0,1" in err
    rc, err = _segment(capsys, tiny_model_dir, out, "--channels", "0,x", p)
    assert rc == 2 and "separated by commas" in err
    rc, err = _segment(capsys, tiny_model_dir, out, "--channels", "0,1", p)  # two channels, a 1-channel model
    assert rc != 0 and "takes 1 channel" in err
    assert not out.exists() or not any(out.iterdir())


def test_cli_hyperstack_keeps_stack_axes_and_z_spacing(tmp_path, capsys, tiny_model_dir):
    p = tmp_path / "tzcyx.tif"
    data = np.zeros((2, 3, 2, 48, 40), np.uint16)
    data[:, :, 1] = NOISE[:48, :40]
    tifffile.imwrite(p, data, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TZCYX", "unit": "micron",
                                                                           "spacing": 1.5})
    out = tmp_path / "out"
    rc, _ = _segment(capsys, tiny_model_dir, out, p, "--channels", "1", "--tile-size", "128")
    assert rc == 0
    with tifffile.TiffFile(out / "tzcyx_labels.tif") as tif:
        assert tif.asarray().shape == (2, 3, 48, 40)
        assert tif.series[0].axes == "TZYX"
        assert tif.imagej_metadata["spacing"] == pytest.approx(1.5)
        assert tif.imagej_metadata["unit"] == "micron"


def _png(path, arr):
    import imageio.v3 as iio

    iio.imwrite(path, arr)


@pytest.mark.parametrize("make", [
    lambda p: tifffile.imwrite(p.with_suffix(".tif"), np.stack([IMG] * 3, -1), photometric="rgb"),
    lambda p: _png(p.with_suffix(".png"), np.stack([IMG] * 3 + [IMG * 0 + 255], -1)),
    lambda p: tifffile.imwrite(p.with_suffix(".tif"), IMG > 100),
    lambda p: tifffile.imwrite(p.with_suffix(".tif"), IMG.astype(np.float16)),
    lambda p: tifffile.imwrite(p.with_suffix(".tif"), IMG.astype(np.int8)),
    lambda p: tifffile.imwrite(p.with_suffix(".tif"), IMG.astype(np.uint64)),
    lambda p: tifffile.imwrite(p.with_suffix(".tif"), np.full((H, W), np.nan, np.float32)),
    lambda p: tifffile.imwrite(p.with_suffix(".tif"), np.zeros((1, 1), np.uint8)),
], ids=["rgb tiff", "rgba png", "bool tiff", "float16 tiff", "int8 tiff", "uint64 tiff", "all-nan tiff", "1x1 tiff"])
def test_cli_inputs_with_a_result(tmp_path, capsys, tiny_model_dir, make):
    (tmp_path / "in").mkdir()
    make(tmp_path / "in" / "x")
    src = next((tmp_path / "in").iterdir())
    out = tmp_path / "out"
    rc, err = _segment(capsys, tiny_model_dir, out, src)
    assert rc == 0, err
    expect = segment(load_model(tiny_model_dir), read_image(src), device="cpu", amp=False).labels
    assert tifffile.imread(out / "x_labels.tif").shape == expect.shape == (read_image(src).shape[:2])


@pytest.mark.parametrize("case, msg", [
    ("axes wrong length", "name 2 axes"),
    ("channel axis out of range", "channel axis 3 does not exist"),
    ("channel that does not exist", "do not exist"),
    ("output is a file", "not a folder"),
    ("output under a file", "cannot write to the output folder|not a folder"),
    ("empty input folder", "holds no image files"),
])
def test_cli_bad_options_and_outputs_fail_before_inference(tmp_path, capsys, tiny_model_dir, case, msg):
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, IMG)
    out = tmp_path / "out"
    extra: list = []
    if case == "axes wrong length":
        extra = ["--axes", "YX", str(tmp_path / "s.tif")]
        tifffile.imwrite(tmp_path / "s.tif", np.stack([IMG, IMG]), photometric="minisblack")
        src = None
    elif case == "channel axis out of range":
        extra = ["--channel-axis", "3"]
    elif case == "channel that does not exist":
        extra = ["--channels", "4"]
    elif case == "output is a file":
        out.write_text("x")
    elif case == "output under a file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "sub"
    elif case == "empty input folder":
        (tmp_path / "empty").mkdir()
        src = tmp_path / "empty"
    rc, err = _segment(capsys, tiny_model_dir, out, *([src] if src else []), *extra)
    assert rc != 0 and any(m in err for m in msg.split("|")), err
    assert len([ln for ln in err.splitlines() if ln.startswith("seglab: error")]) == 1
    if out.is_dir():
        assert not list(out.glob("*_labels.tif"))
        _no_partial_files(out)


def test_cli_threshold_nan_is_refused(tmp_path, capsys, tiny_model_dir):
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, IMG)
    rc, err = _segment(capsys, tiny_model_dir, tmp_path / "out", src, "-t", "prob_thresh=nan")
    assert rc != 0 and "prob_thresh" in err


@pytest.mark.parametrize("case, msg", [
    ("missing folders", "no such folder"),
    ("float labels", "not a label image"),
    ("shape mismatch", "differ in shape"),
    ("corrupt labels", "cannot read"),
    ("no labels for an image", "have no label file"),
])
def test_cli_evaluate_bad_inputs(tmp_path, capsys, tiny_model_dir, case, msg):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    tifffile.imwrite(images / "a.tif", IMG)
    lab = (IMG > 100).astype(np.uint16)
    if case == "missing folders":
        images = tmp_path / "nope"
    elif case == "float labels":
        tifffile.imwrite(labels / "a.tif", lab.astype(np.float32) + 0.5)
    elif case == "shape mismatch":
        tifffile.imwrite(labels / "a.tif", lab[:10])
    elif case == "corrupt labels":
        (labels / "a.tif").write_bytes(b"junk")
    elif case == "no labels for an image":
        tifffile.imwrite(labels / "b.tif", lab)
    rc, err = _cli(capsys, "evaluate", "-m", tiny_model_dir, "--images", images, "--labels", labels,
                   "--device", "cpu", "-q")
    assert rc != 0 and msg in err, err
