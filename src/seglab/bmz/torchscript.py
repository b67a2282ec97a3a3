"""TorchScript versions of a seglab model's network, for bioimage.io consumers only.

seglab never loads these files (its own import reads the safetensors weights and the config
the package carries); they are what ``bioimageio.core`` and other zoo consumers run.

* U-Net: the network's two logits (foreground, normalised distance); the package's
  postprocessing ``sigmoid`` turns them into the maps seglab's watershed takes.
* StarDist-style: the probability (sigmoid) and the ``n_rays`` distances (clamped at 0),
  at ``1 / grid`` of the input size, as StarDist's own packages give them.
* Mask R-CNN: torchvision's detector (scripted, not traced: its output size depends on
  the image) followed by seglab's own paste (:func:`paste_labels`, the same rule as
  :func:`seglab.models.detections.paste_detections_iter`), so the output is an instance
  label image.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from seglab.errors import SeglabError


class StarActivation(nn.Module):
    """Network logits -> (probability, radial distances), as ``StarDistModel.forward_tiles``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:].clamp_min(0.0)], dim=1)


def dense_module(model) -> nn.Module:
    """The module a dense family (U-Net, StarDist) exports: network (batch norm folded), eval mode."""
    from seglab.models.unet_net import fold_batchnorm

    net = fold_batchnorm(model.network).eval()
    net = net.to(memory_format=torch.contiguous_format)
    if model.family == "stardist":
        return StarActivation(net).eval()
    return net


def trace_dense(model, example: torch.Tensor) -> torch.jit.ScriptModule:
    """A traced dense network (works for any input size that is a multiple of the divisor)."""
    import warnings

    module = dense_module(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 calls TorchScript deprecated
        return torch.jit.trace(module, example, check_trace=False)


# ---------------------------------------------------------------- Mask R-CNN
def _axis_weights(lo: float, hi: float, start: int, stop: int, m: int) -> torch.Tensor:
    """Bilinear weights ``(stop - start, m)``: as ``seglab.models.detections._axis_weights``."""
    k = torch.arange(start, stop, dtype=torch.float64)
    u = (k - lo) / max((hi - lo) / m, 1e-6) - 0.5
    u = u.clamp(0.0, float(m - 1))
    i0 = torch.floor(u).to(torch.int64)
    i1 = torch.clamp(i0 + 1, max=m - 1)
    f = u - i0.to(torch.float64)
    w = torch.zeros((k.numel(), m), dtype=torch.float32)
    rows = torch.arange(k.numel())
    w.index_put_((rows, i0), (1.0 - f).to(torch.float32), accumulate=True)
    w.index_put_((rows, i1), f.to(torch.float32), accumulate=True)
    return w


def paste_labels(boxes: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor, h: int, w: int,
                 score_thresh: float, mask_thresh: float, min_area: float) -> torch.Tensor:
    """Instance labels ``(h, w)`` int32 from detections: masks ``(N, M, M)`` over their boxes
    thresholded at ``mask_thresh`` and pasted by decreasing score; an object keeping fewer
    than ``min_area`` pixels or less than half of its own mask is dropped; ids 1..n by score."""
    labels = torch.zeros((h, w), dtype=torch.int32)
    min_area = max(min_area, 1.0)
    order = torch.argsort(-scores, stable=True)
    n = 0
    for j in range(int(order.numel())):
        i = int(order[j])
        if float(scores[i]) < score_thresh:
            break
        x0, y0, x1, y1 = float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])
        r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1), h)
        c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1), w)
        if r1 <= r0 or c1 <= c0:
            continue
        m = masks[i]
        prob = _axis_weights(y0, y1, r0, r1, m.shape[0]) @ m @ _axis_weights(x0, x1, c0, c1, m.shape[1]).t()
        inside = prob >= mask_thresh
        region = labels[r0:r1, c0:c1]
        new = inside & (region == 0)
        n_new = int(new.sum())
        if n_new < min_area or n_new < 0.5 * int(inside.sum()):
            continue
        n += 1
        region[new] = n
    return labels


class _Backbone(nn.Module):
    """seglab's compact backbone with a TorchScript-friendly signature (same submodules)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.stem = backbone.stem
        self.stages = backbone.stages
        self.fpn = backbone.fpn
        self.out_channels = backbone.out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.stem(x)
        feats: Dict[str, torch.Tensor] = OrderedDict()
        i = 0
        for stage in self.stages:
            x = stage(x)
            feats[str(i)] = x
            i += 1
        return self.fpn(feats)


def _keep_scale_transform() -> nn.Module:
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class KeepScale(GeneralizedRCNNTransform):
        """No resizing, no normalisation, and no pasting: masks stay ``(N, 1, M, M)`` over their boxes."""

        def __init__(self) -> None:
            super().__init__(min_size=1, max_size=1, image_mean=[0.0], image_std=[1.0], size_divisible=32)

        def normalize(self, image: torch.Tensor) -> torch.Tensor:
            return image

        def resize(self, image: torch.Tensor, target: Optional[Dict[str, torch.Tensor]] = None
                   ) -> Tuple[torch.Tensor, Optional[Dict[str, torch.Tensor]]]:
            return image, target

        def postprocess(self, result: List[Dict[str, torch.Tensor]], image_shapes: List[Tuple[int, int]],
                        original_image_sizes: List[Tuple[int, int]]) -> List[Dict[str, torch.Tensor]]:
            return result

    return KeepScale()


class MaskRCNNLabels(nn.Module):
    """Detector + paste: ``(B, C, H, W)`` normalised images -> ``(B, 1, H, W)`` int32 labels."""

    def __init__(self, detector: nn.Module, score_thresh: float, mask_thresh: float, min_area: float) -> None:
        super().__init__()
        self.detector = detector
        self.score_thresh = float(score_thresh)
        self.mask_thresh = float(mask_thresh)
        self.min_area = float(min_area)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[2]), int(x.shape[3])
        out: List[torch.Tensor] = []
        for b in range(int(x.shape[0])):
            _, dets = self.detector([x[b]])
            d = dets[0]
            masks = d["masks"][:, 0]
            out.append(paste_labels(d["boxes"], d["scores"], masks, h, w,
                                    self.score_thresh, self.mask_thresh, self.min_area))
        return torch.stack(out)[:, None]


def maskrcnn_module(model, thresholds: dict[str, float]) -> MaskRCNNLabels:
    """An eval-mode copy of the model's detector, set up as seglab's ``detect`` runs it."""
    from seglab.models.roi_align import use_torchvision_poolers

    net = model.network
    det = copy.deepcopy(net.maskrcnn).eval()
    det.backbone = _Backbone(det.backbone)
    det.transform = _keep_scale_transform()
    det.rpn.score_thresh = float(net.rpn_score_thresh)
    det.roi_heads.score_thresh = float(thresholds["score_thresh"])
    det.roi_heads.nms_thresh = float(thresholds["nms_thresh"])
    # torchvision's own poolers: seglab's (the same values within float rounding) are Python
    # that TorchScript does not compile, and consumers run torchvision's ops
    use_torchvision_poolers(det.roi_heads)
    return MaskRCNNLabels(det, thresholds["score_thresh"], thresholds["mask_thresh"], thresholds["min_area"]).eval()


def script_maskrcnn(model, thresholds: dict[str, float]) -> torch.jit.ScriptModule:
    """The scripted detector + paste; a clear error when torchvision's detector does not script."""
    import warnings

    module = maskrcnn_module(model, thresholds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(module)
    except Exception as e:  # noqa: BLE001  TorchScript raises many kinds
        raise SeglabError(f"the Mask R-CNN network of {model.config.name!r} cannot be exported to TorchScript "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def save_torchscript(module: torch.jit.ScriptModule, path) -> None:
    """``torch.jit.save`` without its deprecation warning (bioimage.io runs TorchScript)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(module, str(path))


def export_torchscript(model, example: torch.Tensor, thresholds: dict[str, float]) -> torch.jit.ScriptModule:
    """TorchScript of ``model`` for the package (see the module docstring for what each family gives)."""
    if model.family in ("unet", "stardist"):
        return trace_dense(model, example)
    if model.family == "maskrcnn":
        return script_maskrcnn(model, thresholds)
    raise SeglabError(f"models of family {model.family!r} cannot be exported to the BioImage Model Zoo yet: "
                      f"seglab knows how to export unet, stardist and maskrcnn networks")
