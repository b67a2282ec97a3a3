import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from seglab.errors import SeglabError
from seglab.io.images import guess_channel_axis, list_images, read_image


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
