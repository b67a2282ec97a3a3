import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")

from seglab.plugin.reader import get_reader  # noqa: E402
from seglab.plugin.writer import write_labels  # noqa: E402
from seglab.samples import sample_paths  # noqa: E402


def test_reader_opens_images_and_label_files(tmp_path):
    img_path, lab_path = sample_paths("stained")
    layers = get_reader(str(img_path))(str(img_path))
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs["rgb"] and data.shape == (256, 320, 3)
    labels_copy = tmp_path / "x_labels.tif"
    labels_copy.write_bytes(lab_path.read_bytes())
    (_, _, kind), = get_reader(str(labels_copy))(str(labels_copy))
    assert kind == "labels"
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_writer_round_trip_keeps_scale(tmp_path):
    lab = np.zeros((30, 40), np.int32)
    lab[3:9, 4:20] = 5
    out = write_labels(str(tmp_path / "seg.tif"), lab, {"scale": (0.25, 0.25)})
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
