"""Outline (Shapes) layers follow the labels they were made with."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.outlines import Outlines  # noqa: E402
from seglab.plugin.layers import OwnedLayers, output_metadata  # noqa: E402
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


_OWNED: dict[int, OwnedLayers] = {}  # the Segment widget's registry, one per test viewer


def run(viewer, labels, outlines, model="m"):
    """What the Segment widget does after a run: new labels in ``labels`` (in place), then outlines
    (for the viewer's image layer "img"; one widget's registry of layers per viewer)."""
    if "img" not in viewer.layers:
        viewer.add_image(np.zeros((64, 64)), name="img")
    owned = _OWNED.setdefault(id(viewer), OwnedLayers())
    labels.metadata.update(output_metadata("img", model, {}, labels.data))
    tag_run(labels, new_run_id())
    return update_outlines(viewer, outlines, viewer.layers["img"], model, {}, labels, 2, owned)


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


def _same_place(a, b, points):
    for p in points:
        np.testing.assert_allclose(a.data_to_world(p), b.data_to_world(p), atol=1e-9)


def test_outlines_take_the_labels_full_transform_when_made_and_when_reused(make_napari_viewer):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="img [seglab]", scale=(0.5, 0.7),
                               translate=(10, -5), rotate=30, shear=[0.4],
                               affine=np.array([[1.0, 0.1, 2.0], [0.0, 0.9, 1.0], [0, 0, 1]]))
    points = [(0, 0), (10, 20), (63, 5)]
    first = run(viewer, labels, squares(3))
    _same_place(first, labels, points)
    labels.scale, labels.rotate, labels.shear, labels.translate = (2.0, 1.0), -45, [0.1], (3.0, 4.0)
    second = run(viewer, labels, squares(4))
    assert second is first  # reused in place ...
    _same_place(second, labels, points)  # ... and moved with its labels


def test_renamed_or_duplicated_outlines_are_the_users(make_napari_viewer):
    from napari.layers._layer_actions import _duplicate_layer

    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="img [seglab]")
    first = run(viewer, labels, squares(3))
    viewer.layers.selection = {first}
    _duplicate_layer(viewer.layers)  # metadata (run, checksum, source) copied
    copy = viewer.layers["img [seglab outlines] copy"]
    second = run(viewer, labels, squares(2))
    assert second is first and len(copy.data) == 3 and not copy.name.endswith(STALE_SUFFIX)
    first.name = "my outlines"  # the user takes it
    third = run(viewer, labels, squares(5))
    assert third is not first and len(first.data) == 2 and first.name == "my outlines"
    assert run(viewer, labels, None) is None  # a model without outlines: only the widget's own go
    assert set(_shapes(viewer)) == {copy, first} and third not in viewer.layers


def test_outlines_of_another_image_of_the_same_name_are_left_alone(make_napari_viewer):
    """The first image was renamed and a new image took its name: its outlines are not the new one's."""
    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="img [seglab]")
    old = run(viewer, labels, squares(3))
    viewer.layers["img"].name = "day1"
    viewer.add_image(np.zeros((64, 64)), name="img")
    new_labels = viewer.add_labels(np.zeros((64, 64), np.int32), name="img [seglab] [1]")
    new = run(viewer, new_labels, squares(2))
    labels.metadata["seglab"]["run"] = "gone"  # even once the first labels are re-segmented elsewhere
    run(viewer, new_labels, None)
    assert new not in viewer.layers and old in viewer.layers and len(old.data) == 3
