import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from seglab.errors import SeglabError
from seglab.io.images import (
    guess_channel_axis, image_series, image_stem, list_images, normalize_unit, pixel_size_um, read_image,
    read_image_data,
)


def test_read_tiff_and_png(tmp_path):
    a = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 100)
    tifffile.imwrite(tmp_path / "a.tif", a)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), a)
    rgb = np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "b.png", rgb)
    back = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(back, rgb)
    assert guess_channel_axis(back) == 2
    assert guess_channel_axis(a) is None


@pytest.mark.parametrize("name,content,match", [
    ("x.tif", b"not a tiff at all", "cannot read"),
    ("x.png", b"\x89PNG broken", "cannot read"),
    ("x.txt", b"hello", "unsupported file type"),
])
def test_bad_files_give_clear_errors(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(SeglabError, match=match):
        read_image(p)


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(SeglabError, match="no such file"):
        read_image(tmp_path / "nope.tif")
    with pytest.raises(SeglabError, match="no image files"):
        list_images([tmp_path])


def test_list_images_expands_folders_sorted(tmp_path):
    for n in ("b.tif", "a.png", "notes.txt"):
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in list_images([tmp_path])] == ["a.png", "b.tif"]


def _write(path, arr, **kw):
    tifffile.imwrite(path, arr, **kw)
    return path


@pytest.mark.parametrize("make, axes, rgb", [
    (lambda p: _write(p, np.zeros((3, 20, 30), np.uint16), imagej=True, metadata={"axes": "CYX"}), "CYX", False),
    (lambda p: _write(p, np.zeros((3, 20, 30), np.uint16), imagej=True, metadata={"axes": "ZYX"}), "ZYX", False),
    (lambda p: _write(p, np.zeros((2, 3, 2, 20, 30), np.uint16), imagej=True, metadata={"axes": "TZCYX"}),
     "TZCYX", False),
    (lambda p: _write(p, np.zeros((20, 30, 3), np.uint8), photometric="rgb"), "YXS", True),
    (lambda p: _write(p, np.zeros((2, 20, 30, 3), np.uint8), imagej=True, photometric="rgb",
                      metadata={"axes": "ZYXS"}), "ZYXS", True),
    (lambda p: _write(p, np.zeros((3, 20, 30), np.uint16), metadata={"axes": "CYX"}), "CYX", False),
    (lambda p: _write(p, np.zeros((3, 20, 30), np.float32), photometric="minisblack"), "QYX", False),
    (lambda p: _write(p, np.zeros((3, 20, 30), np.uint16), photometric="rgb", planarconfig="separate"), "QYX",
     False),
    (lambda p: _write(p, np.zeros((20, 30, 2), np.uint8), photometric="minisblack"), "YXC", False),
])
def test_axes_the_file_declares(tmp_path, make, axes, rgb):
    d = read_image_data(make(tmp_path / "a.tif"))
    assert (d.axes, d.rgb) == (axes, rgb)
    assert len(d.axes) == d.array.ndim


def test_ome_axes_and_physical_size(tmp_path):
    p = tmp_path / "a.ome.tif"
    tifffile.imwrite(p, np.zeros((2, 20, 30), np.uint16),
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeYUnit": "nm"})
    d = read_image_data(p)
    assert d.axes == "CYX" and d.pixel_size == pytest.approx((0.4, 0.3)) and d.unit == "nm"


@pytest.mark.parametrize("units, size, z", [
    ({"PhysicalSizeXUnit": "nm"}, (400.0, 300.0), 2000.0),  # Y and Z without a unit: OME's default, µm
    ({"PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm", "PhysicalSizeZUnit": "mm"}, (0.4, 300.0), 2e6),
    ({"PhysicalSizeYUnit": "nm", "PhysicalSizeZUnit": "nm"}, (4e-4, 300.0), 2e-3),
    ({}, (0.4, 300.0), 2.0),
])
def test_ome_sizes_in_their_own_units_come_in_one_unit(tmp_path, units, size, z):
    p = tmp_path / "a.ome.tif"
    tifffile.imwrite(p, np.zeros((3, 20, 30), np.uint16), photometric="minisblack",
                     metadata={"axes": "ZYX", "PhysicalSizeX": 300, "PhysicalSizeY": 0.4, "PhysicalSizeZ": 2, **units})
    d = read_image_data(p)
    assert d.pixel_size == pytest.approx(size) and d.z_spacing == pytest.approx(z)
    assert d.unit == ("nm" if "PhysicalSizeXUnit" in units else "µm")


def test_each_position_of_an_ome_tiff_has_its_own_calibration(tmp_path):
    p = tmp_path / "wells.ome.tif"
    with tifffile.TiffWriter(p, ome=True) as w:
        w.write(np.zeros((2, 20, 30), np.uint8), metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                                            "PhysicalSizeZ": 2.0})
        w.write(np.zeros((2, 20, 30), np.uint8), metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.3,
                                                            "PhysicalSizeZ": 1.0})
    for lazy in (False, True):
        first, second = (read_image_data(p, lazy=lazy, series=k) for k in (0, 1))
        assert (first.pixel_size, first.z_spacing) == ((0.5, 0.5), 2.0)
        assert (second.pixel_size, second.z_spacing, second.unit) == ((0.3, 0.25), 1.0, "µm")


@pytest.mark.parametrize("kw, size, unit", [
    (dict(imagej=True, resolution=(2.0, 4.0), metadata={"unit": "micron"}), (0.25, 0.5), "µm"),
    (dict(imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um", "axes": "YX"}), (0.5, 0.5), "µm"),
    (dict(resolution=(1e4 / 0.65, 1e4 / 0.65), resolutionunit="CENTIMETER"), (0.65, 0.65), "cm"),
    (dict(resolution=(300.0, 300.0), resolutionunit="INCH"), None, None),  # a print default, not a calibration
    (dict(), None, None),
])
def test_pixel_size_and_unit(tmp_path, kw, size, unit):
    p = _write(tmp_path / "a.tif", np.zeros((20, 30), np.uint16), **kw)
    d = read_image_data(p)
    if size is None:
        assert d.pixel_size is None
    else:
        if unit == "cm":
            size = tuple(s * 1e-4 for s in size)
        assert d.pixel_size == pytest.approx(size)
    assert d.unit == unit


def test_png_axes(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "rgb.png", np.zeros((20, 30, 3), np.uint8))
    iio.imwrite(tmp_path / "la.png", np.zeros((20, 30, 2), np.uint8))
    assert (read_image_data(tmp_path / "rgb.png").axes, read_image_data(tmp_path / "rgb.png").rgb) == ("YXS", True)
    assert (read_image_data(tmp_path / "la.png").axes, read_image_data(tmp_path / "la.png").rgb) == ("YXC", False)


def test_16_bit_colour_png_keeps_its_16_bits(tmp_path):
    import imagecodecs

    rgb = np.random.default_rng(0).integers(0, 65535, (20, 30, 3), dtype=np.uint16)
    (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(rgb))
    d = read_image_data(tmp_path / "rgb16.png")
    assert d.array.dtype == np.uint16 and (d.axes, d.rgb) == ("YXS", True)
    np.testing.assert_array_equal(d.array, rgb)


def test_cmyk_jpeg_is_read_as_rgb_not_rgba(tmp_path):
    from PIL import Image

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[5:15, 5:15] = (200, 120, 40)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    d = read_image_data(tmp_path / "cmyk.jpg")
    assert d.array.shape == (20, 30, 3) and (d.axes, d.rgb) == ("YXS", True)
    np.testing.assert_allclose(d.array[10, 10], (200, 120, 40), atol=12)


def test_palette_png_is_colour_as_an_image_and_indices_as_labels(tmp_path):
    from PIL import Image

    from seglab.io.labels import read_labels

    ids = np.zeros((20, 30), np.uint8)
    ids[2:8, 2:8], ids[10:18, 12:25] = 1, 7
    im = Image.frombytes("P", (30, 20), ids.tobytes())
    im.putpalette([0, 0, 0, 255, 0, 0] + [0, 255, 0] * 254)
    im.save(tmp_path / "p.png")
    d = read_image_data(tmp_path / "p.png")
    assert d.array.shape == (20, 30, 3) and d.rgb and tuple(d.array[5, 5]) == (255, 0, 0)
    np.testing.assert_array_equal(read_labels(tmp_path / "p.png"), ids)


def test_normalize_unit():
    assert [normalize_unit(u) for u in ("um", "micron", "µm", "\\u00B5m", "micrometer", "nm", "pixel", None)] == \
        ["µm", "µm", "µm", "µm", "µm", "nm", None, None]


def test_pixel_size_in_micrometres():
    assert pixel_size_um((0.5, 0.5), "micron") == pytest.approx(0.5)
    assert pixel_size_um((250.0, 250.0), "nm") == pytest.approx(0.25)
    assert pixel_size_um((0.001, 0.001), "mm") == pytest.approx(1.0)
    assert pixel_size_um((0.2, 0.8), "µm") == pytest.approx(0.4)  # anisotropic: the geometric mean
    assert pixel_size_um(None, "µm") is None and pixel_size_um((0.5, 0.5), None) is None
    assert pixel_size_um((0.5, 0.5), "pixel") is None and pixel_size_um((0.0, 0.5), "µm") is None


def test_outputs_are_named_without_the_ome_suffix():
    assert image_stem("cells.ome.tif") == "cells" and image_stem("cells.OME.TIFF") == "cells"
    assert image_stem("cells.tif") == "cells" and image_stem("x/big.ome.zarr") == "big"
    assert image_stem(".ome.tif") == ".ome"  # nothing left to name it after


def test_a_file_of_several_images_says_only_the_first_is_read(tmp_path):
    """A multi-position OME-TIFF (or any TIFF of several series) is never read partly in silence;
    an image's pyramid levels are not other images."""
    import warnings

    from seglab.errors import SeglabWarning

    def warned(path, **kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = read_image_data(path, **kw)
        return data, [str(w.message) for w in caught if issubclass(w.category, SeglabWarning)]

    a, b = np.ones((30, 40), np.uint8), np.ones((20, 20), np.uint8)
    with tifffile.TiffWriter(tmp_path / "positions.ome.tif", ome=True) as w:
        w.write(a, metadata={"axes": "YX"})
        w.write(b, metadata={"axes": "YX"})
    for lazy in (False, True):
        data, msgs = warned(tmp_path / "positions.ome.tif", lazy=lazy)
        assert data.array.shape == (30, 40)
        assert msgs == ["positions.ome.tif holds 2 images (ome series: 30x40, 20x20); only the first is read: "
                        "`seglab segment --series all` segments each into its own outputs (or save each as its own "
                        "file, e.g. Fiji's Bio-Formats, 'open all series')"]
        for k, shape in ((0, (30, 40)), (1, (20, 20))):  # one chosen: read, no warning
            data, msgs = warned(tmp_path / "positions.ome.tif", lazy=lazy, series=k)
            assert data.array.shape == shape and data.axes == "YX" and msgs == []
        with pytest.raises(SeglabError, match="positions.ome.tif has no image \\(series\\) 2: it holds 2"):
            read_image_data(tmp_path / "positions.ome.tif", lazy=lazy, series=2)
    assert image_series(tmp_path / "positions.ome.tif") == [0, 1]
    with tifffile.TiffWriter(tmp_path / "pyramid.ome.tif", ome=True) as w:
        w.write(np.ones((64, 64), np.uint8), subifds=1, metadata={"axes": "YX"})
        w.write(np.ones((32, 32), np.uint8), subfiletype=1)
    assert warned(tmp_path / "pyramid.ome.tif")[1] == []
    assert image_series(tmp_path / "pyramid.ome.tif") == [0]
    tifffile.imwrite(tmp_path / "one.tif", a)
    assert warned(tmp_path / "one.tif")[1] == []
    assert image_series(tmp_path / "one.tif") == [0]


def test_series_of_other_files(tmp_path):
    """PNGs and the like hold one image: series 0 reads it, others are a clear error; a corrupt TIFF
    cannot be listed."""
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    assert image_series(tmp_path / "a.png") == [0]
    assert read_image_data(tmp_path / "a.png", series=0).array.shape == (8, 8)
    with pytest.raises(SeglabError, match="a.png holds one image; there is no series 1"):
        read_image_data(tmp_path / "a.png", series=1)
    (tmp_path / "bad.tif").write_bytes(b"not a TIFF at all")
    with pytest.raises(SeglabError, match="cannot read bad.tif"):
        image_series(tmp_path / "bad.tif")


def test_a_slides_side_images_are_not_other_images():
    import warnings
    from types import SimpleNamespace as NS

    from seglab.io.images import _pick_series, data_series, warn_other_images

    slide = NS(series=[NS(name="Baseline", shape=(900, 800, 3), kind="svs"),
                       NS(name="Thumbnail", shape=(90, 80, 3), kind="svs"),
                       NS(name="Label", shape=(50, 50, 3), kind="svs"), NS(name="Macro", shape=(60, 90, 3), kind="svs")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_other_images(slide, "slide.svs")
    assert data_series(slide) == [0]
    slide.series.append(NS(name="Image1", shape=(900, 800, 3), kind="svs"))
    with pytest.warns(UserWarning, match=r"slide.svs holds 2 images \(svs series: 900x800x3, 900x800x3\)"):
        warn_other_images(slide, "slide.svs")
    assert data_series(slide) == [0, 4]
    # a thumbnail stored first: the image read by default is the first data image
    scan = NS(series=[NS(name="Thumbnail", shape=(9, 8), kind="generic"), NS(name="", shape=(90, 80), kind="generic")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _pick_series(scan, "scan.tif", None) == (1, scan.series[1])
    assert _pick_series(scan, "scan.tif", 0) == (0, scan.series[0])  # asked for
