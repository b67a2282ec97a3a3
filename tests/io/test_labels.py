import numpy as np
import pytest
import tifffile

from seglab.errors import SeglabError
from seglab.io.images import read_image_data
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
        assert tif.imagej_metadata.get("unit") == "micron"  # ImageJ's own spelling of µm
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


@pytest.mark.parametrize("unit, ij_unit, resunit", [("µm", "micron", 1), ("um", "micron", 1), ("micron", "micron", 1),
                                                    ("nm", "nm", 1), ("cm", "cm", 3), ("inch", "inch", 2)])
def test_unit_is_kept_as_imagej_writes_it(tmp_path, unit, ij_unit, resunit):
    p = write_labels(tmp_path / "u.tif", np.ones((8, 10), np.uint16), scale=(0.4, 0.2), unit=unit)
    with tifffile.TiffFile(p) as tif:
        assert tif.imagej_metadata["unit"] == ij_unit
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == resunit
        xn, xd = tags["XResolution"].value
        yn, yd = tags["YResolution"].value
        assert (yd / yn, xd / xn) == pytest.approx((0.4, 0.2))  # pixel size in the unit, as Fiji reads it


def test_uint32_plain_tiff_keeps_the_unit_as_centimetres(tmp_path):
    lab = np.arange(300 * 300, dtype=np.int64).reshape(300, 300)
    p = write_labels(tmp_path / "many.tif", lab, scale=(0.5, 0.25), unit="µm")
    with tifffile.TiffFile(p) as tif:
        page = tif.pages[0]
        assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER
        assert page.get_resolution("MICROMETER") == pytest.approx((1 / 0.25, 1 / 0.5))


def test_unknown_unit_is_refused(tmp_path):
    with pytest.raises(SeglabError, match="unknown length unit"):
        write_labels(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), scale=(1.0, 1.0), unit="parsec")
    assert not list(tmp_path.iterdir())


def test_written_unit_and_size_read_back_as_image_data(tmp_path):
    from seglab.io.images import read_image_data

    p = write_labels(tmp_path / "z_labels.tif", np.ones((2, 8, 10), np.uint16), scale=(3.0, 0.4, 0.2), unit="um")
    d = read_image_data(p)
    assert d.axes == "ZYX" and d.unit == "µm" and d.pixel_size == pytest.approx((0.4, 0.2))
    assert d.z_spacing == pytest.approx(3.0)


def test_time_stack_is_written_as_frames_with_their_interval(tmp_path):
    lab = np.zeros((3, 10, 12), np.uint16)
    lab[:, 2:5, 3:7] = 1
    p = write_labels(tmp_path / "t.tif", lab, scale=(60.0, 0.5, 0.5), unit="um", axes="TYX", time_unit="s")
    with tifffile.TiffFile(p) as tif:
        ij = tif.imagej_metadata
        assert tif.series[0].axes == "TYX" and ij["frames"] == 3 and "slices" not in ij and "spacing" not in ij
        assert ij["finterval"] == 60.0 and ij["tunit"] == "sec" and ij["unit"] == "micron"
    d = read_image_data(p)
    assert (d.axes, d.frame_interval, d.time_unit) == ("TYX", 60.0, "sec")


def test_unknown_stack_spacing_is_not_written(tmp_path):
    p = write_labels(tmp_path / "z.tif", np.zeros((2, 10, 12), np.uint16), scale=(None, 0.5, 0.5), unit="um")
    with tifffile.TiffFile(p) as tif:
        assert tif.imagej_metadata["slices"] == 2 and "spacing" not in tif.imagej_metadata
    assert read_image_data(p).z_spacing is None


def test_a_binary_mask_read_as_labels_is_named_as_one(tmp_path):
    """A 0/255 mask of several nuclei read as labels warns that it counts as one object; labels of
    one nucleus in one piece, or of several ids, read quietly."""
    import warnings

    from seglab.errors import SeglabWarning
    from seglab.io.labels import mask_pieces, read_labels

    mask = np.zeros((32, 32), np.uint8)
    mask[2:8, 2:8] = mask[20:30, 12:20] = mask[10:14, 25:30] = 255
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    with pytest.warns(SeglabWarning, match="one id in 3 separate pieces"):
        read_labels(tmp_path / "mask.tif")
    one, labels = np.zeros((32, 32), np.uint16), (mask > 0).astype(np.uint16)
    one[2:8, 2:8] = 1
    labels[20:30, 12:20] = 2
    for name, arr in (("one.tif", one), ("labels.tif", labels), ("empty.tif", np.zeros((8, 8), np.uint16))):
        tifffile.imwrite(tmp_path / name, arr)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            read_labels(tmp_path / name)
    assert mask_pieces(np.stack([mask, mask])) == 3  # the same pieces in two planes touch across them
