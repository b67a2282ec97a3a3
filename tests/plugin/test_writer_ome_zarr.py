"""The napari OME-Zarr labels writer: File > Save Selected Layer(s) with a .ome.zarr / .zarr name."""

import tracemalloc

import numpy as np
import pytest

napari = pytest.importorskip("napari")
da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

from seglab.plugin.writer import write_ome_zarr  # noqa: E402


def _label_nodes(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    return [n for n in Reader(parse_url(str(path)))() if any(type(s).__name__ == "Label" for s in n.specs)]


def _levels(path):
    """The arrays of the one label image of an OME-Zarr labels store, read with zarr."""
    root = zarr.open_group(str(path), mode="r")
    (name,) = root.attrs["ome"]["labels"]
    image = root[name]
    datasets = image.attrs["ome"]["multiscales"][0]["datasets"]
    return image, [image[d["path"]] for d in datasets], datasets


def _pattern(shape):
    """Labels of many ids beyond uint16, different in every 37 x 53 tile."""
    yy, xx = np.indices(shape[-2:])
    return (70_000 + (yy // 37) * 1000 + xx // 53).astype(np.int32)


def test_save_selected_labels_layer_as_ome_zarr_with_scale_and_unit(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    lab = np.zeros((1500, 1300), np.int32)
    lab[10:40, 10:50] = 70_000  # beyond uint16: stored as uint32
    lab[1000:1100, 600:700] = 3
    layer = viewer.add_labels(lab, scale=(0.5, 0.25), units=("µm", "µm"), name="cells")
    viewer.layers.selection = {layer}
    paths = viewer.layers.save(str(tmp_path / "cells.ome.zarr"), selected=True, plugin="napari-seglab")
    assert paths == [str(tmp_path / "cells.ome.zarr")]
    assert not (tmp_path / "cells.ome.zarr.partial").exists()

    (node,) = _label_nodes(paths[0])
    axes = node.metadata["axes"]
    assert [a["name"] for a in axes] == ["y", "x"]
    assert [a.get("unit") for a in axes] == ["micrometer", "micrometer"]
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert len(scales) == len(node.data) >= 3
    for k, s in enumerate(scales):
        assert s == pytest.approx([0.5 * 2**k, 0.25 * 2**k])
    np.testing.assert_array_equal(np.asarray(node.data[0]), lab)

    image, arrays, _ = _levels(paths[0])
    assert "image-label" in image.attrs["ome"]
    assert [a.dtype for a in arrays] == [np.uint32] * len(arrays)
    np.testing.assert_array_equal(arrays[0][:], lab)
    for k, arr in enumerate(arrays):
        np.testing.assert_array_equal(arr[:], lab[:: 2**k, :: 2**k])  # nearest neighbour pyramid

    from ome_zarr_models.v05.image_label import ImageLabel
    from ome_zarr_models.v05.labels import Labels

    Labels.from_zarr(zarr.open_group(paths[0], mode="r"))  # valid NGFF 0.5 labels
    ImageLabel.from_zarr(image)


def test_multiscale_labels_layer_saves_its_full_resolution_level(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    lab = np.zeros((600, 500), np.int32)
    lab[10:100, 20:60] = 5
    viewer.add_labels([lab, lab[::2, ::2]], scale=(0.5, 0.5))  # napari hands the writer MultiScaleData
    (out,) = viewer.layers.save(str(tmp_path / "ms.ome.zarr"), selected=False, plugin="napari-seglab")
    _, arrays, datasets = _levels(out)
    np.testing.assert_array_equal(arrays[0][:], lab)
    assert datasets[0]["coordinateTransformations"][0]["scale"] == pytest.approx([0.5, 0.5])


def test_file_save_selected_layers_dialog_offers_and_uses_the_writer(make_napari_viewer, tmp_path, monkeypatch):
    from napari._qt import qt_viewer

    viewer = make_napari_viewer()
    lab = np.zeros((40, 60), np.uint8)
    lab[5:15, 5:25] = 2
    viewer.add_image(np.zeros((40, 60), np.float32))
    layer = viewer.add_labels(lab, scale=(0.5, 0.25), units=("µm", "µm"))
    viewer.layers.selection = {layer}
    offered = {}

    def choose(*args, filter="", **kwargs):  # the user picks our entry and types a name
        offered["filters"] = filter.split(";;")
        ours = [f for f in offered["filters"] if "OME-Zarr labels" in f]
        return (str(tmp_path / "picked.ome.zarr"), ours[0]) if ours else ("", "")  # else: Cancel

    monkeypatch.setattr(qt_viewer.QFileDialog, "getSaveFileName", staticmethod(choose))
    viewer.window._qt_viewer._save_layers_dialog(selected=True)  # File > Save Selected Layer(s)...
    assert "seglab OME-Zarr labels (multiscale pyramid) (*.ome.zarr *.zarr)" in offered["filters"]
    np.testing.assert_array_equal(_levels(tmp_path / "picked.ome.zarr")[1][0][:], lab)

    viewer.layers.selection = {viewer.layers[0]}  # an Image layer: the writer is not offered
    offered.clear()
    viewer.window._qt_viewer._save_layers_dialog(selected=True)
    assert offered["filters"] and not any("OME-Zarr labels" in f for f in offered["filters"])


def test_plain_zarr_name_and_3d_stack_keeps_z_spacing(tmp_path):
    lab = np.zeros((3, 40, 50), np.uint16)
    lab[1, 5:9, 5:20] = 7
    (out,) = write_ome_zarr(str(tmp_path / "stack.zarr"), lab,
                            {"scale": (2.0, 0.5, 0.5), "units": ("µm", "µm", "µm"), "axis_labels": ("0", "1", "2")})
    (node,) = _label_nodes(out)
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([2.0, 0.5, 0.5])
    np.testing.assert_array_equal(np.asarray(node.data[0]), lab)

    lab4 = np.arange(2 * 3 * 8 * 9, dtype=np.uint32).reshape(2, 3, 8, 9)
    (out,) = write_ome_zarr(str(tmp_path / "tcz.ome.zarr"), lab4,
                            {"scale": (1.0, 1.0, 0.5, 0.5), "axis_labels": ("time", "c", "y", "x")})
    (node,) = _label_nodes(out)
    assert [(a["name"], a["type"]) for a in node.metadata["axes"]] == \
        [("t", "time"), ("c", "channel"), ("y", "space"), ("x", "space")]
    np.testing.assert_array_equal(np.asarray(node.data[0]), lab4)
    with pytest.raises(ValueError, match="order t, c, z, y, x; this layer's axes are c, t, y, x"):
        write_ome_zarr(str(tmp_path / "ct.ome.zarr"), lab4, {"axis_labels": ("c", "t", "y", "x")})
    assert not (tmp_path / "ct.ome.zarr").exists()


def test_dask_layer_bigger_than_a_block_saved_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    shape = (1500, 2100)  # more than one 1024 x 1024 write block, with partial edge blocks
    lazy = da.from_array(_pattern(shape), chunks=(500, 700))
    layer = viewer.add_labels(lazy, scale=(0.5, 0.25), units=("µm", "µm"))
    assert isinstance(layer.data, da.Array)
    paths = viewer.layers.save(str(tmp_path / "lazy.ome.zarr"), selected=False, plugin="napari-seglab")
    _, arrays, datasets = _levels(paths[0])
    expected = _pattern(shape)
    np.testing.assert_array_equal(arrays[0][:], expected)
    for k, arr in enumerate(arrays):
        np.testing.assert_array_equal(arr[:], expected[:: 2**k, :: 2**k])
    assert datasets[1]["coordinateTransformations"][0]["scale"] == pytest.approx([1.0, 0.5])


def test_lazy_layer_is_written_block_by_block_not_loaded_whole(tmp_path):
    # 192 MiB as uint32; the writer reads 4 MiB blocks and the store rewrites up to one 4 MiB chunk
    # per pyramid level (about 40 MiB traced at most, whatever the layer's size)
    shape = (8192, 6144)
    lazy = da.fromfunction(lambda y, x: (1 + (y // 40) * 100 + x // 40).astype(np.uint32), shape=shape,
                           chunks=(512, 512), dtype=np.uint32)
    whole = int(np.prod(shape)) * 4
    tracemalloc.start()
    try:
        (out,) = write_ome_zarr(str(tmp_path / "big.ome.zarr"), lazy, {"scale": (1.0, 1.0)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole / 3, f"peak {peak / 2**20:.1f} MiB for a {whole / 2**20:.0f} MiB layer"
    _, arrays, _ = _levels(out)
    assert arrays[0][1000:1010, 2040:2060].tolist() == \
        np.asarray(lazy[1000:1010, 2040:2060]).tolist()
    assert arrays[0][-1, -1] == lazy[-1, -1].compute()


def test_zarr_backed_layer_read_in_blocks(tmp_path, monkeypatch):
    src = zarr.create_array(store=str(tmp_path / "src.zarr"), shape=(1100, 1300), chunks=(256, 256), dtype="uint32")
    src[:] = _pattern((1100, 1300))
    reads = []

    class Spy:
        shape, dtype, ndim = src.shape, src.dtype, src.ndim

        def __getitem__(self, key):
            part = src[key]
            reads.append(part.size)
            return part

    (out,) = write_ome_zarr(str(tmp_path / "z.ome.zarr"), Spy(), {})
    assert len(reads) == 4 and max(reads) <= 1024 * 1024
    np.testing.assert_array_equal(_levels(out)[1][0][:], src[:])


def test_existing_store_replaced_atomically_but_other_folders_refused(tmp_path):
    first = np.ones((20, 30), np.uint8)
    (out,) = write_ome_zarr(str(tmp_path / "a.ome.zarr"), first, {})
    second = np.full((20, 30), 9, np.uint8)
    write_ome_zarr(out, second, {})  # the save dialog asked before replacing it
    np.testing.assert_array_equal(_levels(out)[1][0][:], second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ome.zarr"]

    image_store = tmp_path / "img.zarr"
    zarr.create_array(store=str(image_store / "raw"), shape=(4, 4), dtype="uint8")
    with pytest.raises(ValueError, match="not an OME-Zarr labels store; it is left as it is"):
        write_ome_zarr(str(image_store), first, {})
    assert (image_store / "raw").is_dir()
    array_store = tmp_path / "raw.zarr"  # a plain zarr array, e.g. an image
    zarr.create_array(store=str(array_store), shape=(4, 4), dtype="uint32")[:] = 5
    with pytest.raises(ValueError, match="not an OME-Zarr labels store"):
        write_ome_zarr(str(array_store), first, {})
    assert zarr.open_array(str(array_store), mode="r")[0, 0] == 5
    (tmp_path / "f.zarr").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        write_ome_zarr(str(tmp_path / "f.zarr"), first, {})


def test_failure_midway_leaves_no_store(tmp_path):
    class Broken:
        shape, dtype, ndim = (1500, 1500), np.dtype(np.uint32), 2

        def __getitem__(self, key):
            if key[0].start >= 1024:
                raise OSError("disk gone")
            return np.ones((min(1024, 1500 - key[0].start), min(1024, 1500 - key[1].start)), np.uint32)

    with pytest.raises(ValueError, match="cannot write .*b.ome.zarr: disk gone"):
        write_ome_zarr(str(tmp_path / "b.ome.zarr"), Broken(), {})
    assert list(tmp_path.iterdir()) == []


def test_refuses_bad_extension_non_labels_layer_and_bad_values(make_napari_viewer, tmp_path):
    lab = np.ones((8, 8), np.int32)
    with pytest.raises(ValueError, match=r"name ending in \.ome\.zarr or \.zarr"):
        write_ome_zarr(str(tmp_path / "x.n5"), lab, {})
    with pytest.raises(ValueError, match="4,294,967,295"):
        write_ome_zarr(str(tmp_path / "neg.ome.zarr"), -lab, {})
    with pytest.raises(ValueError, match="integer ids"):
        write_ome_zarr(str(tmp_path / "f.ome.zarr"), lab.astype(float), {})
    with pytest.raises(ValueError, match="2 to 5 axes"):
        write_ome_zarr(str(tmp_path / "6d.ome.zarr"), np.ones((1,) * 6, np.uint8), {})
    assert list(tmp_path.iterdir()) == []

    from npe2 import PluginManager

    writer, _ = PluginManager.instance().get_writer(str(tmp_path / "img.ome.zarr"), ["image"], "napari-seglab")
    assert writer is None  # an Image layer: this writer is not offered
    writer, _ = PluginManager.instance().get_writer(str(tmp_path / "l.ome.zarr"), ["labels"], "napari-seglab")
    assert writer is not None and writer.command == "napari-seglab.write_ome_zarr"

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8), np.float32))
    with pytest.warns(UserWarning, match="not a valid writer"):  # File > Save shows it as an error
        assert viewer.layers.save(str(tmp_path / "img.ome.zarr"), selected=False, plugin="napari-seglab") == []
    assert list(tmp_path.iterdir()) == []


def test_a_layers_translate_and_time_interval_are_kept(make_napari_viewer, tmp_path):
    """Where the layer lies (translate) and a t axis in seconds come back from the store as they
    were in napari."""
    viewer = make_napari_viewer()
    lab = np.zeros((2, 300, 260), np.int32)
    lab[:, 10:40, 10:50] = 2
    viewer.add_labels(lab, scale=(60.0, 0.5, 0.5), translate=(0.0, 100.0, -20.0), units=("s", "µm", "µm"),
                      axis_labels=("t", "y", "x"))
    (out,) = viewer.layers.save(str(tmp_path / "tl.ome.zarr"), selected=False, plugin="napari-seglab")
    image, _, datasets = _levels(out)
    axes = image.attrs["ome"]["multiscales"][0]["axes"]
    assert [(a["name"], a.get("unit")) for a in axes] == [("t", "second"), ("y", "micrometer"), ("x", "micrometer")]
    for k, d in enumerate(datasets):
        scale, shift = d["coordinateTransformations"]
        assert scale["scale"] == pytest.approx([60.0, 0.5 * 2**k, 0.5 * 2**k])
        assert shift["translation"] == pytest.approx([0.0, 100.0, -20.0])
