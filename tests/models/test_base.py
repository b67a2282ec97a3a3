import math

import numpy as np
import pytest

from seglab.cli import main
from seglab.errors import SeglabError
from seglab.models.base import SegmentationModel, ThresholdSpec
from seglab.models.maskrcnn import MaskRCNNModel
from seglab.models.stardist import StarDistModel
from seglab.models.unet import UNetModel


@pytest.mark.parametrize("family", [UNetModel, StarDistModel, MaskRCNNModel])
def test_every_family_declares_its_thresholds_with_ranges_help_and_a_grid_inside_them(family):
    assert family.threshold_specs and set(family.default_thresholds) == set(family.threshold_specs)
    for name, spec in family.threshold_specs.items():
        assert spec.low <= spec.default <= spec.high and spec.step > 0 and len(spec.help) > 20, name
        assert all(spec.low <= v <= spec.high for v in family.threshold_grid.get(name, [])), name
    assert set(family.threshold_grid) <= set(family.threshold_specs)
    # what is particular to a family is its own: the engine needs no output kind
    assert not hasattr(family, "output_kind")


@pytest.mark.parametrize("value, msg", [
    (float("nan"), "not a finite number"), (math.inf, "not a finite number"), (1.5, "outside its range 0 to 1"),
    (-0.1, "outside its range"), ("abc", "needs a number"),
])
def test_out_of_range_and_non_finite_thresholds_are_refused(tiny_model, value, msg):
    with pytest.raises(SeglabError, match=msg) as e:
        tiny_model.thresholds({"prob_thresh": value})
    assert "raise it" in str(e.value)  # the message says what the threshold does
    assert tiny_model.thresholds({"prob_thresh": 0.0, "min_area": 1e6})["min_area"] == 1e6  # the ends are allowed


def test_spec_check_returns_floats():
    spec = ThresholdSpec(0.0, -6.0, 6.0, 0.5, "logit")
    assert spec.check("t", "-2.5", "f") == -2.5 and isinstance(spec.check("t", 3, "f"), float)


def test_cli_refuses_a_nan_threshold_with_one_line(tmp_path, tiny_model_dir, capsys):
    import tifffile

    img = np.zeros((32, 32), np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", img)
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(tmp_path / "o"), str(tmp_path / "a.tif"), "-q",
               "-t", "prob_thresh=nan"])
    err = capsys.readouterr().err
    assert rc == 2 and "prob_thresh=nan" in err and "not a finite number" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_family_may_implement_postprocess_or_postprocess_iter():
    class Neither(SegmentationModel):
        family = "neither"
        build_network = forward_tiles = make_targets = loss = None

    with pytest.raises(NotImplementedError, match="neither postprocess nor postprocess_iter"):
        Neither.postprocess(object.__new__(Neither), None, {})
