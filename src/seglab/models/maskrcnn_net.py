"""The Mask R-CNN network: torchvision's ``MaskRCNN`` assembled from parts for microscopy.

Differences from torchvision's photograph defaults, all set in :func:`build_maskrcnn`:

* a compact ResNet-like backbone (basic residual blocks, narrow stages) with an FPN,
  trained from scratch (no pretrained weights are ever downloaded);
* :class:`KeepScaleTransform`: no resizing and no normalisation (images arrive
  normalised by seglab), only padding to a multiple of 32;
* anchors for objects of about 5-80 px, thousands of proposals and detections per image;
* at inference, proposals chosen locally (``rpn_score_thresh``: every proposal whose
  objectness reaches it, no top-N budget per tile), so that tiled runs equal untiled ones;
* small box and mask heads, so thousands of detections stay affordable on a CPU;
* RoIAlign and its gradient by separable matrix products over channels-last windows
  (:mod:`seglab.models.roi_align`; torchvision's values within float rounding), several
  times faster on a CPU than torchvision's kernel;
* at inference under autocast, the backbone, FPN, RPN head and mask head run in low
  precision, while box regression and every box decoding run in float32 (box coordinates
  in bfloat16 would be off by pixels); training keeps the RPN and RoI heads in float32.

:class:`MaskRCNNNet` wraps the torchvision model with the two forwards seglab needs:
detections with fixed-size mask probabilities (no full-image pasting, which would need
one image-sized array per object) and the training losses.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Generator
from typing import Any

import torch
from torch import nn

from seglab.models.roi_align import SeparableRoIAlign
from seglab.models.unet_net import ConvReLU, fold_batchnorm, fold_conv_bn, fuse_conv_relu, same_memory_format
from seglab.progress import run_to_end
from seglab.triton_guard import guard_triton

guard_triton()  # torchvision.ops imports torch._dynamo, which imports Triton: not after Mesa's LLVM

from torchvision.models.detection import MaskRCNN  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor  # noqa: E402
from torchvision.models.detection.roi_heads import maskrcnn_inference  # noqa: E402
from torchvision.models.detection.rpn import concat_box_prediction_layers  # noqa: E402
from torchvision.models.detection.transform import GeneralizedRCNNTransform  # noqa: E402
from torchvision.ops import FeaturePyramidNetwork  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool  # noqa: E402

#: the architecture of the built-in model; tests use much smaller variants
DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "stem": 24,
    "widths": [32, 64, 128, 192],
    "blocks": [2, 2, 2, 2],
    "fpn_channels": 64,
    "box_head": 256,
    "mask_head": [48, 48, 48],
    "anchor_sizes": [6, 12, 24, 48, 96],
    "aspect_ratios": [0.5, 1.0, 2.0],
    "num_classes": 2,
    "detections_per_img": 3000,
    "rpn_pre_nms_top_n": 3000,
    "rpn_post_nms_top_n": 3000,
    "rpn_pre_nms_top_n_train": 2000,
    "rpn_post_nms_top_n_train": 2000,
    "box_batch_size_per_image": 256,
    "rpn_score_thresh": 0.3,
}

#: a proposal or detection budget that is never reached (top-N selection switched off)
NO_BUDGET = 1 << 40


def _local_proposals(rpn, objectness: torch.Tensor, deltas: torch.Tensor, anchors: list[torch.Tensor],
                     sizes: list[tuple[int, int]], per_level: list[int]) -> list[torch.Tensor]:
    """The RPN's proposals under a local score threshold (``rpn.score_thresh`` > 0, no top-N
    budget): the anchors whose objectness clears the threshold (less a margin, so that none
    ``filter_proposals`` would keep is lost to rounding) are decoded and filtered, not all of
    them (a 2048x2048 tile has about a million anchors; most score far below). The same
    proposals as decoding and filtering every anchor."""
    p = float(rpn.score_thresh)
    floor = torch.logit(torch.tensor(p, dtype=torch.float64)).item() - 1e-3
    n_images = len(anchors)
    scores = objectness.detach().reshape(n_images, -1)
    deltas = deltas.detach().reshape(n_images, -1, 4)
    level_of = torch.repeat_interleave(torch.arange(len(per_level), device=scores.device),
                                       torch.tensor(per_level, device=scores.device))
    out = []
    for k in range(n_images):
        idx = torch.nonzero(scores[k] >= floor).flatten()
        counts = torch.bincount(level_of[idx], minlength=len(per_level)).tolist()
        boxes = rpn.box_coder.decode_single(deltas[k, idx], anchors[k][idx])
        kept, _ = rpn.filter_proposals(boxes[None], scores[k, idx][None], [sizes[k]], counts)
        out.append(kept[0])
    return out


class KeepScaleTransform(GeneralizedRCNNTransform):
    """torchvision's transform without resizing or normalisation: pixels keep their scale."""

    def __init__(self, size_divisible: int = 32) -> None:
        super().__init__(min_size=1, max_size=1, image_mean=[0.0], image_std=[1.0], size_divisible=size_divisible)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if not image.is_floating_point():
            raise TypeError(f"expected a floating point image, got {image.dtype}")
        return image

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):
        return image, target


class PointwiseConv(nn.Conv2d):
    """A bias-free 1x1 convolution (a residual block's projection) whose stride is taken by
    slicing before a stride-1 convolution: the same values, gradients and state dict as
    ``nn.Conv2d(cin, cout, 1, stride)``. On AVX512-BF16 CPUs (an AMD EPYC, torch 2.14.1) oneDNN's
    bfloat16 weight gradient of a strided 1x1 convolution over channels-last input corrupts the
    heap when the input has fewer than 16 channels and the batch is odd (a crash, measured on
    shapes like a fine-tuning batch of one); a stride-1 one does not."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sy, sx = self.stride
        if sy != 1 or sx != 1:
            x = x[:, :, ::sy, ::sx]
        return nn.functional.conv2d(x, self.weight, self.bias)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18 style)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(PointwiseConv(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + (x if self.down is None else self.down(x)))


class FoldedBlock(nn.Module):
    """A :class:`BasicBlock` for inference: batch norm folded into its convolutions and the first
    ReLU fused into the first (:class:`~seglab.models.unet_net.ConvReLU`); same outputs in eval mode."""

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        self.conv1 = ConvReLU(fold_conv_bn(block.conv1, block.bn1))
        self.conv2 = fold_conv_bn(block.conv2, block.bn2)
        self.down = None if block.down is None else fold_conv_bn(block.down[0], block.down[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return torch.relu_(y + (x if self.down is None else self.down(x)))


class CompactBackbone(nn.Module):
    """ResNet-like feature extractor with an FPN: levels '0'-'3' at strides 4-32, 'pool' at 64."""

    def __init__(self, in_channels: int, stem: int, widths: list[int], blocks: list[int], fpn_channels: int) -> None:
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError("the backbone needs four stages (strides 4, 8, 16, 32)")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
        )
        stages = []
        cin = stem
        for w, n in zip(widths, blocks):
            layers = [BasicBlock(cin, w, 2)]
            layers += [BasicBlock(w, w, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.fpn = FeaturePyramidNetwork(list(widths), fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.stem(x)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats[str(i)] = x
        return self.fpn(feats)


def build_maskrcnn(in_channels: int, arch: dict[str, Any]) -> MaskRCNN:
    """torchvision ``MaskRCNN`` configured by ``arch`` (see :data:`DEFAULT_ARCHITECTURE`)."""
    a = {**DEFAULT_ARCHITECTURE, **arch}
    backbone = CompactBackbone(in_channels, int(a["stem"]), list(a["widths"]), list(a["blocks"]),
                               int(a["fpn_channels"]))
    sizes = tuple((int(s),) for s in a["anchor_sizes"])
    if len(sizes) != 5:
        raise ValueError("anchor_sizes needs one size per FPN level (5)")
    ratios = (tuple(float(r) for r in a["aspect_ratios"]),) * len(sizes)
    anchors = AnchorGenerator(sizes, ratios)
    ch = backbone.out_channels
    rep = int(a["box_head"])
    mask_layers = tuple(int(c) for c in a["mask_head"])
    n_cls = int(a["num_classes"])
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=int(a["rpn_pre_nms_top_n_train"]),
        rpn_post_nms_top_n_train=int(a["rpn_post_nms_top_n_train"]),
        rpn_pre_nms_top_n_test=int(a["rpn_pre_nms_top_n"]),
        rpn_post_nms_top_n_test=int(a["rpn_post_nms_top_n"]),
        # torchvision's default poolers' levels ("0"-"3") and sampling ratio (2), computed faster
        # on a CPU (seglab.models.roi_align)
        box_roi_pool=SeparableRoIAlign(["0", "1", "2", "3"], 7, 2),
        mask_roi_pool=SeparableRoIAlign(["0", "1", "2", "3"], 14, 2, out_memory_format=torch.channels_last),
        box_head=TwoMLPHead(ch * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, n_cls),
        box_detections_per_img=int(a["detections_per_img"]),
        box_batch_size_per_image=int(a["box_batch_size_per_image"]),
        mask_head=MaskRCNNHeads(ch, mask_layers, 1),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], mask_layers[-1], n_cls),
    )
    model.transform = KeepScaleTransform(32)
    local = float(a["rpn_score_thresh"])
    if not 0.0 <= local < 1.0:
        raise ValueError(f"rpn_score_thresh must be in [0, 1), got {local}")
    if local > 0:  # inference only: training keeps torchvision's top-N sampling of proposals
        model.rpn._pre_nms_top_n["testing"] = NO_BUDGET
        model.rpn._post_nms_top_n["testing"] = NO_BUDGET
        model.roi_heads.detections_per_img = NO_BUDGET
    return model


def inference_copy(net: MaskRCNNNet) -> MaskRCNNNet:
    """An eval-mode copy of ``net`` whose backbone has batch norm folded and ReLUs fused (stem:
    :func:`~seglab.models.unet_net.fold_batchnorm`, residual blocks: :class:`FoldedBlock`); the FPN,
    RPN and heads (no batch norm; run in float32) as they are. Parameter names change: inference only."""
    import copy

    out = copy.deepcopy(net).eval()
    backbone = out.maskrcnn.backbone
    backbone.stem = fuse_conv_relu(fold_batchnorm(backbone.stem))
    for stage in backbone.stages:
        for i, block in enumerate(stage):
            stage[i] = FoldedBlock(block)
    return same_memory_format(out, net)


def _full_precision(device: torch.device):
    """Autocast off: torchvision decodes boxes in the dtype of the regression outputs, and
    bfloat16 coordinates are 4 px apart at 1000 px; so box regression and decoding run in float32."""
    return torch.autocast(device.type, enabled=False)


def _only(boxes: list[torch.Tensor], k: int, part: slice) -> list[torch.Tensor]:
    """Per-image box lists holding only ``boxes[k][part]`` (the others empty), as RoI pooling takes them."""
    return [b[part] if j == k else b[:0] for j, b in enumerate(boxes)]


#: regions per step of the box and mask heads in :meth:`MaskRCNNNet.detect_iter`
ROI_CHUNK = 512


class MaskRCNNNet(nn.Module):
    """seglab's view of a torchvision Mask R-CNN: detections per tile, or training losses."""

    divisor = 32

    def __init__(self, in_channels: int, arch: dict[str, Any]) -> None:
        super().__init__()
        self.maskrcnn = build_maskrcnn(in_channels, arch)
        #: objectness from which a proposal is kept at inference; 0: torchvision's top-N per image
        self.rpn_score_thresh = float({**DEFAULT_ARCHITECTURE, **arch}["rpn_score_thresh"])

    def encoder_levels(self) -> list[str]:
        """Parameter-name prefixes of the backbone's levels, from the input down (stem, then stages)."""
        stages = self.maskrcnn.backbone.stages
        return ["maskrcnn.backbone.stem.", *(f"maskrcnn.backbone.stages.{i}." for i in range(len(stages)))]

    def encoder_modules(self) -> list[nn.Module]:
        """The modules whose outputs :meth:`encoder_features` returns, in its order (a run's hooks read them)."""
        backbone = self.maskrcnn.backbone
        return [backbone.stem, *backbone.stages]

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's stem and stage outputs, from the input down (what a size model reads)."""
        backbone = self.maskrcnn.backbone
        outs = [backbone.stem(x)]
        for stage in backbone.stages:
            outs.append(stage(outs[-1]))
        return outs

    def feature_radius(self) -> int:
        """Context (pixels) the backbone, FPN and RPN features need around a position, over
        all levels, plus one position of the level for RoIAlign's bilinear sampling."""
        return max(r + s for r, s in self.level_radii())

    def level_radii(self) -> list[tuple[int, int]]:
        """(receptive radius, stride) of the RPN's view of each FPN level ('0'-'3', 'pool')."""
        from seglab.models import receptive_field as rf

        backbone = self.maskrcnn.backbone
        x = rf.through(rf.Span.input(64 * self.divisor), backbone.stem)
        feats = []
        for stage in backbone.stages:
            for block in stage:
                y = rf.through(rf.through(x, block.conv1), block.conv2)
                x = rf.union(y, x if block.down is None else rf.through(x, block.down))
            feats.append(x)
        fpn = backbone.fpn
        last = rf.through(feats[-1], fpn.inner_blocks[-1])
        levels = [rf.through(last, fpn.layer_blocks[-1])]
        for i in range(len(feats) - 2, -1, -1):
            lateral = rf.through(feats[i], fpn.inner_blocks[i])
            last = rf.union(lateral, rf.upsample_nearest(last, len(lateral)))
            levels.insert(0, rf.through(last, fpn.layer_blocks[i]))
        levels.append(rf.conv(levels[-1], 1, 2, 0))  # LastLevelMaxPool
        rpn = self.maskrcnn.rpn.head.conv
        return [(rf.radius(rf.through(level, rpn)), level.stride) for level in levels]

    def detection_radius(self) -> int:
        """Pixels around an object's centre its detection depends on: the features over its box (up
        to half the largest anchor from its centre) and what those features see (:meth:`feature_radius`).

        Deliberately not ``receptive_radius()``, which the engine would use as the tile context:
        448 px (421 rounded) makes tiled labels identical to untiled ones in float32 (proposals
        chosen by ``rpn_score_thresh``, not a per-tile top-N), but triples a 1024x1024 run; 128 px
        already gives the same objects (matched one-to-one at IoU >= 0.9, docs/benchmarks.md),
        so Mask R-CNN uses ``config.tile_context`` (the built-in: 128)."""
        largest = max(max(sizes) for sizes in self.maskrcnn.rpn.anchor_generator.sizes)
        return self.feature_radius() + -(-int(largest) // 2)

    def _images(self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None):
        images, targets = self.maskrcnn.transform(list(x), targets)
        t = images.tensors
        if t.device.type == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)
        return ImageList(t, images.image_sizes), targets

    def detect(self, x: torch.Tensor, score_thresh: float, nms_thresh: float) -> list[dict[str, torch.Tensor]]:
        """Detections on ``(B, C, H, W)``: boxes (x0, y0, x1, y1) in pixels, scores, labels,
        and mask probabilities ``(N, M, M)`` over each box (not pasted into the image)."""
        return run_to_end(self.detect_iter(x, score_thresh, nms_thresh))

    def detect_iter(
        self, x: torch.Tensor, score_thresh: float, nms_thresh: float,
        context: Callable[[], Any] = contextlib.nullcontext, chunk: int = ROI_CHUNK,
    ) -> Generator[None, None, list[dict[str, torch.Tensor]]]:
        """:meth:`detect` in stages, yielding between them (backbone levels, FPN, RPN head,
        proposals, and the box and mask heads by ``chunk`` regions), each stage run inside
        ``context()`` (e.g. inference mode and autocast; nothing is held across a yield), so
        that a tile's detection can be cancelled within a fraction of its time. Regions are
        independent in the heads, so the result equals torchvision's ``roi_heads``."""
        m = self.maskrcnn
        m.roi_heads.score_thresh = float(score_thresh)
        m.roi_heads.nms_thresh = float(nms_thresh)
        b, rpn, rh = m.backbone, m.rpn, m.roi_heads
        with context():
            images, _ = self._images(x)
            h = b.stem(images.tensors)
        levels: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, stage in enumerate(b.stages):
            yield
            with context():
                h = stage(h)
            levels[str(i)] = h
        del h
        yield
        with context():
            features = b.fpn(levels)
        del levels
        yield
        sizes = images.image_sizes
        with context():
            # the RPN head's convolutions at the backbone's precision (bfloat16 on a CPU that has
            # it); its outputs go to float32 before any box is decoded from them
            objectness, deltas = rpn.head([v.contiguous(memory_format=torch.channels_last) for v in features.values()])
            objectness, deltas = [o.float() for o in objectness], [d.float() for d in deltas]
            features = OrderedDict((k, v.float()) for k, v in features.items())
            flist = list(features.values())
        yield
        with context(), _full_precision(x.device):
            anchors = rpn.anchor_generator(images, flist)
            per_level = [o[0].shape[0] * o[0].shape[1] * o[0].shape[2] for o in objectness]
            objectness, deltas = concat_box_prediction_layers(objectness, deltas)
            rpn.score_thresh = self.rpn_score_thresh  # not in training, where it stays 0
            try:
                if self.rpn_score_thresh > 0:
                    proposals = _local_proposals(rpn, objectness, deltas, anchors, sizes, per_level)
                else:
                    proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
                    proposals, _ = rpn.filter_proposals(proposals, objectness, sizes, per_level)
            finally:
                rpn.score_thresh = 0.0
        del objectness, deltas, anchors
        with context():
            # the layout the poolers read (seglab's: channels-last, a region's window is then a
            # block of whole pixels; torchvision's: NCHW), converted once here, not on every call
            fmt = getattr(rh.box_roi_pool, "memory_format", torch.contiguous_format)
            features = OrderedDict((k, v.contiguous(memory_format=fmt)) for k, v in features.items())
        logits, regression = [], []
        for k, props in enumerate(proposals):
            for i in range(0, len(props), chunk):
                yield
                with context(), _full_precision(x.device):
                    f = rh.box_roi_pool(features, _only(proposals, k, slice(i, i + chunk)), sizes)
                    c, r = rh.box_predictor(rh.box_head(f))
                logits.append(c)
                regression.append(r)
        yield
        with context(), _full_precision(x.device):
            n_cls = rh.box_predictor.cls_score.out_features
            c = torch.cat(logits) if logits else torch.zeros((0, n_cls), device=x.device)
            r = torch.cat(regression) if regression else torch.zeros((0, 4 * n_cls), device=x.device)
            boxes, scores, labels = rh.postprocess_detections(c, r, proposals, sizes)
        del logits, regression, proposals
        mask_logits = []
        for k, bx in enumerate(boxes):
            for i in range(0, len(bx), chunk):
                yield
                with context():
                    with _full_precision(x.device):
                        f = rh.mask_roi_pool(features, _only(boxes, k, slice(i, i + chunk)), sizes)
                    # the mask head at the backbone's precision: masks, not coordinates
                    mask_logits.append(rh.mask_predictor(rh.mask_head(f)).float())
        with context(), _full_precision(x.device):
            if mask_logits:
                probs = maskrcnn_inference(torch.cat(mask_logits), labels)
            else:
                probs = [torch.zeros((len(bx), 1, 28, 28), device=x.device) for bx in boxes]
        out = []
        for bx, sc, lb, pr in zip(boxes, scores, labels, probs):
            out.append({"boxes": bx.float(), "scores": sc.float(), "labels": lb, "masks": pr[:, 0].float()})
        return out

    def losses(self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """torchvision's training losses (RPN objectness and boxes, classifier, boxes, masks)."""
        m = self.maskrcnn
        images, targets = self._images(x, targets)
        features = m.backbone(images.tensors)
        with _full_precision(x.device):
            features = OrderedDict((k, v.float()) for k, v in features.items())
            proposals, rpn_losses = m.rpn(images, features, targets)
            _, head_losses = m.roi_heads(features, proposals, images.image_sizes, targets)
        return {**rpn_losses, **head_losses}

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return self.detect(x, self.maskrcnn.roi_heads.score_thresh, self.maskrcnn.roi_heads.nms_thresh)
