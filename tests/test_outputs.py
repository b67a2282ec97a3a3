"""The output registry: which files a segmented image gives, in which order."""

from __future__ import annotations

import pytest

from seglab.errors import SeglabError
from seglab.outputs import (LABELS, OutputContext, OutputKind, labels_calibration, output_paths, register_output,
                            resolve_outputs, write_outputs)


class _Model:
    shape_type = None
    has_boxes = False
    family = "unet"

    class config:
        name = "m"


def test_labels_always_resolved_and_last():
    kinds = resolve_outputs(["labels", "objects"])
    assert [k.name for k in kinds] == ["objects", LABELS]
    assert [k.name for k in resolve_outputs([])] == [LABELS]


def test_unknown_output_and_model_checks_are_clear_errors():
    with pytest.raises(SeglabError, match="unknown output 'nope'"):
        resolve_outputs(["nope"])
    with pytest.raises(SeglabError, match="gives no outlines"):
        resolve_outputs(["rois"], _Model())
    with pytest.raises(SeglabError, match="does not detect boxes"):
        resolve_outputs(["boxes"], _Model())


def test_write_outputs_writes_labels_last(tmp_path, monkeypatch):
    order = []

    def recorder(name):
        return lambda path, result, ctx: order.append((name, path.name))

    import seglab.outputs as outputs

    monkeypatch.setattr(outputs, "_OUTPUTS", dict(outputs._OUTPUTS))
    register_output(OutputKind(LABELS, "_labels.tif", recorder(LABELS)))
    register_output(OutputKind("extra", "_extra.txt", recorder("extra")))
    ctx = OutputContext(data=None, axes="YX", stem="img", model=None)
    paths = write_outputs(object(), ctx, tmp_path, [outputs._OUTPUTS[LABELS], outputs._OUTPUTS["extra"]])
    assert order == [("extra", "img_extra.txt"), (LABELS, "img_labels.tif")]
    assert paths == output_paths("img", tmp_path, resolve_outputs(["extra"]))


def test_labels_calibration_stack_axes():
    class Data:
        pixel_size = (0.5, 0.25)
        z_spacing = 2.0
        frame_interval = 60.0

    assert labels_calibration(Data, "ZYX", 3) == ([2.0, 0.5, 0.25], "ZYX")
    assert labels_calibration(Data, "YXC", 2) == ([0.5, 0.25], "YX")
    assert labels_calibration(Data, "TZCYX", 4) == ([60.0, 2.0, 0.5, 0.25], "TZYX")
    Data.z_spacing = Data.frame_interval = None  # a stack without spacing: none written (not 1.0)
    assert labels_calibration(Data, "TZYX", 4) == ([None, None, 0.5, 0.25], "TZYX")
    assert labels_calibration(Data, "QYX", 3) == ([None, 0.5, 0.25], None)
    Data.pixel_size = None
    assert labels_calibration(Data, "TZYX", 4) == (None, "TZYX")
    assert labels_calibration(Data, "ZTYX", 4) == (None, None)  # not ImageJ's order


def test_seglabs_label_images_carry_its_mark_and_others_do_not(tmp_path):
    """The label image a run writes has seglab's Software tag (ImageJ uint16 and plain uint32 TIFFs
    alike); the user's own TIFF, junk and a missing file are not seglab's; a zarr store folder is."""
    from types import SimpleNamespace

    import numpy as np
    import tifffile

    from seglab import __version__
    from seglab.outputs import output_kinds, written_by_seglab

    write = output_kinds()[LABELS].write
    data = SimpleNamespace(pixel_size=(0.5, 0.5), unit="µm", z_spacing=None, frame_interval=None,
                           time_unit=None)
    ctx = OutputContext(data=data, axes="YX", stem="img", model=_Model())
    for name, top in (("small_labels.tif", 5), ("large_labels.tif", 70_000)):
        labels = np.zeros((8, 8), np.int64)
        labels[0, 0] = top
        write(tmp_path / name, SimpleNamespace(labels=labels), ctx)
        assert written_by_seglab(tmp_path / name)
        with tifffile.TiffFile(tmp_path / name) as tif:
            assert tif.pages[0].software == f"seglab {__version__}"
    tifffile.imwrite(tmp_path / "mine_labels.tif", np.ones((8, 8), np.uint16))
    (tmp_path / "junk_labels.tif").write_bytes(b"not a TIFF")
    assert not written_by_seglab(tmp_path / "mine_labels.tif") and not written_by_seglab(tmp_path / "junk_labels.tif")
    assert not written_by_seglab(tmp_path / "missing_labels.tif")
    (tmp_path / "big_labels.zarr").mkdir()
    assert written_by_seglab(tmp_path / "big_labels.zarr")
