import numpy as np
import pytest
import roifile

from seglab.errors import SeglabError
from seglab.io.rois import write_roi_zip


def _tri(y, x):
    return np.array([[y, x], [y, x + 10], [y + 8, x + 5]], dtype=np.float64)


def test_roi_set_round_trip_names_and_coordinates(tmp_path):
    path = write_roi_zip(tmp_path / "cells_rois.zip", [_tri(5, 5), _tri(20, 30)], [7, 12])
    rois = roifile.roiread(path)
    assert [r.name for r in rois] == ["0007", "0012"]
    # ImageJ coordinates are (x, y) with pixel centres at +0.5
    np.testing.assert_allclose(rois[1].coordinates(), _tri(20, 30)[:, ::-1] + 0.5, atol=1e-4)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_roi_positions_for_stacks(tmp_path):
    path = write_roi_zip(tmp_path / "s.zip", [_tri(5, 5), _tri(5, 5)], [1, 2], positions=[0, 2])
    assert [r.position for r in roifile.roiread(path)] == [1, 3]


def test_roi_set_replaces_an_existing_file_whole(tmp_path):
    path = tmp_path / "r.zip"
    write_roi_zip(path, [_tri(0, 0)] * 3, [1, 2, 3])
    write_roi_zip(path, [_tri(0, 0)], [9])
    assert [r.name for r in roifile.roiread(path)] == ["0009"]


@pytest.mark.parametrize(
    "outlines, labels, name, message",
    [
        ([], [], "a.zip", "no objects"),
        ([_tri(0, 0)], [1], "a.roi", ".zip"),
        ([np.zeros((2, 2))], [1], "a.zip", "not a polygon"),
        ([_tri(0, 0)], [1, 2], "a.zip", "differ in length"),
    ],
)
def test_bad_roi_input_is_refused_and_writes_nothing(tmp_path, outlines, labels, name, message):
    with pytest.raises(SeglabError, match=message):
        write_roi_zip(tmp_path / name, outlines, labels)
    assert list(tmp_path.iterdir()) == []
