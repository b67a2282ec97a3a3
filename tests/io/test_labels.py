import numpy as np
import pytest
import tifffile

from seglab.errors import SeglabError
from seglab.io.labels import read_resolution, write_labels


def test_uint16_round_trip_with_resolution_and_compression(tmp_path):
    lab = np.zeros((40, 50), dtype=np.int32)
    lab[5:10, 5:10] = 1
    lab[20:30, 30:45] = 7
    p = write_labels(tmp_path / "x_labels.tif", lab, scale=(0.5, 0.25), unit="um")
    with tifffile.TiffFile(p) as tif:
        assert tif.is_imagej
        page = tif.pages[0]
        assert page.compression != tifffile.COMPRESSION.NONE
        back = tif.asarray()
        assert tif.imagej_metadata.get("unit") == "um"
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, lab)
    assert read_resolution(p) == pytest.approx((0.5, 0.25))


def test_more_than_65535_objects_become_uint32(tmp_path):
    lab = np.arange(300 * 300, dtype=np.int64).reshape(300, 300)
    p = write_labels(tmp_path / "many.tif", lab)
    back = tifffile.imread(p)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, lab)


def test_stack_keeps_z_spacing(tmp_path):
    lab = np.zeros((3, 16, 16), dtype=np.uint16)
    lab[1, 2:5, 2:5] = 4
    p = write_labels(tmp_path / "z.tif", lab, scale=(2.0, 0.5, 0.5))
    with tifffile.TiffFile(p) as tif:
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
        np.testing.assert_array_equal(tif.asarray(), lab)


def test_failed_write_keeps_existing_file(tmp_path):
    p = tmp_path / "keep.tif"
    write_labels(p, np.ones((4, 4), dtype=np.uint8))
    before = p.read_bytes()
    with pytest.raises(SeglabError):
        write_labels(p, np.full((4, 4), -1, dtype=np.int32))
    with pytest.raises(SeglabError):
        write_labels(p, np.full((4, 4), 0.5))
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["keep.tif"]


def test_bad_scale_is_rejected(tmp_path):
    with pytest.raises(SeglabError, match="scale"):
        write_labels(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), scale=(1.0,))


def test_written_files_are_not_private(tmp_path):
    import os
    import stat

    p = write_labels(tmp_path / "perm.tif", np.ones((4, 4), np.uint8))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
