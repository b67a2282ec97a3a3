import numpy as np
import pytest

from seglab.axes import ambiguous_axes, arrange, check_declared, guess_channel_axis, parse_axes
from seglab.errors import SeglabError


def test_parse_axes_checks_letters_length_and_yx():
    assert parse_axes("zcyx", 4) == "ZCYX"
    for axes, ndim, msg in [("YX", 3, "name 2 axes"), ("YYX", 3, "twice"), ("ZYC", 3, "Y and X"),
                            ("CSYX", 4, "more than one channel"), ("Y-X", 3, "letters")]:
        with pytest.raises(SeglabError, match=msg):
            parse_axes(axes, ndim)


def test_rule_for_arrays_without_axes():
    assert guess_channel_axis((64, 64, 3)) == 2
    assert guess_channel_axis((64, 64, 2)) == 2
    assert guess_channel_axis((3, 64, 64)) is None  # leading axes are planes
    assert guess_channel_axis((64, 64)) is None
    assert guess_channel_axis((4, 4, 3)) is None


def test_arrange_with_axes_moves_channels_last_and_yx_before():
    img = np.zeros((2, 3, 20, 30))
    out, ca, rgb = arrange(img, axes="ZCYX")
    assert out.shape == (2, 20, 30, 3) and ca == -1 and not rgb
    out, ca, rgb = arrange(np.zeros((20, 30, 3), np.uint8), axes="YXS")
    assert out.shape == (20, 30, 3) and rgb
    out, ca, rgb = arrange(np.zeros((30, 20, 5)), axes="XYZ")
    assert out.shape == (5, 20, 30) and ca is None


def test_arrange_rgb_only_when_said_or_by_the_rule():
    _, _, rgb = arrange(np.zeros((20, 30, 3)), channel_axis=-1)
    assert rgb  # documented rule: a last channel axis of 3 or 4 entries is RGB(A)
    _, _, rgb = arrange(np.zeros((20, 30, 3)), channel_axis=-1, rgb=False)
    assert not rgb
    out, ca, rgb = arrange(np.zeros((3, 20, 30)), channel_axis=0)
    assert out.shape == (20, 30, 3) and not rgb
    out, ca, rgb = arrange(np.zeros((3, 20, 30)))
    assert out.shape == (3, 20, 30) and ca is None
    with pytest.raises(SeglabError, match="does not exist"):
        arrange(np.zeros((20, 30)), channel_axis=4)


def test_undeclared_small_axes_are_ambiguous():
    assert ambiguous_axes("QYX", (3, 20, 30)) == [0]
    assert ambiguous_axes("QYX", (30, 20, 30)) == []
    assert ambiguous_axes("ZYX", (3, 20, 30)) == []
    with pytest.raises(SeglabError, match="--axes CYX .*--axes ZYX"):
        check_declared("QYX", (3, 20, 30), "x.tif")
