"""The Segment widget's *More accurate* option (test-time augmentation)."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from tests_helpers import blob_image  # noqa: E402


def test_the_option_follows_the_models_family_and_keeps_the_users_wish(segment_dock):
    _, widget = segment_dock
    widget.model.value = "stardist-nuclei"
    assert widget.augment.enabled and not widget.augment.value  # off by default: 5-7x the time
    widget.augment.value = True
    widget.model.value = "maskrcnn-nuclei"  # boxes and masks do not turn with the image
    assert not widget.augment.enabled and not widget.augment.value and "not for this" in widget.augment.text
    widget.model.value = "unet-nuclei"
    assert widget.augment.enabled and widget.augment.value


def test_a_run_with_the_option_is_augmented(qtbot, segment_dock, segment_errors, segment_run_kwargs,
                                            augment_passes):
    passes = augment_passes
    viewer, widget = segment_dock
    image, labels = blob_image((128, 128), n=8, seed=2, rmin=6, rmax=9)
    widget.image.value = viewer.add_image(image, name="cells")
    widget.model.value = "stardist-nuclei"
    widget.diameter.value = "none"
    widget.augment.value = True
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert not segment_errors and segment_run_kwargs["augment"] is True and passes == [True]
    assert len(np.unique(widget.output_layer.data)) - 1 == labels.max()
    widget.augment.value = False
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert segment_run_kwargs["augment"] is False and passes[-1] is False
