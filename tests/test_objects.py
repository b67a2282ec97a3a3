import numpy as np

from seglab.objects import concat_tables, object_table


def test_table_hand_computed():
    lab = np.zeros((10, 10), np.int32)
    lab[0:2, 0:4] = 3  # 8 px, centroid (0.5, 1.5)
    lab[5:10, 9] = 7  # 5 px, centroid (7, 9)
    prob = np.zeros((10, 10))
    prob[lab == 3] = 0.8
    prob[lab == 7] = 0.6
    t = object_table(lab, prob)
    assert list(t["label"]) == [3, 7]
    assert list(t["area"]) == [8, 5]
    np.testing.assert_allclose(t["centroid_y"], [0.5, 7.0])
    np.testing.assert_allclose(t["centroid_x"], [1.5, 9.0])
    np.testing.assert_allclose(t["score"], [0.8, 0.6])
    assert np.isnan(object_table(lab)["score"]).all()


def test_empty_and_concat():
    empty = object_table(np.zeros((4, 4), np.int32))
    assert all(len(v) == 0 for v in empty.values())
    lab = np.zeros((4, 4), np.int32)
    lab[1, 1] = 1
    both = concat_tables([object_table(lab), object_table(lab * 2)], {"plane": [0, 1]})
    assert list(both["label"]) == [1, 2] and list(both["plane"]) == [0, 1]


def test_table_matches_scipy_on_random_labels_with_gaps_and_score_maps():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(1)
    lab = rng.integers(0, 40, (60, 70)).astype(np.int32)
    lab[lab % 7 == 0] = 0  # missing ids and much background
    prob = rng.random(lab.shape)
    t = object_table(lab, prob)
    ids = np.unique(lab[lab > 0])
    np.testing.assert_array_equal(t["label"], ids)
    np.testing.assert_array_equal(t["area"], ndi.sum_labels(np.ones_like(lab), lab, ids))
    com = np.array(ndi.center_of_mass(np.ones_like(lab, dtype=float), lab, ids))
    np.testing.assert_allclose(t["centroid_y"], com[:, 0], rtol=1e-12)
    np.testing.assert_allclose(t["centroid_x"], com[:, 1], rtol=1e-12)
    np.testing.assert_allclose(t["score"], ndi.mean(prob, lab, ids), rtol=1e-12)
