import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")

from seglab.plugin.reader import get_reader  # noqa: E402
from seglab.plugin.writer import write_labels  # noqa: E402
from seglab.samples import sample_paths  # noqa: E402


def test_reader_claims_label_files_only(tmp_path):
    img_path, lab_path = sample_paths("stained")
    assert get_reader(str(img_path)) is None  # plain images: napari's own reader
    labels_copy = tmp_path / "x_labels.tif"
    labels_copy.write_bytes(lab_path.read_bytes())
    (_, _, kind), = get_reader(str(labels_copy))(str(labels_copy))
    assert kind == "labels"
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_viewer_opens_a_plain_tiff_without_asking_for_a_reader(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, np.zeros((3, 20, 30), np.uint16), photometric="minisblack")
    # plugin=None: what File > Open does (napari's viewer.open defaults to its own reader); this
    # raised MultipleReaderError (and File > Open asked the user) when this plugin claimed every TIFF
    layers = viewer.open(str(path), plugin=None)
    assert len(layers) == 1 and isinstance(layers[0], napari.layers.Image)


def test_viewer_opens_a_label_tiff_as_labels_with_scale_and_unit(make_napari_viewer, tmp_path):
    from seglab.io.labels import write_labels as write_label_tiff

    viewer = make_napari_viewer()
    lab = np.zeros((20, 30), np.uint16)
    lab[2:6, 3:9] = 4
    path = write_label_tiff(tmp_path / "x_labels.tif", lab, scale=(0.5, 0.25), unit="um")
    layers = viewer.open(str(path), plugin="napari-seglab")
    assert len(layers) == 1 and isinstance(layers[0], napari.layers.Labels)
    assert list(layers[0].scale) == pytest.approx([0.5, 0.25])
    assert [str(u) for u in layers[0].units] == ["micrometer", "micrometer"]
    np.testing.assert_array_equal(layers[0].data, lab)


def test_writer_keeps_the_layer_unit(tmp_path):
    import pint

    ureg = pint.get_application_registry()
    lab = np.ones((10, 12), np.int32)
    out = write_labels(str(tmp_path / "u.tif"), lab, {"scale": (0.5, 0.5), "units": (ureg.micrometer, ureg.micrometer)})
    with tifffile.TiffFile(out[0]) as tif:
        assert tif.imagej_metadata["unit"] == "micron"
    out = write_labels(str(tmp_path / "p.tif"), lab, {"scale": (1.0, 1.0), "units": (ureg.pixel, ureg.pixel)})
    with tifffile.TiffFile(out[0]) as tif:
        assert "unit" not in tif.imagej_metadata


def test_writer_keeps_a_time_stack_as_frames(tmp_path):
    """A T-stack layer used to be written as Z slices 60 um apart (Fiji showed slices)."""
    lab = np.zeros((3, 10, 12), np.int32)
    lab[:, 2:5, 3:7] = 1
    meta = {"scale": (60.0, 0.5, 0.5), "units": ("s", "um", "um"), "axis_labels": ("t", "y", "x")}
    out = write_labels(str(tmp_path / "t.tif"), lab, meta)
    with tifffile.TiffFile(out[0]) as tif:
        ij = tif.imagej_metadata
        assert tif.series[0].axes == "TYX" and ij["frames"] == 3 and "spacing" not in ij
        assert (ij["finterval"], ij["tunit"], ij["unit"]) == (60.0, "sec", "micron")
    meta = {"scale": (2.0, 1.0, 0.5, 0.5), "units": ("um", "pixel", "um", "um"), "axis_labels": ("z", "t", "y", "x")}
    out = write_labels(str(tmp_path / "zt.tif"), np.stack([lab] * 2), meta)  # not ImageJ's order: plain ZYX
    with tifffile.TiffFile(out[0]) as tif:
        assert "finterval" not in tif.imagej_metadata
    meta = {"scale": (1.0, 0.5, 0.5), "units": ("pixel", "um", "um"), "axis_labels": ("z", "y", "x")}
    out = write_labels(str(tmp_path / "z.tif"), lab, meta)
    with tifffile.TiffFile(out[0]) as tif:  # an uncalibrated Z axis: no spacing of 1
        assert tif.series[0].axes == "ZYX" and "spacing" not in tif.imagej_metadata


def test_writer_round_trip_keeps_scale(tmp_path):
    lab = np.zeros((30, 40), np.int32)
    lab[3:9, 4:20] = 5
    out = write_labels(str(tmp_path / "seg_labels.tif"), lab, {"scale": (0.25, 0.25)})
    with tifffile.TiffFile(out[0]) as tif:
        assert tif.pages[0].dtype == np.uint16
        np.testing.assert_array_equal(tif.asarray(), lab)
    (data, kwargs, kind), = get_reader(out[0])(out[0])
    assert kwargs["scale"] == pytest.approx([0.25, 0.25])


def test_save_layer_through_napari_uses_plugin_writer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    lab = np.zeros((20, 20), np.int32)
    lab[2:5, 2:5] = 70000  # forces uint32
    viewer.add_labels(lab, scale=(2.0, 2.0))
    paths = viewer.layers.save(str(tmp_path / "saved.tif"), selected=False, plugin="napari-seglab")
    assert paths
    back = tifffile.imread(paths[0])
    assert back.dtype == np.uint32 and back.max() == 70000
    from seglab.io.labels import read_resolution

    assert read_resolution(paths[0]) == pytest.approx((2.0, 2.0))


def test_manifest_samples_open(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-seglab", "stained")
    assert [lyr.name.startswith("dsb2018-") for lyr in viewer.layers] == [True, True]
