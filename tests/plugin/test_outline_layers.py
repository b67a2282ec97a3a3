"""Outline (Shapes) layers follow the labels they were made with."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.outlines import Outlines  # noqa: E402
from seglab.plugin.layers import output_metadata  # noqa: E402
from seglab.plugin.outline_layers import (  # noqa: E402
    STALE_SUFFIX,
    new_run_id,
    tag_run,
    update_outlines,
)


def squares(n, offset=0.0, kind="polygon"):
    data = [np.array([[0, 0], [0, 4], [4, 4], [4, 0]], float) + 10 * i + offset for i in range(n)]
    return Outlines(kind, data, np.arange(1, n + 1), np.zeros(n, int),
                    {"label": np.arange(1, n + 1), "score": np.linspace(0.5, 0.9, n)})


def run(viewer, labels, outlines, model="m"):
    """What the Segment widget does after a run: new labels in ``labels`` (in place), then outlines."""
    labels.metadata.update(output_metadata("img", model, {}, labels.data))
    tag_run(labels, new_run_id())
    return update_outlines(viewer, outlines, "img", model, {}, labels, 2)


def _shapes(viewer):
    return [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Shapes)]


def test_outlines_are_updated_in_place_then_removed_when_the_model_has_none(make_napari_viewer):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="img [seglab]")
    first = run(viewer, labels, squares(3), "stardist")
    assert _shapes(viewer) == [first] and len(first.data) == 3
    removed = []
    viewer.layers.events.removed.connect(lambda e: removed.append(e.value))
    second = run(viewer, labels, squares(5, 1.0, "rectangle"), "maskrcnn")
    assert second is first and not removed  # in place: no remove/add
    assert len(second.data) == 5 and set(second.shape_type) == {"rectangle"}
    assert list(second.features["label"]) == [1, 2, 3, 4, 5]
    assert second.metadata["seglab"]["model"] == "maskrcnn"
    # a U-Net run (no outlines) on the same image: the stale outlines go
    assert run(viewer, labels, None, "unet") is None
    assert _shapes(viewer) == [] and removed == [first]


def test_edited_outlines_are_kept_and_renamed_not_overwritten(make_napari_viewer):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="img [seglab]")
    mine = run(viewer, labels, squares(3))
    mine.selected_data = {0}
    mine.remove_selected()
    kept = [d.copy() for d in mine.data]
    new = run(viewer, labels, squares(4))
    assert new is not mine and set(_shapes(viewer)) == {mine, new}
    assert mine.name.endswith(STALE_SUFFIX) and all(np.array_equal(a, b) for a, b in zip(mine.data, kept))
    run(viewer, labels, None)
    assert _shapes(viewer) == [mine]  # the user's layer stays, named once
    assert mine.name.count(STALE_SUFFIX) == 1


def test_outlines_of_labels_still_shown_are_left_alone(make_napari_viewer):
    """The user edited the labels: the next run goes to a new labels layer; the old labels keep
    their outlines."""
    viewer = make_napari_viewer()
    old_labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="img [seglab]")
    old = run(viewer, old_labels, squares(2))
    new_labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="img [seglab] [1]")
    new = run(viewer, new_labels, squares(3))
    assert set(_shapes(viewer)) == {old, new} and len(old.data) == 2 and not old.name.endswith(STALE_SUFFIX)
    # a user's own Shapes layer is never touched
    user = viewer.add_shapes([np.array([[1, 1], [5, 5]])], shape_type="rectangle", name="img [seglab outlines]")
    run(viewer, new_labels, None)
    assert user in viewer.layers and len(user.data) == 1
