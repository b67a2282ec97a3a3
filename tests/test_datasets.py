"""Annotated folders: which image axis holds the channels is read from the labels' shape."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from seglab.datasets import channel_axis_for, load_annotated, pair_folders, pick_channels
from seglab.errors import SeglabError


@pytest.mark.parametrize("shape, axis", [((2, 20, 30), 0), ((20, 30, 3), 2), ((20, 2, 30), 1), ((20, 30), None)])
def test_channel_axis_from_labels_shape(shape, axis):
    assert channel_axis_for(shape, (20, 30)) == axis


def test_ambiguous_shapes_follow_the_declared_axes():
    assert channel_axis_for((3, 3, 3), (3, 3), "CYX") == 0
    assert channel_axis_for((3, 3, 3), (3, 3), "YXS") == 2
    assert channel_axis_for((3, 3, 3), (3, 3)) == 2


def test_mismatch_is_a_clear_error():
    with pytest.raises(SeglabError, match="differ in shape"):
        channel_axis_for((2, 20, 31), (20, 30), name="a.tif")
    with pytest.raises(SeglabError, match="a.tif"):
        channel_axis_for((20, 30, 2, 2), (20, 30), name="a.tif")


def test_two_channel_stack_is_not_taken_for_rgb(tmp_path):
    """A (2, H, W) fluorescence pair used to be read without a channel axis (shape mismatch)."""
    img = np.stack([np.full((20, 30), 10, np.uint16), np.full((20, 30), 200, np.uint16)])
    lab = np.zeros((20, 30), np.uint16)
    lab[5:10, 5:10] = 1
    tifffile.imwrite(tmp_path / "a.tif", img)
    tifffile.imwrite(tmp_path / "a_labels.tif", lab)
    item = load_annotated(tmp_path / "a.tif", tmp_path / "a_labels.tif")
    assert item.channel_axis == 0 and item.image.shape == (2, 20, 30) and item.labels.max() == 1


def test_pick_channels():
    img = np.arange(3 * 4 * 5).reshape(4, 5, 3)  # RGB-like, channels last
    same, ca = pick_channels(img, 2, None)
    assert same is img and ca == 2
    one, ca = pick_channels(img, 2, [1])
    assert ca is None and np.array_equal(one, img[..., 1])
    two, ca = pick_channels(img, 2, [2, 0])
    assert ca == 0 and np.array_equal(two, np.stack([img[..., 2], img[..., 0]]))  # first: never taken for RGB
    whole, ca = pick_channels(img, 2, [0, 1, 2])
    assert whole is img and ca == 2  # all of them, in order: as they were (RGB stays RGB)
    grey = np.zeros((4, 5))
    assert pick_channels(grey, None, [0])[0] is grey
    with pytest.raises(SeglabError, match="one channel"):
        pick_channels(grey, None, [1])
    with pytest.raises(SeglabError, match=r"channel\(s\) \[3\] do not exist"):
        pick_channels(img, 2, [3])


def _touch(folder, *names):
    folder.mkdir(exist_ok=True)
    for name in names:
        tifffile.imwrite(folder / name, np.zeros((4, 5), np.uint16))


def test_one_folder_pairs_images_with_their_label_files_not_themselves(tmp_path):
    """Cellpose's layout: x.tif beside x_labels.tif (or x_masks.tif), images and labels in one folder."""
    _touch(tmp_path, "a.tif", "a_labels.tif", "b.tif", "b_masks.tif")
    pairs = pair_folders(tmp_path, tmp_path)
    assert [(i.name, lab.name) for i, lab in pairs] == [("a.tif", "a_labels.tif"), ("b.tif", "b_masks.tif")]
    (tmp_path / "b_masks.tif").unlink()
    with pytest.raises(SeglabError, match=r"1 image\(s\) have no label file .*b.tif \(looked for b_labels"):
        pair_folders(tmp_path, tmp_path)


def test_a_labels_file_wins_over_one_of_the_same_name(tmp_path):
    _touch(tmp_path / "images", "a.tif", "b.tif")
    _touch(tmp_path / "labels", "a.tif", "a_labels.tif", "b.tif")
    pairs = pair_folders(tmp_path / "images", tmp_path / "labels")
    assert [(i.name, lab.parent.name, lab.name) for i, lab in pairs] == [
        ("a.tif", "labels", "a_labels.tif"), ("b.tif", "labels", "b.tif")]  # DSB2018: same names


def test_ome_tiffs_pair_without_their_ome(tmp_path):
    _touch(tmp_path / "images", "a.ome.tif", "b.ome.tiff")
    _touch(tmp_path / "labels", "a_labels.tif", "b.ome.tif")
    pairs = pair_folders(tmp_path / "images", tmp_path / "labels")
    assert [(i.name, lab.name) for i, lab in pairs] == [("a.ome.tif", "a_labels.tif"), ("b.ome.tiff", "b.ome.tif")]


def test_a_grey_images_one_channel_picked_twice_is_named_so():
    with pytest.raises(SeglabError, match="a.tif has one channel; pick it once \\(channel 0\\), not 2 times"):
        pick_channels(np.zeros((4, 5)), None, [0, 0], "a.tif")
    with pytest.raises(SeglabError, match=r"channel\(s\) \[2\] do not exist"):
        pick_channels(np.zeros((4, 5)), None, [0, 2], "a.tif")
