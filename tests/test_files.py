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


@pytest.fixture(scope="module")
def disc_model():
    """A U-Net stand-in that finds the bright discs (known results without training)."""
    from seglab.models.base import ModelConfig
    from seglab.models.unet import UNetModel
    from tests_helpers import threshold_net

    cfg = ModelConfig(name="discs", family="unet", tile_context=16,
                      thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    return UNetModel(cfg, network=threshold_net())


def _two_positions(path, a, b):
    with tifffile.TiffWriter(path, ome=True) as w:
        w.write(a, metadata={"axes": "YX"})
        w.write(b, metadata={"axes": "YX"})


def test_each_image_of_a_multi_position_tiff_gets_its_own_outputs(tmp_path, discs, disc_model):
    """``series="all"`` (the default): every position segmented as if it were its own file, into
    ``<stem>_s<k>_...``; the file counts as finished only when all are written."""
    import warnings

    from seglab.errors import SeglabWarning

    image, _ = discs
    second = np.ascontiguousarray(image[::-1, ::-1][: image.shape[0] // 2])
    src = tmp_path / "wells.ome.tif"
    _two_positions(src, image, second)
    kinds = resolve_outputs(["objects"], disc_model)
    out = tmp_path / "out"
    out.mkdir()
    fractions = []
    gen = segment_file_iter(disc_model, src, out, kinds, SegmentOptions(diameter=None), keep_result=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeglabWarning)  # nothing left out, so nothing to warn about
        done = run_to_end(gen, lambda ev: fractions.append(ev.fraction))
    assert [k for k, _ in done.parts] == [0, 1]
    assert fractions == sorted(fractions) and fractions[-1] <= 1.0 and max(fractions) > 0.5
    for k, im in ((0, image), (1, second)):
        part = dict(done.parts)[k]
        assert part.outputs["labels"] == out / f"wells_s{k}_labels.tif"
        alone = run_to_end(segment_file_iter(disc_model, _alone(tmp_path, k, im), tmp_path / f"alone{k}", kinds,
                                             SegmentOptions(diameter=None)))
        np.testing.assert_array_equal(read_labels(part.outputs["labels"]), read_labels(alone.outputs["labels"]))
        assert part.n_objects == alone.n_objects > 0
        assert (out / f"wells_s{k}_objects.csv").exists()
    assert done.outputs == dict(done.parts)[0].outputs
    assert done.n_objects == sum(p.n_objects for _, p in done.parts)
    assert is_finished(src, out, kinds)
    (out / "wells_s1_labels.tif").unlink()
    assert not is_finished(src, out, kinds)  # one position missing: to do again
    assert is_finished(src, out, kinds, series=(0,))


def _alone(tmp_path, k, image):
    path = tmp_path / f"alone{k}" / "one.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, image)
    return path


def test_first_or_chosen_images_of_a_multi_position_tiff(tmp_path, discs, disc_model):
    image, _ = discs
    src = tmp_path / "wells.ome.tif"
    _two_positions(src, image, image[:40, :50].copy())
    kinds = resolve_outputs([], disc_model)
    done = run_to_end(segment_file_iter(disc_model, src, tmp_path / "a", kinds, SegmentOptions(diameter=None, series="first")))
    assert done.parts == () and done.outputs["labels"] == tmp_path / "a" / "wells_labels.tif"  # named as the file
    assert read_labels(done.outputs["labels"]).shape == image.shape
    done = run_to_end(segment_file_iter(disc_model, src, tmp_path / "b", kinds, SegmentOptions(diameter=None, series=(1,))))
    assert [k for k, _ in done.parts] == [1] and sorted(p.name for p in (tmp_path / "b").iterdir()) == ["wells_s1_labels.tif"]
    assert read_labels(tmp_path / "b" / "wells_s1_labels.tif").shape == (40, 50)
    with pytest.raises(SeglabError, match=r"wells.ome.tif holds 2 image\(s\) \(series 0, 1\); no series 3"):
        run_to_end(segment_file_iter(disc_model, src, tmp_path / "c", kinds, SegmentOptions(series=(0, 3))))
    # a file of one image: its series 0 is the file, named as the file
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, image)
    done = run_to_end(segment_file_iter(disc_model, one, tmp_path / "d", kinds, SegmentOptions(diameter=None, series=(0,))))
    assert done.parts == () and done.outputs["labels"].name == "one_labels.tif"


def test_parse_series():
    from seglab.files import parse_series

    assert parse_series("all") == "all" and parse_series(" First ") == "first" and parse_series(None) == "all"
    assert parse_series("0,2, 5") == (0, 2, 5) and parse_series("3") == (3,) and parse_series([1, 0]) == (1, 0)
    for bad in ("x", "", "1,,a", "-1", "1,1"):
        with pytest.raises(SeglabError):
            parse_series(bad)
