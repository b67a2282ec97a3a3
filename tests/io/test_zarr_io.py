"""seglab.io.zarr_io: label stores (plain and OME-Zarr), atomic writes, and the --ome-zarr output."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from seglab.errors import SeglabError
from seglab.io.zarr_io import (LabelsGeometry, LabelsStore, is_zarr_path, open_labels, pyramid_levels,
                               write_ome_zarr_labels, zarr_stem)


def _ome_nodes(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    return [n for n in Reader(parse_url(str(path)))() if any(type(s).__name__ == "Label" for s in n.specs)]


def test_ome_zarr_labels_uint32_pyramid_and_pixel_size(tmp_path):
    lab = np.zeros((1500, 1300), np.uint32)
    lab[10:40, 10:50] = 70_000  # beyond uint16
    lab[1000:1100, 600:700] = 3
    path = write_ome_zarr_labels(tmp_path / "img_labels.ome.zarr", lab, LabelsGeometry("YX", (0.4, 0.3), "µm"))
    assert not (tmp_path / "img_labels.ome.zarr.partial").exists()
    (node,) = _ome_nodes(path)
    assert node.metadata["name"] == "img"
    shapes = [d.shape for d in node.data]
    assert shapes[:4] == [(1500, 1300), (750, 650), (375, 325), (188, 163)]
    for k, d in enumerate(node.data):
        np.testing.assert_array_equal(np.asarray(d), lab[:: 2**k, :: 2**k])
        assert node.metadata["coordinateTransformations"][k][0]["scale"] == pytest.approx([0.4 * 2**k, 0.3 * 2**k])
    assert node.data[0].dtype == np.uint32
    np.testing.assert_array_equal(open_labels(path)[:], lab)
    # the NGFF 0.5 models validate the labels group and its label image
    from ome_zarr_models.v05.image_label import ImageLabel
    from ome_zarr_models.v05.labels import Labels

    group = zarr.open_group(str(path), mode="r")
    Labels.from_zarr(group)
    ImageLabel.from_zarr(group["img"])


def test_stack_geometry_and_z_spacing(tmp_path):
    lab = np.arange(2 * 30 * 40, dtype=np.uint32).reshape(2, 30, 40)
    path = write_ome_zarr_labels(tmp_path / "s_labels.ome.zarr", lab, LabelsGeometry("ZYX", (0.5, 0.5), "µm", 2.0))
    (node,) = _ome_nodes(path)
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([2.0, 0.5, 0.5])
    np.testing.assert_array_equal(np.asarray(node.data[0]), lab)


def test_store_abort_leaves_nothing_and_finish_replaces(tmp_path):
    target = tmp_path / "a_labels.zarr"
    s = LabelsStore(target, (100, 100))
    s.write((), 0, 0, np.ones((50, 50), np.uint32))
    assert (tmp_path / "a_labels.zarr.partial").is_dir() and not target.exists()
    s.abort()
    assert not (tmp_path / "a_labels.zarr.partial").exists()
    for value in (1, 2):
        s = LabelsStore(target, (100, 100))
        s.write((), 0, 0, np.full((100, 100), value, np.uint32))
        s.finish()
        assert open_labels(target)[0, 0] == value


def test_relabel_updates_every_level(tmp_path):
    s = LabelsStore(tmp_path / "r_labels.ome.zarr", (64, 64), ome=LabelsGeometry("YX"), levels=3)
    block = np.zeros((64, 64), np.uint32)
    block[8:24, 8:24], block[40:56, 40:56] = 5, 9
    s.write((), 0, 0, block)
    s.relabel((), (8, 8, 24, 24), {5: 2})
    for k, arr in enumerate(s.arrays):
        level = np.asarray(arr)
        assert 5 not in level and (level == 2).any() and (level == 9).any(), k


def test_write_refuses_bad_labels_and_names(tmp_path):
    with pytest.raises(SeglabError, match="axes"):
        write_ome_zarr_labels(tmp_path / "x.ome.zarr", np.zeros((4, 4, 4), np.int32), LabelsGeometry("YX"))
    with pytest.raises(SeglabError, match="4,294,967,295"):
        write_ome_zarr_labels(tmp_path / "x.ome.zarr", np.full((4, 4), -1), LabelsGeometry("YX"))
    assert zarr_stem("a/big.ome.zarr") == "big" and zarr_stem("big.zarr") == "big"
    assert pyramid_levels((20000, 20000), 4096) == 8 and pyramid_levels((100, 100), 4096) == 1
    (tmp_path / "d.zarr").mkdir()
    assert is_zarr_path(tmp_path / "d.zarr") and not is_zarr_path(tmp_path)


def test_cli_ome_zarr_output_for_an_in_memory_image(tmp_path, tiny_model_dir):
    from seglab.cli import main
    from tests_helpers import blob_image

    img, _ = blob_image((90, 120), n=8, seed=1)
    tifffile.imwrite(tmp_path / "img.tif", img, resolution=(1 / 0.65, 1 / 0.65), imagej=True,
                     metadata={"unit": "um"})
    out = tmp_path / "out"
    assert main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(tmp_path / "img.tif"), "--ome-zarr",
                 "--device", "cpu", "--diameter", "none", "--prob-thresh", "0.4", "-q"]) == 0
    tif = tifffile.imread(out / "img_labels.tif")
    (node,) = _ome_nodes(out / "img_labels.ome.zarr")
    np.testing.assert_array_equal(np.asarray(node.data[0]), tif)
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([0.65, 0.65])
    assert node.metadata["axes"][0]["unit"] == "micrometer"


def test_time_interval_and_translation_are_written_for_every_level(tmp_path):
    """A T axis gets its frame interval and a time unit; the first pixel's place (translation)
    follows the scale in every level (levels sample level 0 from its first pixel)."""
    lab = np.zeros((3, 600, 520), np.uint32)
    lab[:, 10:40, 10:50] = 4
    geometry = LabelsGeometry("TYX", (0.5, 0.5), "µm", frame_interval=30.0, time_unit="sec",
                              translation=(0.0, 12.5, -3.0))
    path = write_ome_zarr_labels(tmp_path / "t_labels.ome.zarr", lab, geometry)
    (node,) = _ome_nodes(path)
    assert [(a["name"], a["type"], a.get("unit")) for a in node.metadata["axes"]] == [
        ("t", "time", "second"), ("y", "space", "micrometer"), ("x", "space", "micrometer")]
    transforms = node.metadata["coordinateTransformations"]
    assert len(transforms) == len(node.data) >= 2
    for k, (scale, shift) in enumerate(transforms):
        assert scale["scale"] == pytest.approx([30.0, 0.5 * 2**k, 0.5 * 2**k])
        assert shift == {"type": "translation", "translation": [0.0, 12.5, -3.0]}
    from ome_zarr_models.v05.labels import Labels

    Labels.from_zarr(zarr.open_group(str(path), mode="r"))
    # no interval: the T axis keeps scale 1 and no unit; no translation without a shift
    path = write_ome_zarr_labels(tmp_path / "u_labels.ome.zarr", lab, LabelsGeometry("TYX", (0.5, 0.5), "µm",
                                                                                        translation=(0, 0, 0)))
    (node,) = _ome_nodes(path)
    assert "unit" not in node.metadata["axes"][0]
    assert [len(t) for t in node.metadata["coordinateTransformations"]] == [1] * len(node.data)
