"""Folders of small synthetic images for batch tests."""

from __future__ import annotations

import pytest
import tifffile

from tests_helpers import blob_image


def write_images(folder, n, shape=(96, 112), corrupt=()):
    """``n`` blob images ``img<i>.tif`` (those in ``corrupt`` are junk bytes); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.tif"
        if i in corrupt:
            p.write_bytes(b"this is not a TIFF file")
        else:
            tifffile.imwrite(p, blob_image(shape, n=6, seed=i)[0])
        paths.append(p)
    return paths


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 4)
    return folder


@pytest.fixture
def bad_folder(tmp_path):
    """Four images, the second of them corrupt."""
    folder = tmp_path / "imgs"
    write_images(folder, 4, corrupt=(1,))
    return folder


@pytest.fixture
def local_cluster():
    """A small in-process Dask cluster (threads) and its scheduler address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture
def make_images():
    """:func:`write_images` for tests that need other counts, sizes or corrupt files."""
    return write_images
