"""The object table (layer.features) follows the user's edits of a labels layer."""

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from seglab.objects import object_table  # noqa: E402
from seglab.plugin.layers import table_to_features  # noqa: E402
from seglab.plugin.object_table import keep_table_fresh, measure, refreshed_features  # noqa: E402


def two_objects():
    lab = np.zeros((50, 60), np.int32)
    lab[5:10, 5:12] = 3
    lab[20:30, 30:33] = 7
    scores = np.zeros(8)
    scores[3], scores[7] = 0.9, 0.5
    return lab, pd.DataFrame(table_to_features(object_table(lab, scores)))


def test_measure_matches_the_core_table():
    lab, feats = two_objects()
    got = measure(lab)
    for c in ("index", "area", "centroid_y", "centroid_x"):
        np.testing.assert_allclose(got[c], feats[c])
    # huge ids and stacks (plane of each object)
    big = lab.copy()
    big[big == 7] = 5_000_000
    assert list(measure(big)["index"]) == [3, 5_000_000]
    stack = np.stack([lab, np.where(lab == 3, 11, 0)])
    assert dict(zip(measure(stack)["index"], measure(stack)["plane"])) == {3: 0, 7: 0, 11: 1}


@pytest.mark.parametrize("touched", [None, {7, 9}])
def test_edited_objects_lose_their_score_unchanged_keep_it(touched):
    lab, feats = two_objects()
    lab[20:22, 30:33] = 0  # object 7 shrinks
    lab[40:45, 40:45] = 9  # object 9 is new
    new = refreshed_features(feats, lab, touched).set_index("index")
    assert list(new.index) == [3, 7, 9]
    assert new.loc[3, "score"] == pytest.approx(0.9) and not new.loc[3, "edited"]
    assert np.isnan(new.loc[7, "score"]) and new.loc[7, "edited"] and new.loc[7, "area"] == 24
    assert np.isnan(new.loc[9, "score"]) and new.loc[9, "edited"] and new.loc[9, "centroid_y"] == 42


def test_touched_but_unchanged_objects_keep_their_score():
    lab, feats = two_objects()
    new = refreshed_features(feats, lab, {3}).set_index("index")
    assert new.loc[3, "score"] == pytest.approx(0.9) and not new.loc[3, "edited"]


def test_painting_refreshes_the_layer_features(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    lab, feats = two_objects()
    layer = viewer.add_labels(lab, features=feats)
    keeper = keep_table_fresh(layer)
    assert keep_table_fresh(layer) is keeper  # one keeper per layer
    layer.brush_size = 3
    layer.paint((45, 45), 12)  # a new object
    layer.paint((7, 8), 0)  # erase part of object 3
    qtbot.waitUntil(lambda: not keeper.pending, timeout=5_000)
    table = layer.features.set_index("index")
    assert 12 in table.index and table.loc[12, "area"] == int((layer.data == 12).sum())
    assert table.loc[3, "area"] == int((layer.data == 3).sum()) < 35 and np.isnan(table.loc[3, "score"])
    assert table.loc[7, "score"] == pytest.approx(0.5) and not table.loc[7, "edited"]
    # undo (napari changes the data without an event) refreshes it too
    layer.undo()
    qtbot.waitUntil(lambda: not keeper.pending, timeout=5_000)
    table = layer.features.set_index("index")
    assert table.loc[3, "area"] == 35 and not table.loc[3, "edited"]  # back as it was, score kept
    assert table.loc[3, "score"] == pytest.approx(0.9)
    # replacing the data (e.g. from a script) refreshes it too
    layer.data = np.where(layer.data == 7, 0, layer.data)
    qtbot.waitUntil(lambda: not keeper.pending, timeout=5_000)
    assert 7 not in set(layer.features["index"])
