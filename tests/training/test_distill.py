"""Knowledge distillation (seglab.training.distill): a teacher's maps as soft targets."""

import json

import numpy as np
import pytest
import torch

from seglab.errors import SeglabError
from seglab.models.base import TEACHER_KEY
from seglab.models.storage import load_model, new_model
from seglab.training.data import Augment, PatchSampler, make_pair
from seglab.training.distill import check_pair, teacher_maps
from tests_helpers import fake_dsb


def _star(name: str, widths=(8, 16, 32), **arch) -> object:
    with torch.random.fork_rng():  # seeded weights, leaving the global seed to the tests after
        torch.manual_seed(len(name))
        return new_model("stardist", name, architecture={"widths": list(widths), "n_rays": 8, "grid": 2, **arch})


def _pairs(n: int = 3) -> list:
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        labels = np.zeros((96, 96), dtype=np.int32)
        for k in range(1, 8):
            y, x = rng.integers(10, 86, size=2)
            yy, xx = np.ogrid[:96, :96]
            labels[(yy - y) ** 2 + (xx - x) ** 2 < 36] = k
        image = (labels > 0).astype(np.float32) + rng.normal(0, 0.05, labels.shape).astype(np.float32)
        pairs.append(make_pair(image, labels, 1, {"kind": "percentile", "low": 1.0, "high": 99.8}, name=f"p{i}"))
    return pairs


def test_a_teacher_must_give_maps_of_the_students_shape():
    student = _star("student")
    check_pair(_star("teacher", widths=(16, 32, 64, 128)), student)  # another network, same maps: fine
    with pytest.raises(SeglabError, match="rays"):
        check_pair(_star("t", n_rays=16), student)
    with pytest.raises(SeglabError, match="1/4"):
        check_pair(_star("t", grid=4), student)
    with pytest.raises(SeglabError, match="cannot teach"):
        check_pair(new_model("unet", "u", architecture={"widths": [8, 16]}), student)
    from seglab.models.registry import get_model

    maskrcnn = get_model("maskrcnn-nuclei")
    with pytest.raises(SeglabError, match="does not learn"):
        check_pair(maskrcnn, maskrcnn)
    check_pair(new_model("unet", "t", architecture={"widths": [16, 32]}),
               new_model("unet", "s", architecture={"widths": [8, 16]}))


def test_the_sampler_adds_the_teachers_maps_of_the_patch_with_its_context():
    student, teacher = _star("student"), _star("teacher", widths=(16, 32, 64))
    aug = Augment(scale_range=(1.0, 1.0))
    plain = PatchSampler(_pairs(), 64, aug, seed=3)
    taught = PatchSampler(_pairs(), 64, aug, seed=3, teacher=teacher)
    x0, t0, v0 = plain.batch(2, student)
    x1, t1, v1 = taught.batch(2, student)
    # the same patches and label targets; the teacher's maps beside them
    assert torch.equal(x0, x1) and torch.equal(v0, v1) and set(t1) == {*t0, TEACHER_KEY}
    assert all(torch.equal(t0[k], t1[k]) for k in t0)
    maps = t1[TEACHER_KEY]
    assert maps.shape == (2, 9, 32, 32) and maps.dtype == torch.float32
    assert float(maps[:, 0].min()) >= 0 and float(maps[:, 0].max()) <= 1 and float(maps[:, 1:].min()) >= 0
    # the teacher ran on the patch with the targets' context (32 px each side), then was cropped
    again = PatchSampler(_pairs(), 64, aug, seed=3)
    full = torch.from_numpy(np.stack([again.sample(margin=32)[0] for _ in range(2)]))
    assert torch.equal(full[:, :, 32:96, 32:96], x1)
    expected = teacher_maps(teacher, full)[..., 16:48, 16:48]
    assert torch.allclose(maps, expected, atol=1e-5)
    # the bare patch alone gives other maps near its border: the context mattered
    assert not torch.allclose(maps, teacher_maps(teacher, x1), atol=1e-3)


def test_an_augmented_teacher_gives_maps_that_turn_with_the_patch():
    """Averaged over the eight orientations, the teacher's maps of a transposed patch are its maps
    of the patch transposed (rays reordered), though its network has no symmetry of its own."""
    from seglab.inference.dihedral import Orientation

    teacher = _star("teacher")
    x = torch.rand(2, 1, 64, 64)
    t = Orientation(transpose=True)

    def turned_back(maps):
        return t.restore(maps, 2)[:, teacher.dihedral_channels(t)]

    aug = teacher_maps(teacher, x, augment=True)
    assert aug.shape == (2, 9, 32, 32) and float(aug[:, 0].min()) >= 0 and float(aug[:, 0].max()) <= 1
    assert float(aug[:, 1:].min()) >= 0  # activated: probability and distances
    other = teacher_maps(teacher, x.transpose(2, 3).contiguous(), augment=True)
    assert torch.allclose(turned_back(other), aug, atol=1e-4)
    single = teacher_maps(teacher, x)
    assert not torch.allclose(turned_back(teacher_maps(teacher, x.transpose(2, 3).contiguous())), single, atol=1e-3)
    assert not torch.allclose(aug, single, atol=1e-3)


def test_teacher_patches_must_fit_its_size_divisor():
    teacher = _star("teacher", widths=(8, 16, 32, 64))
    with pytest.raises(SeglabError, match="multiples of 8"):
        teacher_maps(teacher, torch.zeros(1, 1, 60, 60))
    # the sampler pads patches whose context does not fit (here 40 + 2 * 32 = 104 -> 112)
    maps = PatchSampler(_pairs(), 40, Augment(), seed=0, teacher=teacher).batch(1, _star("s"))[1][TEACHER_KEY]
    assert maps.shape == (1, 9, 20, 20)


@pytest.mark.parametrize("family", ["stardist", "unet"])
def test_matching_the_teacher_exactly_adds_no_gradient(family):
    """The distillation term's gradient vanishes where the student's activated maps equal the
    teacher's: it pulls the student towards the teacher, nothing else."""
    torch.manual_seed(0)
    if family == "stardist":
        model = _star("student")
        out = torch.randn(2, 9, 16, 16) * 2
        out[:, 1:] = out[:, 1:].abs() + 0.5  # distances in the positive range (no clamp)
        targets = {"prob": torch.rand(2, 16, 16), "dist": torch.rand(2, 8, 16, 16) * 5}
        valid = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    else:
        model = new_model("unet", "student", architecture={"widths": [8, 16]})
        out = torch.randn(2, 2, 16, 16) * 2
        targets = {"fg": (torch.rand(2, 16, 16) > 0.5).float(), "dist": torch.rand(2, 16, 16)}
        valid = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    teacher = model._activate(out.clone()) if family == "stardist" else out.sigmoid()

    def grad(with_teacher: dict) -> tuple[torch.Tensor, dict]:
        o = out.clone().requires_grad_(True)
        loss, parts = model.loss(o, {**targets, **with_teacher}, valid)
        loss.backward()
        return o.grad, parts

    g_plain, parts = grad({})
    g_taught, taught_parts = grad({TEACHER_KEY: teacher})
    kd = {"stardist": ("kd_bce", "kd_l1"), "unet": ("kd_bce", "kd_dist")}[family]
    assert set(taught_parts) == {*parts, *kd} and taught_parts[kd[1]] == 0
    assert torch.allclose(g_plain, g_taught, atol=1e-6)
    # a teacher that differs pulls: the gradient changes
    other = teacher.clone()
    other[:, 1:] = other[:, 1:] * 0.5 + 0.25
    pulled = grad({TEACHER_KEY: other})[0]
    assert float((pulled - g_plain).norm()) > 0.1 * float(g_plain.norm())


def test_the_recipe_trains_with_a_teacher_and_records_it(tmp_path):
    data, first, second = tmp_path / "dsb", tmp_path / "first", tmp_path / "second"
    fake_dsb(data)
    common = ["--data", str(data), "--steps", "2", "--batch-size", "2", "--validate-every", "2", "--device", "cpu"]
    from seglab.training.recipes import main

    arch = '{"widths": [8, 16, 32, 64, 128], "head_width": 16}'
    assert main(["stardist-nuclei", *common, "--out", str(first), "--architecture", arch]) in (0, None)
    assert main(["stardist-nuclei", *common, "--out", str(second), "--init", str(first / "final"),
                 "--teacher", str(first / "final"), "--distill-weight", "0.5"]) in (0, None)
    run = json.loads((second / "train_result.json").read_text())
    assert run["teacher"] == {"model": str(first / "final"), "distill_weight": 0.5}
    model = load_model(second / "final")
    assert model.config.training["teacher"]["distill_weight"] == 0.5
    assert model.config.loss["distill_weight"] == 0.5
    with pytest.raises(SeglabError, match="cannot teach"):  # a U-Net cannot teach a StarDist
        main(["stardist-nuclei", *common, "--out", str(tmp_path / "bad"), "--teacher", "unet-nuclei"])
    with pytest.raises(SystemExit):  # the H&E recipe has no teacher setting
        main(["stardist-he", *common, "--out", str(tmp_path / "he"), "--teacher", "stardist-nuclei"])
    third = tmp_path / "third"
    assert main(["stardist-nuclei", *common, "--out", str(third), "--init", str(first / "final"),
                 "--teacher", str(first / "final"), "--teacher-augment"]) in (0, None)
    run = json.loads((third / "train_result.json").read_text())
    assert run["teacher"] == {"model": str(first / "final"), "distill_weight": 1.0, "augment": True}
    for bad in (["--distill-weight", "2"], ["--teacher", "stardist-nuclei", "--distill-weight", "0"],
                ["--teacher-augment"]):
        with pytest.raises(SystemExit):  # a weight without a teacher; a weight that teaches nothing
            main(["stardist-nuclei", *common, "--out", str(tmp_path / "bad2"), *bad])
