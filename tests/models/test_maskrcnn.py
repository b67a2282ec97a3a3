import numpy as np
import pytest
import torch

from maskrcnn_helpers import TINY_ARCH, tiny_maskrcnn
from seglab.errors import SeglabError
from seglab.inference.engine import segment
from seglab.models.maskrcnn import MaskRCNNModel, fill_invalid, targets_from_labels
from seglab.models.maskrcnn_net import DEFAULT_ARCHITECTURE, KeepScaleTransform, MaskRCNNNet
from seglab.models.storage import load_model, save_model
from seglab.training.data import Augment, PatchSampler, make_pair
from seglab.training.loop import TrainSettings, train_iter
from tests_helpers import blob_image


def test_real_size_configuration():
    """The shipped architecture: small anchors, thousands of detections, no resizing, <= 40 MB."""
    net = MaskRCNNNet(1, DEFAULT_ARCHITECTURE)
    m = net.maskrcnn
    assert m.rpn.anchor_generator.sizes == ((6,), (12,), (24,), (48,), (96,))
    assert m.roi_heads.detections_per_img >= 2000
    assert m.rpn._pre_nms_top_n["testing"] >= 2000 and m.rpn._post_nms_top_n["testing"] >= 2000
    assert isinstance(m.transform, KeepScaleTransform)
    assert sum(p.numel() for p in net.parameters()) * 4 <= 40e6
    assert sum(p.numel() for n, p in net.named_parameters() if "backbone" in n) > 0.5e6


def test_no_resize_masks_at_input_size_for_odd_non_square_input():
    model = tiny_maskrcnn()
    tv = model.network.maskrcnn.eval()
    tv.roi_heads.score_thresh = 0.0
    img = torch.rand(1, 75, 93)
    images, _ = tv.transform([img])
    assert images.image_sizes == [(75, 93)]
    assert images.tensors.shape[-2:] == (96, 96)  # padded to a multiple of 32, not rescaled
    torch.testing.assert_close(images.tensors[0, :, :75, :93], img)  # and not normalised: seglab does that
    with torch.inference_mode():
        out = tv([img])[0]
    assert len(out["boxes"]) > 0
    assert out["masks"].shape[-2:] == (75, 93)
    assert (out["boxes"][:, 2] <= 93).all() and (out["boxes"][:, 3] <= 75).all()


def test_thresholds_are_the_models_and_reach_the_network():
    model = tiny_maskrcnn()
    assert set(model.thresholds()) == {"score_thresh", "mask_thresh", "nms_thresh", "min_area"}
    with pytest.raises(SeglabError, match="unknown threshold"):
        model.thresholds({"prob_thresh": 0.5})
    x = torch.rand(2, 1, 64, 96)
    with torch.inference_mode():
        many = model.forward_tiles(x, thresholds={"score_thresh": 0.0})
        none = model.forward_tiles(x, thresholds={"score_thresh": 1.0})
    assert len(many) == 2 and all(len(d["boxes"]) > 0 for d in many)
    assert all(len(d["boxes"]) == 0 for d in none)
    assert model._inference_network().maskrcnn.roi_heads.score_thresh == pytest.approx(1.0)  # the network that ran
    d = many[0]
    assert d["masks"].shape[1:] == (28, 28) and d["boxes"].shape[1] == 4


def test_segment_output_contract_and_size():
    img, _ = blob_image((75, 93), n=4)
    res = segment(tiny_maskrcnn(), img, device="cpu", thresholds={"score_thresh": 0.0})
    assert res.labels.shape == (75, 93)
    assert {"score", "class", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"} <= set(res.table)
    shapes = res.extras[0]["shapes"]
    assert shapes["type"] == "rectangle" and len(shapes["data"]) == res.n_objects == len(shapes["label"])


def test_targets_from_labels_boxes_masks_and_valid():
    lab = torch.zeros(40, 50, dtype=torch.int32)
    lab[5:15, 10:30] = 3  # rows 5..14, cols 10..29
    lab[30:40, 40:50] = 7
    lab[0:1, 0:2] = 9  # a 2-pixel fragment: not a target
    t = targets_from_labels(lab)
    assert t["boxes"].tolist() == [[10, 5, 30, 15], [40, 30, 50, 40]]
    assert t["labels"].tolist() == [1, 1] and t["masks"].shape == (2, 40, 50)
    assert int(t["masks"][0].sum()) == 200
    valid = torch.ones(40, 50, dtype=torch.bool)
    valid[30:, 40:] = False  # object 7 lies outside the valid region
    assert targets_from_labels(lab, valid)["boxes"].tolist() == [[10, 5, 30, 15]]
    empty = targets_from_labels(torch.zeros(16, 16, dtype=torch.int32))
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 16, 16)


def test_fill_invalid_uses_the_median_of_valid_pixels():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    valid[..., :2, :] = True
    out = fill_invalid(x, valid)
    assert torch.equal(out[..., :2, :], x[..., :2, :])
    assert (out[..., 2:, :] == x[..., :2, :].median()).all()


def test_training_loss_handles_patches_without_objects():
    model = tiny_maskrcnn()
    model.network.train()
    x = torch.rand(2, 1, 64, 64)
    labels = torch.zeros(2, 64, 64, dtype=torch.int32)
    labels[0, 10:20, 10:20] = 1
    loss, parts = model.training_loss(model.network, x, {"labels": labels}, torch.ones(2, 1, 64, 64, dtype=torch.bool))
    assert torch.isfinite(loss) and loss.requires_grad
    assert set(parts) == {"objectness", "rpn_box_reg", "classifier", "box_reg", "mask"}


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is faster, and not slowed 20-fold by a busy machine's other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_short_training_on_discs_lowers_the_loss(one_thread):
    model = tiny_maskrcnn()
    pairs = []
    for s in range(3):
        img, lab = blob_image((96, 96), n=8, seed=s)
        pairs.append(make_pair(img, lab, 1, model.config.normalization))
    sampler = PatchSampler(pairs, 64, Augment(), seed=0)
    events = list(train_iter(model, sampler, TrainSettings(steps=30, batch_size=2, lr=3e-3, warmup_steps=5),
                             device="cpu", report_every=5))
    assert events[-1].step == 30
    assert events[-1].loss < 0.7 * events[0].loss


def test_save_and_load_round_trip(tmp_path):
    model = tiny_maskrcnn()
    folder = save_model(model, tmp_path / "m")
    loaded = load_model(folder)
    assert isinstance(loaded, MaskRCNNModel) and loaded.config.architecture == TINY_ARCH
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        a = model.forward_tiles(x, thresholds={"score_thresh": 0.0})[0]
        b = loaded.forward_tiles(x, thresholds={"score_thresh": 0.0})[0]
    torch.testing.assert_close(a["scores"], b["scores"])
    np.testing.assert_allclose(a["boxes"].numpy(), b["boxes"].numpy())


def test_boxes_keep_full_precision_under_autocast():
    """bfloat16 box coordinates would be multiples of 4 px near x = 600; the heads run in float32."""
    model = tiny_maskrcnn()
    x = torch.rand(1, 1, 640, 640)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        d = model.forward_tiles(x, thresholds={"score_thresh": 0.0})[0]
    far = d["boxes"][d["boxes"][:, 2] > 512, 2]
    assert len(far) > 0 and d["boxes"].dtype == torch.float32
    assert not torch.all(far == far.to(torch.bfloat16).float())


def test_rpn_and_mask_heads_run_in_bfloat16_under_autocast_and_give_float32():
    """At inference the RPN head's and the mask head's convolutions run at the backbone's precision
    (the box head and box decoding in float32, above); their outputs reach seglab as float32."""
    model = tiny_maskrcnn()
    net = model.network.eval()
    seen = {}

    def record(name):
        def hook(_module, _inputs, out):
            seen.setdefault(name, out.dtype)  # returns None: the output stays as it is
        return hook

    for name, module in (("rpn", net.maskrcnn.rpn.head.conv), ("mask", net.maskrcnn.roi_heads.mask_head),
                         ("box", net.maskrcnn.roi_heads.box_head)):
        module.register_forward_hook(record(name))
    x = torch.rand(1, 1, 128, 128)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        d = net.detect(x, score_thresh=0.0, nms_thresh=0.5)[0]
    assert len(d["boxes"]) > 0
    assert seen == {"rpn": torch.bfloat16, "mask": torch.bfloat16, "box": torch.float32}
    assert all(d[k].dtype == torch.float32 for k in ("boxes", "scores", "masks"))


def test_encoder_levels_are_the_stem_then_the_stages():
    model = tiny_maskrcnn()
    levels = model.encoder_levels()
    assert levels[0] == "maskrcnn.backbone.stem." and levels[1] == "maskrcnn.backbone.stages.0."
    names = [n for n, _ in model.network.named_parameters()]
    assert len(levels) == 1 + len(model.network.maskrcnn.backbone.stages)
    assert all(any(n.startswith(level) for n in names) for level in levels)
    assert not any(n.startswith(tuple(levels)) for n in names if ".fpn." in n or "roi_heads" in n or "rpn" in n)


def test_staged_detection_equals_torchvisions_heads_for_a_batch():
    """detect_iter (stages, regions in chunks, yields between) gives what torchvision's RPN and
    RoI heads give in one call, image by image in a batch."""
    from collections import OrderedDict

    model = tiny_maskrcnn()
    net = model.network.eval()
    img, _ = blob_image((96, 128), n=8, seed=2)
    x = torch.from_numpy(np.stack([img, img[::-1]])[:, None].astype(np.float32) / 255)
    m = net.maskrcnn
    m.roi_heads.score_thresh, m.roi_heads.nms_thresh = 0.0, 0.5
    with torch.inference_mode():
        images, _ = net._images(x)
        feats = OrderedDict((k, v.float()) for k, v in m.backbone(images.tensors).items())
        props, _ = m.rpn(images, feats)
        ref, _ = m.roi_heads(feats, props, images.image_sizes)
        gen = net.detect_iter(x, 0.0, 0.5, context=torch.inference_mode, chunk=16)
        steps = 0
        while True:
            try:
                next(gen)
                steps += 1
            except StopIteration as stop:
                out = stop.value
                break
    assert steps > 10 and len(out) == 2 and sum(len(r["boxes"]) for r in ref) > 32  # several chunks
    for o, r in zip(out, ref):
        torch.testing.assert_close(o["boxes"], r["boxes"])
        torch.testing.assert_close(o["scores"], r["scores"])
        torch.testing.assert_close(o["masks"], r["masks"][:, 0])


def _proposals(net: MaskRCNNNet, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The RPN's proposals (boxes, objectness) that :meth:`MaskRCNNNet.detect` passes to the heads."""
    rpn = net.maskrcnn.rpn
    seen = []
    original = rpn.filter_proposals

    def record(*args):
        boxes, scores = original(*args)
        seen.extend(zip(boxes, scores))
        return boxes, scores

    rpn.filter_proposals = record
    try:
        with torch.inference_mode():
            net.detect(x, 0.0, 0.5)
    finally:
        del rpn.filter_proposals
    return seen


def test_inference_proposals_are_chosen_by_objectness_not_by_a_per_tile_budget():
    """With ``rpn_score_thresh`` every proposal whose objectness reaches it goes on, however many
    (a per-tile top-N would make a tile's choice depend on the rest of the tile); training keeps
    torchvision's budgets and no objectness threshold."""
    img, _ = blob_image((96, 128), n=8, seed=2)
    x = torch.from_numpy(img[None, None].astype(np.float32) / 255)
    budget = {"rpn_pre_nms_top_n": 4, "rpn_post_nms_top_n": 4, "detections_per_img": 4}
    torch.manual_seed(0)
    local = MaskRCNNNet(1, {**TINY_ARCH, **budget, "rpn_score_thresh": 0.2}).eval()
    topn = MaskRCNNNet(1, {**TINY_ARCH, **budget, "rpn_score_thresh": 0.0}).eval()
    topn.load_state_dict(local.state_dict())
    (boxes, scores), = _proposals(local, x)
    assert len(boxes) > 4 and bool((scores >= 0.2).all())
    assert local.maskrcnn.rpn.score_thresh == 0.0  # restored for training
    assert len(local.detect(x, 0.0, 0.5)[0]["boxes"]) > 4
    (boxes, scores), = _proposals(topn, x)
    assert len(boxes) == 4  # torchvision's budget
    assert len(topn.detect(x, 0.0, 0.5)[0]["boxes"]) <= 4
    with pytest.raises(ValueError, match="rpn_score_thresh"):
        MaskRCNNNet(1, {**TINY_ARCH, "rpn_score_thresh": 1.0})


def test_local_proposals_are_those_of_decoding_every_anchor(monkeypatch):
    """Under ``rpn_score_thresh`` only the anchors that clear it are decoded and filtered: the
    same proposals and detections, image by image in a batch, as decoding all of them (also
    when no anchor clears it)."""
    import seglab.models.maskrcnn_net as mn

    def every_anchor(rpn, objectness, deltas, anchors, sizes, per_level):
        proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
        return rpn.filter_proposals(proposals, objectness, sizes, per_level)[0]

    img, _ = blob_image((96, 128), n=8, seed=2)
    x = torch.from_numpy(np.stack([img, img[:, ::-1]])[:, None].astype(np.float32) / 255)
    for thresh in (0.2, 0.9999):
        torch.manual_seed(0)
        net = MaskRCNNNet(1, {**TINY_ARCH, "rpn_score_thresh": thresh}).eval()
        with torch.inference_mode():
            local = net.detect(x, 0.0, 0.5)
            local_props = _proposals(net, x)
            monkeypatch.setattr(mn, "_local_proposals", every_anchor)
            full = net.detect(x, 0.0, 0.5)
            full_props = _proposals(net, x)
            monkeypatch.undo()
        assert len(local_props) == len(full_props) == 2
        assert thresh > 0.5 or min(len(b) for b, _ in local_props) > 4
        for (bl, sl), (bf, sf) in zip(local_props, full_props):
            torch.testing.assert_close(bl, bf)
            torch.testing.assert_close(sl, sf)
        for a, b in zip(local, full):
            torch.testing.assert_close(a["boxes"], b["boxes"])
            torch.testing.assert_close(a["masks"], b["masks"])
    assert len(local_props[0][0]) == 0  # 0.9999: nothing clears it


def _with_batch_statistics(model: MaskRCNNModel) -> MaskRCNNModel:
    """Random batch-norm statistics and affine parameters, so that folding them has work to do."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.network.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    model.network.eval()
    return model


def test_inference_copy_folds_the_backbone_and_keeps_the_detections():
    from seglab.models.maskrcnn_net import FoldedBlock, inference_copy

    model = _with_batch_statistics(tiny_maskrcnn())
    net = model.network
    names = [n for n, _ in net.named_parameters()]
    fast = inference_copy(net)
    backbone = fast.maskrcnn.backbone
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    assert all(isinstance(b, FoldedBlock) for stage in backbone.stages for b in stage)
    assert [n for n, _ in net.named_parameters()] == names  # the model's own network untouched
    img, _ = blob_image((96, 128), n=8, seed=1)
    x = torch.from_numpy(img[None, None].astype(np.float32) / 255)
    with torch.inference_mode():
        feats, ref_feats = fast.encoder_features(x), net.encoder_features(x)
        a, b = fast.detect(x, 0.0, 0.5)[0], net.detect(x, 0.0, 0.5)[0]
    for f, r in zip(feats, ref_feats):
        torch.testing.assert_close(f, r, atol=1e-4, rtol=1e-4)
    assert len(b["boxes"]) > 10
    torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(a["scores"], b["scores"], atol=1e-4, rtol=1e-4)


def test_model_runs_its_folded_copy_and_rebuilds_it_when_weights_change():
    from seglab.inference.feature_tap import running_network
    from seglab.models.maskrcnn_net import FoldedBlock

    model = _with_batch_statistics(tiny_maskrcnn())
    first = model._inference_network()
    assert running_network(model) is first and first is not model.network
    assert any(isinstance(m, FoldedBlock) for m in first.modules())
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        a = model.forward_tiles(x, thresholds={"score_thresh": 0.0})[0]
    with torch.no_grad():
        model.network.maskrcnn.backbone.stem[0].weight.mul_(2.0)
    assert model._inference_network() is not first
    with torch.inference_mode():
        b = model.forward_tiles(x, thresholds={"score_thresh": 0.0})[0]
    assert not torch.equal(a["scores"], b["scores"])
    model.network.train()
    assert model._inference_network() is model.network  # training runs the network itself


def test_folded_backbone_finds_the_same_objects_on_a_real_image(monkeypatch):
    """maskrcnn-nuclei on the fluorescence sample (bfloat16 backbone on the CPU): the folded copy
    rounds differently, so the same objects (matched at IoU >= 0.9), not the same pixels."""
    from seglab.metrics import iou_matrix
    from seglab.models.registry import get_model
    from seglab.samples import load_sample

    image, _ = load_sample("fluorescence")
    fast = segment(get_model("maskrcnn-nuclei"), image, device="cpu", diameter=None)
    monkeypatch.setattr(MaskRCNNModel, "_inference_copy", staticmethod(lambda net: net.eval()))
    plain = segment(get_model("maskrcnn-nuclei"), image, device="cpu", diameter=None)
    iou = iou_matrix(plain.labels, fast.labels)
    # at most 1.5 % more or fewer objects (borderline scores; session 27's weights: 234 against 237)
    assert plain.n_objects > 100 and abs(fast.n_objects - plain.n_objects) <= max(2, 0.015 * plain.n_objects)
    assert (iou.max(1) >= 0.9).mean() >= 0.98


def test_training_gradients_are_those_of_torchvisions_poolers(one_thread):
    """The separable RoIAlign (seglab.models.roi_align) changes nothing but speed: within float
    rounding, the same losses and the same gradients as torchvision's own poolers."""
    from torchvision.ops import MultiScaleRoIAlign

    from seglab.models.roi_align import SeparableRoIAlign, use_torchvision_poolers

    model = tiny_maskrcnn()
    rh = model.network.maskrcnn.roi_heads
    assert isinstance(rh.box_roi_pool, SeparableRoIAlign) and isinstance(rh.mask_roi_pool, SeparableRoIAlign)
    img, lab = blob_image((96, 96), n=8, seed=4)
    x = torch.from_numpy(img[None, None].astype("float32") / 255.0)
    labels = torch.from_numpy(lab[None].astype("int32"))
    valid = torch.ones(1, 1, 96, 96, dtype=torch.bool)

    def grads():
        net = model.network.train()
        net.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # torchvision samples proposals at random
        loss, parts = model.training_loss(net, x, {"labels": labels}, valid)
        loss.backward()
        return parts, {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}

    parts, ours = grads()
    ours_pools = rh.box_roi_pool, rh.mask_roi_pool
    use_torchvision_poolers(rh)
    assert type(rh.box_roi_pool) is MultiScaleRoIAlign and rh.mask_roi_pool.output_size == (14, 14)
    try:
        ref_parts, ref = grads()
    finally:
        rh.box_roi_pool, rh.mask_roi_pool = ours_pools
    assert parts["mask"] > 0 and parts == pytest.approx(ref_parts, rel=1e-5)
    assert set(ours) == set(ref)
    stem = next(k for k in ref if "backbone" in k)  # the heads' gradients reach the backbone
    assert ref[stem].abs().sum() > 0
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-4, atol=1e-6)


def test_separable_roi_align_finds_the_same_objects_on_a_real_image():
    """maskrcnn-nuclei on the fluorescence sample with torchvision's poolers and with seglab's
    (channels-last windows): RoIAlign's values agree within float rounding, so the same objects."""
    from seglab.metrics import iou_matrix
    from seglab.models.registry import get_model
    from seglab.models.roi_align import use_torchvision_poolers
    from seglab.samples import load_sample

    image, _ = load_sample("fluorescence")
    model = get_model("maskrcnn-nuclei")
    ours = segment(model, image, device="cpu", diameter=None)
    use_torchvision_poolers(model._inference_network().maskrcnn.roi_heads)
    theirs = segment(model, image, device="cpu", diameter=None)
    assert theirs.n_objects > 100 and abs(ours.n_objects - theirs.n_objects) <= 1
    iou = iou_matrix(theirs.labels, ours.labels)
    assert (iou.max(1) >= 0.95).mean() >= 0.99


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_projection_equals_a_strided_conv(stride):
    from seglab.models.maskrcnn_net import PointwiseConv

    torch.manual_seed(0)
    conv = PointwiseConv(6, 10, stride)
    ref = torch.nn.Conv2d(6, 10, 1, stride, bias=False)
    ref.load_state_dict(conv.state_dict())  # same parameters, same names
    x = torch.randn(3, 6, 17, 14).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = conv(xa), ref(xb)
    assert ya.shape == yb.shape == (3, 10, 9 if stride == 2 else 17, 7 if stride == 2 else 14)
    torch.testing.assert_close(ya, yb)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad)


TRAIN_ONE_PATCH = """
import numpy as np, torch
torch.set_num_threads(2)
from maskrcnn_helpers import tiny_maskrcnn
from seglab.training.data import PatchSampler, make_pair
from seglab.training.loop import TrainSettings, train_iter
model = tiny_maskrcnn()
image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
labels = np.zeros((64, 64), np.int32); labels[10:20, 10:20] = 1; labels[30:45, 30:40] = 2
sampler = PatchSampler([make_pair(image, labels, 1, model.config.normalization)], 64)
for _ in train_iter(model, sampler, TrainSettings(steps=10, batch_size=1), device="cpu"):
    pass
print("trained")
"""


def test_training_a_narrow_model_on_batches_of_one_does_not_crash():
    """oneDNN's bfloat16 weight gradient of a strided 1x1 convolution (channels-last, < 16
    channels, odd batch) corrupted the heap on AVX512-BF16 CPUs; a subprocess, so that a crash
    fails this test instead of ending pytest."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", TRAIN_ONE_PATCH], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and "trained" in out.stdout, out.stderr[-2000:]
