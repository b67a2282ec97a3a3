"""One file in, its outputs out: the unit of ``seglab segment`` and of batches."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from seglab.errors import SeglabError
from seglab.files import SegmentOptions, input_axes, is_finished, segment_file_iter
from seglab.io import read_labels
from seglab.io.images import read_image_data
from seglab.outputs import resolve_outputs
from seglab.progress import run_to_end


def test_segment_file_writes_outputs_and_marks_finished(tmp_path, discs, tiny_model):
    image, _ = discs
    src = tmp_path / "cells.tif"
    tifffile.imwrite(src, image)
    kinds = resolve_outputs(["objects"], tiny_model)
    out = tmp_path / "out"
    out.mkdir()
    assert not is_finished(src, out, kinds)
    done = run_to_end(segment_file_iter(tiny_model, src, out, kinds, SegmentOptions(diameter=None), keep_result=True))
    assert set(done.outputs) == {"objects", "labels"}
    assert all(p.exists() for p in done.outputs.values())
    assert is_finished(src, out, kinds)
    labels = read_labels(done.outputs["labels"])
    assert labels.shape == image.shape
    assert done.n_objects == len(np.unique(labels[labels > 0])) == done.result.n_objects
    assert done.size == "diameter unknown, not rescaled"  # diameter=None: the image is used as it is


def test_a_half_run_is_not_finished(tmp_path, discs, tiny_model):
    """An image whose side files exist but whose labels do not is not done."""
    image, _ = discs
    src = tmp_path / "cells.tif"
    tifffile.imwrite(src, image)
    kinds = resolve_outputs(["objects"])
    (tmp_path / "cells_objects.csv").write_text("label\n")
    assert not is_finished(src, tmp_path, kinds)


def test_input_axes_rules(tmp_path):
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((32, 40, 3), np.uint8), photometric="rgb")
    data = read_image_data(rgb)
    assert input_axes(data, "rgb.tif") == {"axes": "YXS", "rgb": True}
    assert input_axes(data, "rgb.tif", axes="YXC") == {"axes": "YXC", "rgb": False}
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.zeros((2, 32, 40), np.uint16))
    with pytest.raises(SeglabError):
        input_axes(read_image_data(two), "two.tif")
    assert input_axes(read_image_data(two), "two.tif", channel_axis=0)["axes"][0] == "C"
    with pytest.raises(SeglabError, match="does not exist"):
        input_axes(read_image_data(two), "two.tif", channel_axis=5)
