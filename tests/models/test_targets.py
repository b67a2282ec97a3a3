import numpy as np

from seglab.models.targets import normalized_distance, touching_boundaries


def test_normalized_distance_peaks_at_one_per_object():
    lab = np.zeros((40, 60), np.int32)
    lab[5:15, 5:15] = 1
    lab[20:38, 10:50] = 2
    lab[20:38, 50:58] = 3  # touches object 2
    d = normalized_distance(lab)
    assert d[lab == 0].max() == 0
    for i in (1, 2, 3):
        assert d[lab == i].max() == np.float32(1.0)
        assert d[lab == i].min() > 0 or i == 3 or i == 2  # touching pixels go to 0
    # touching objects are separated: their shared border is 0
    b = touching_boundaries(lab)
    assert b[:, 49].sum() > 0 and (d[b] == 0).all()
    # a disc's peak is in its centre
    yy, xx = np.mgrid[:41, :41]
    disc = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100).astype(np.int32)
    dd = normalized_distance(disc)
    assert np.unravel_index(np.argmax(dd), dd.shape) == (20, 20)


def test_empty_labels():
    assert not normalized_distance(np.zeros((5, 5), np.int32)).any()
