"""`seglab segment` on large inputs: zarr / OME-Zarr stores and TIFFs read lazily, out of core."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from seglab.cli import main
from seglab.files import is_finished
from seglab.outputs import resolve_outputs
from tests_helpers import blob_image


def _ome_zarr(path, img, pixel=(0.5, 0.25), version="0.5"):
    """A two-level OME-Zarr image (NGFF 0.5 on zarr v3, or 0.4 on zarr v2) with a pixel size in µm."""
    fmt = 3 if version == "0.5" else 2
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    root.create_array("0", data=img, chunks=(128, 128))
    root.create_array("1", data=img[::2, ::2], chunks=(128, 128))
    axes = [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}]
    ms = {"axes": axes, "name": "img", "datasets": [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [pixel[0] * 2**k, pixel[1] * 2**k]}]}
        for k in range(2)]}
    if fmt == 3:
        root.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        root.attrs["multiscales"] = [{**ms, "version": "0.4"}]
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_read_ome_zarr_lazily_with_pixel_size(tmp_path, version):
    from seglab.io.images import read_image_data

    img = np.arange(60 * 80, dtype=np.uint16).reshape(60, 80)
    data = read_image_data(_ome_zarr(tmp_path / "x.ome.zarr", img, version=version))
    assert isinstance(data.array, zarr.Array) and data.array.shape == (60, 80)
    assert data.axes == "YX" and data.pixel_size == pytest.approx((0.5, 0.25)) and data.unit == "µm"
    np.testing.assert_array_equal(data.array[5:9, 7:20], img[5:9, 7:20])


def test_ome_zarr_in_ome_zarr_labels_out(tmp_path, tiny_model_dir, capsys):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    img, _ = blob_image((300, 420), n=30, seed=2)
    src = _ome_zarr(tmp_path / "big.ome.zarr", img)
    out = tmp_path / "out"
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(src), "--device", "cpu",
               "--block-size", "256", "--diameter", "none", "--prob-thresh", "0.4", "-q"])
    assert rc == 0, capsys.readouterr().err
    store = out / "big_labels.ome.zarr"
    assert store.is_dir() and not (out / "big_labels.ome.zarr.partial").exists()
    assert (out / "big_objects.csv").is_file()
    nodes = list(Reader(parse_url(str(store)))())
    label = [n for n in nodes if any(type(s).__name__ == "Label" for s in n.specs)]
    assert len(label) == 1
    node = label[0]
    assert node.data[0].shape == img.shape and node.data[0].dtype == np.uint32
    assert node.data[1].shape == (150, 210)
    scale0 = node.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale0 == pytest.approx([0.5, 0.25])
    assert [a.get("unit") for a in node.metadata["axes"]] == ["micrometer", "micrometer"]
    full = np.asarray(node.data[0])
    np.testing.assert_array_equal(np.asarray(node.data[1]), full[::2, ::2])
    assert is_finished(src, out, resolve_outputs([]))


def test_plain_zarr_in_zarr_labels_out_and_rerun_refused(tmp_path, tiny_model_dir, capsys):
    img, _ = blob_image((200, 260), n=20, seed=4)
    z = zarr.create_array(store=str(tmp_path / "big.zarr"), shape=img.shape, chunks=(64, 64), dtype=img.dtype)
    z[:] = img
    out = tmp_path / "out"
    assert not is_finished(tmp_path / "big.zarr", out, resolve_outputs([]))
    args = ["segment", "-m", str(tiny_model_dir), "-o", str(out), str(tmp_path / "big.zarr"), "--device", "cpu",
            "--diameter", "none", "-q"]
    assert main(args) == 0
    lab = zarr.open_array(str(out / "big_labels.zarr"), mode="r")
    assert lab.shape == img.shape and lab.dtype == np.uint32 and lab.chunks == (200, 260)
    assert is_finished(tmp_path / "big.zarr", out, resolve_outputs([]))
    assert main(args) != 0
    assert "already exists" in capsys.readouterr().err


def test_lazy_tiff_equals_in_memory_run_when_one_block(tmp_path, tiny_model_dir):
    """A TIFF read by memory map (``--out-of-core``) in one block gives the in-memory labels exactly."""
    img, _ = blob_image((300, 340), n=25, seed=5)
    tifffile.imwrite(tmp_path / "a.tif", img, resolution=(2.0, 2.0))
    common = ["-m", str(tiny_model_dir), "--device", "cpu", "--diameter", "none", "--prob-thresh", "0.4", "-q"]
    assert main(["segment", "-o", str(tmp_path / "mem"), str(tmp_path / "a.tif"), *common]) == 0
    assert main(["segment", "-o", str(tmp_path / "ooc"), str(tmp_path / "a.tif"), "--out-of-core", *common]) == 0
    mem = tifffile.imread(tmp_path / "mem" / "a_labels.tif")
    ooc = zarr.open_array(str(tmp_path / "ooc" / "a_labels.zarr"), mode="r")[:]
    assert mem.max() > 0
    np.testing.assert_array_equal(ooc, mem)


def test_large_tiff_read_lazily_by_size(tmp_path, monkeypatch):
    from seglab.io.images import is_large_input, read_image_data

    img = np.arange(200 * 300, dtype=np.uint16).reshape(200, 300)
    tifffile.imwrite(tmp_path / "plain.tif", img)
    tifffile.imwrite(tmp_path / "tiled.tif", img, tile=(64, 64), compression="zlib")
    assert not is_large_input(tmp_path / "plain.tif")
    monkeypatch.setenv("SEGLAB_LARGE_TIFF_BYTES", "1000")
    assert is_large_input(tmp_path / "plain.tif")
    plain = read_image_data(tmp_path / "plain.tif", lazy=None)
    assert isinstance(plain.array, np.memmap) and plain.axes == "YX"
    tiled = read_image_data(tmp_path / "tiled.tif", lazy=None)
    assert isinstance(tiled.array, zarr.Array) and tiled.array.chunks == (64, 64)
    np.testing.assert_array_equal(tiled.array[10:100, 50:70], img[10:100, 50:70])


def test_out_of_core_refuses_outputs_it_cannot_give(tmp_path, tiny_model):
    from seglab.errors import SeglabError
    from seglab.files import segment_file_iter
    from seglab.progress import run_to_end

    z = zarr.create_array(store=str(tmp_path / "big.zarr"), shape=(64, 64), chunks=(64, 64), dtype="uint8")
    z[:] = 1
    with pytest.raises(SeglabError, match="out of core.*rois"):
        run_to_end(segment_file_iter(tiny_model, tmp_path / "big.zarr", tmp_path / "o", resolve_outputs(["rois"])))
    assert not (tmp_path / "o" / "big_labels.zarr").exists()


def test_each_position_of_a_large_multi_position_tiff_out_of_core(tmp_path, tiny_model_dir, capsys):
    """``--out-of-core`` on a multi-position OME-TIFF: each position into its own labels store,
    equal to that position segmented in memory; the per-position lines name them."""
    from seglab.io.labels import read_labels

    imgs = [blob_image((200, 260), n=12, seed=k)[0] for k in range(2)]
    src = tmp_path / "wells.ome.tif"
    with tifffile.TiffWriter(src, ome=True) as w:
        for im in imgs:
            w.write(im, metadata={"axes": "YX"})
    common = ["-m", str(tiny_model_dir), str(src), "--device", "cpu", "--diameter", "none", "--prob-thresh", "0.4"]
    assert main(["segment", "-o", str(tmp_path / "lazy"), "--out-of-core", "--block-size", "128", *common]) == 0
    err = capsys.readouterr().err
    assert main(["segment", "-o", str(tmp_path / "mem"), "-q", *common]) == 0
    for k in range(2):
        store = tmp_path / "lazy" / f"wells_s{k}_labels.zarr"
        assert f"wells.ome.tif series {k}: " in err and f"-> {store}" in err
        lazy = np.asarray(zarr.open(str(store), mode="r"))
        mem = read_labels(tmp_path / "mem" / f"wells_s{k}_labels.tif")
        assert lazy.shape == imgs[k].shape
        np.testing.assert_array_equal(lazy > 0, mem > 0)
    assert is_finished(src, tmp_path / "lazy", resolve_outputs([]), out_of_core=True)
    assert not is_finished(src, tmp_path / "lazy", resolve_outputs([]))  # in memory its TIFFs would be the labels
