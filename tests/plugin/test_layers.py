import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.plugin.layers import (  # noqa: E402
    OwnedLayers,
    ambiguous_axes_note,
    geometry_differences,
    output_metadata,
    spatial_geometry,
)


def test_spatial_geometry_drops_the_channel_axis():
    layer = napari.layers.Image(np.zeros((3, 20, 30)), scale=(1.0, 0.5, 0.25), translate=(0, 10, 20),
                                units=("pixel", "um", "um"))
    geo = spatial_geometry(layer, 0)
    assert list(geo["scale"]) == [0.5, 0.25] and list(geo["translate"]) == [10, 20]
    assert geo["affine"].shape == (3, 3)
    assert [str(u) for u in geo["units"]] == ["micrometer", "micrometer"]
    labels = napari.layers.Labels(np.zeros((20, 30), int), **geo)  # the broadcast error of issue 12
    assert list(labels.scale) == [0.5, 0.25]
    # channel axis last, and a negative index
    layer = napari.layers.Image(np.zeros((20, 30, 2)), scale=(0.5, 0.25, 1.0))
    assert list(spatial_geometry(layer, -1)["scale"]) == [0.5, 0.25]


def test_spatial_geometry_of_rgb_and_plain_layers_keeps_every_axis():
    rgb = napari.layers.Image(np.zeros((20, 30, 3), np.uint8), rgb=True, scale=(0.5, 0.25))
    assert list(spatial_geometry(rgb, 2)["scale"]) == [0.5, 0.25]
    stack = napari.layers.Image(np.zeros((4, 20, 30)), scale=(2.0, 0.5, 0.25))
    assert list(spatial_geometry(stack, None)["scale"]) == [2.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="does not exist"):
        spatial_geometry(stack, 5)


def test_ambiguous_axes_note():
    layer = napari.layers.Image(np.zeros((3, 20, 30)), name="c3")
    assert "Channel axis" in ambiguous_axes_note(layer, (3, 20, 30), None)
    assert ambiguous_axes_note(layer, (3, 20, 30), 0) is None
    assert ambiguous_axes_note(layer, (12, 20, 30), None) is None  # many planes: a stack
    z = napari.layers.Image(np.zeros((3, 20, 30)), axis_labels=("z", "y", "x"))
    assert ambiguous_axes_note(z, (3, 20, 30), None) is None


def _same_place(a, b, points):
    for p in points:
        np.testing.assert_allclose(a.data_to_world(p), b.data_to_world(p), atol=1e-9)


def test_spatial_geometry_carries_rotate_shear_and_affine():
    """napari keeps rotate and shear apart from affine: a labels layer made with the geometry lies
    exactly over the image (2D, 3D, and without the channel axis of a multichannel layer)."""
    points2 = [(0, 0), (3, 7), (19, 29)]
    image = napari.layers.Image(np.zeros((20, 30)), scale=(0.5, 0.7), translate=(10, -5), rotate=30, shear=[0.4],
                                affine=np.array([[1.0, 0.2, 3.0], [0.1, 0.9, -2.0], [0, 0, 1]]))
    labels = napari.layers.Labels(np.zeros((20, 30), int), **spatial_geometry(image))
    _same_place(labels, image, points2)
    assert not geometry_differences(image, labels)
    rot3 = ((1, 0, 0), (0, 0.8, -0.6), (0, 0.6, 0.8))
    stack = napari.layers.Image(np.zeros((4, 20, 30)), scale=(2, 0.5, 0.7), rotate=rot3, shear=[0.1, 0.2, 0.3])
    labels = napari.layers.Labels(np.zeros((4, 20, 30), int), **spatial_geometry(stack))
    _same_place(labels, stack, [(0, 0, 0), (1, 3, 7), (3, 19, 29)])
    # channels first: the 2D transform of the other axes, its row and column of the channel axis left out
    rot_yx = np.eye(3)
    rot_yx[1:, 1:] = [[0.8, -0.6], [0.6, 0.8]]
    multi = napari.layers.Image(np.zeros((2, 20, 30)), scale=(1, 0.5, 0.7), translate=(0, 3, 4), rotate=rot_yx,
                                shear=[0.0, 0.0, 0.25])
    geo = spatial_geometry(multi, 0)
    assert geo["rotate"].shape == (2, 2) and geo["shear"].shape == (2, 2) and geo["affine"].shape == (3, 3)
    labels = napari.layers.Labels(np.zeros((20, 30), int), **geo)
    for y, x in points2:
        np.testing.assert_allclose(labels.data_to_world((y, x)), multi.data_to_world((0, y, x))[1:], atol=1e-9)
    assert not geometry_differences(multi, labels, 0)


def test_geometry_differences_name_what_differs():
    image = napari.layers.Image(np.zeros((20, 30)))
    assert geometry_differences(image, napari.layers.Labels(np.zeros((20, 30), int), scale=(2, 2))) == [
        "scale (1, 1) vs (2, 2)"]
    assert geometry_differences(image, napari.layers.Labels(np.zeros((20, 30), int), rotate=10)) == ["rotate"]
    # the same place in the world by other means (an affine holding the scale) is no difference
    assert not geometry_differences(napari.layers.Image(np.zeros((20, 30)), scale=(2, 3)),
                                    napari.layers.Labels(np.zeros((20, 30), int), affine=np.diag([2.0, 3.0, 1.0])))


def test_owned_layers_go_by_identity_name_and_source():
    image = napari.layers.Image(np.zeros((8, 8)), name="A")
    data = np.zeros((8, 8), np.int32)
    out = napari.layers.Labels(data.copy(), name="A [seglab]", metadata=output_metadata("A", "m", {}, data))
    owned = OwnedLayers()
    owned.add(out, image, "labels")
    assert owned.reusable(out, image, "labels") and not owned.owns(out, image, "outlines")
    other = napari.layers.Image(np.zeros((8, 8)), name="A")  # another image under the same name
    assert not owned.owns(out, other, "labels")
    twin = napari.layers.Labels(out.data.copy(), name=out.name, metadata=dict(out.metadata))  # as a duplicate
    assert not owned.owns(twin, image, "labels")
    out.data = np.ones((8, 8), np.int32)  # edited: still the widget's, but not to be overwritten
    assert owned.owns(out, image) and not owned.reusable(out, image)
    out.data = data.copy()
    image.name = "day1"  # the source renamed: still the same source
    assert owned.reusable(out, image)
    out.name = "my final nuclei"  # the output renamed: the user's
    assert not owned.owns(out, image)
    owned.add(out, "/data/a.tif", "opened")  # a file path as the source
    assert owned.owns(out, "/data/a.tif", "opened") and not owned.owns(out, "/data/b.tif", "opened")
