import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.plugin.layers import ambiguous_axes_note, spatial_geometry  # noqa: E402


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
