"""Training data: (image, labels, valid-mask) pairs and an augmenting patch sampler."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F

from seglab.errors import SeglabError
from seglab.inference.denoise import smoothed
from seglab.inference.normalize import model_input
from seglab.io.labels import relabel_consecutive
from seglab.models.base import TEACHER_KEY, SegmentationModel
from seglab.training.distill import teacher_maps


@dataclass
class TrainPair:
    """One annotated plane: normalised image ``(C, H, W)``, labels ``(H, W)``, optional valid mask."""

    image: np.ndarray
    labels: np.ndarray
    valid: np.ndarray | None = None
    weight: float = 1.0
    name: str = ""


@dataclass
class Augment:
    """Augmentation settings; all on by default.

    ``scale_range``: objects are shown enlarged by a factor drawn log-uniformly from it; 0.7-1.4
    (as the built-ins' recipes) makes a model tolerate objects 0.7x to 1.4x its size without
    rescaling (issue 11). ``blur_prob``: the share of patches blurred (defocus) by a Gaussian
    whose sigma is drawn uniformly from 0.5 to ``blur_sigma`` pixels (as the network sees them).
    ``saturate_prob``: the share of grey patches saturated as a camera saturates bright nuclei and
    normalisation then shows them: clipped at a level drawn uniformly from ``SATURATE_LEVELS`` of
    the normalised range and divided by it (flat nuclei at 1, the background unchanged).
    """

    flips: bool = True
    scale_range: tuple[float, float] = (0.7, 1.4)
    intensity: bool = True
    noise_std: float = 0.03
    invert_prob: float = 0.0
    #: colour (3-channel) images only: stain jitter in HED optical-density space and saturation
    #: jitter, of this strength (0 = off; 0.05 is mild, 0.1 strong); see :func:`colour_jitter`
    colour_jitter: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: float = 2.5
    saturate_prob: float = 0.0


#: the levels (of the normalised 0..1 range) a saturated patch is clipped at
SATURATE_LEVELS = (0.3, 0.8)


# optical densities of haematoxylin, eosin and DAB (rows) in R, G, B (Ruifrok & Johnston 2001,
# as in skimage.color.rgb_from_hed)
_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)


def colour_jitter(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random stain and saturation change of a normalised RGB patch ``(3, H, W)`` (values about 0..1).

    HED jitter (Tellez et al. 2018): the patch's optical density is split into haematoxylin,
    eosin and residual stains, each scaled by ``1 + U(-2s, 2s)`` and shifted by ``U(-s, s)``,
    then turned back into RGB; the change is added to the patch, so values outside 0..1 keep
    their offset. Then saturation: the distance of each pixel from its grey is scaled by
    ``1 + U(-4s, 4s)``.
    """
    if img.shape[0] != 3 or strength <= 0:
        return img
    x = np.clip(img, 1e-3, 1.0).astype(np.float64)
    od = -np.log(x).reshape(3, -1)
    hed = _HED_FROM_RGB.T @ od
    alpha = 1.0 + rng.uniform(-2 * strength, 2 * strength, size=(3, 1))
    beta = rng.uniform(-strength, strength, size=(3, 1))
    od2 = _RGB_FROM_HED.T @ np.maximum(hed * alpha + beta, 0.0)
    out = img + (np.exp(-od2).reshape(img.shape) - x).astype(np.float32)
    grey = out.mean(axis=0, keepdims=True)
    sat = 1.0 + rng.uniform(-4 * strength, 4 * strength)
    return (grey + (out - grey) * sat).astype(np.float32)


def make_pair(
    image: np.ndarray,
    labels: np.ndarray,
    model_channels: int,
    normalization: dict,
    *,
    channel_axis: int | None = None,
    valid: np.ndarray | None = None,
    weight: float = 1.0,
    name: str = "",
    denoise_steps: Sequence[Sequence[float]] = (),
) -> TrainPair:
    """Check and normalise one (image, labels) pair the way inference will see it (a noisy image
    smoothed by the model's ``denoise_steps``, :mod:`seglab.inference.denoise`)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        if labels.dtype == bool or not np.all(np.mod(labels, 1) == 0):
            raise SeglabError(f"labels of {name or 'a pair'} must be integers, got {labels.dtype}")
    x = model_input(image, model_channels, normalization, channel_axis)
    if denoise_steps:
        x = smoothed(x, denoise_steps)[0]
    if x.shape[1:] != labels.shape:
        raise SeglabError(
            f"image and labels of {name or 'a pair'} differ in shape: {x.shape[1:]} vs {labels.shape}"
        )
    if labels.min() < 0:
        raise SeglabError(f"labels of {name or 'a pair'} contain negative values")
    v = None if valid is None else np.asarray(valid, dtype=bool)
    return TrainPair(x, relabel_consecutive(labels), v, weight, name)


@dataclass
class PatchSampler:
    """Draws augmented square patches from pairs, weighted by ``pair.weight``."""

    pairs: list[TrainPair]
    patch_size: int = 256
    augment: Augment = field(default_factory=Augment)
    seed: int = 0
    #: a trained model whose maps on each patch join the targets (knowledge distillation,
    #: :mod:`seglab.training.distill`); ``None``: the labels' targets only
    teacher: SegmentationModel | None = None
    #: the teacher's maps averaged over each patch's eight orientations (test-time augmentation)
    teacher_augment: bool = False

    def __post_init__(self) -> None:
        if not self.pairs:
            raise SeglabError("no training pairs")
        w = np.array([p.weight for p in self.pairs], dtype=np.float64)
        self._p = w / w.sum()
        self.rng = np.random.default_rng(self.seed)

    def _crop(self, pair: TrainPair, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c, h, w = pair.image.shape
        valid = pair.valid if pair.valid is not None else np.ones((h, w), dtype=bool)
        # pad (image reflect, labels 0, valid False) when the plane is smaller than the crop
        ph, pw = max(0, size - h), max(0, size - w)
        img, lab = pair.image, pair.labels
        if ph or pw:
            mode = "reflect" if min(h, w) > 1 and ph < h and pw < w else "edge"
            img = np.pad(img, ((0, 0), (0, ph), (0, pw)), mode=mode)
            lab = np.pad(lab, ((0, ph), (0, pw)))
            valid = np.pad(valid, ((0, ph), (0, pw)))
            h, w = lab.shape
        y = int(self.rng.integers(0, h - size + 1))
        x = int(self.rng.integers(0, w - size + 1))
        return img[:, y : y + size, x : x + size], lab[y : y + size, x : x + size], valid[y : y + size, x : x + size]

    def sample(self, margin: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One augmented (image, labels, valid) patch of ``patch_size + 2 * margin``."""
        a, rng, p = self.augment, self.rng, self.patch_size + 2 * margin
        pair = self.pairs[int(rng.choice(len(self.pairs), p=self._p))]
        lo, hi = a.scale_range
        s = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else 1.0
        src = max(8, int(round(p / s)))
        img, lab, val = self._crop(pair, src)
        if src != p:
            idx = np.minimum(((np.arange(p) + 0.5) * src / p).astype(np.int64), src - 1)
            lab = lab[np.ix_(idx, idx)]
            val = val[np.ix_(idx, idx)]
            t = torch.from_numpy(np.ascontiguousarray(img))[None]
            img = F.interpolate(t, size=(p, p), mode="bilinear", align_corners=False)[0].numpy()
        if a.flips:
            k = int(rng.integers(4))
            img, lab, val = (np.rot90(img, k, axes=(-2, -1)), np.rot90(lab, k), np.rot90(val, k))
            if rng.random() < 0.5:
                img, lab, val = img[..., ::-1], lab[:, ::-1], val[:, ::-1]
        img = np.array(img, dtype=np.float32)
        if a.blur_prob > 0 and rng.random() < a.blur_prob:
            s = float(rng.uniform(0.5, max(0.5, a.blur_sigma)))
            img = ndi.gaussian_filter(img, (0.0, s, s)).astype(np.float32, copy=False)
        if a.saturate_prob > 0 and img.shape[0] == 1 and rng.random() < a.saturate_prob:
            level = float(rng.uniform(*SATURATE_LEVELS))  # after the optics' blur: the sensor saturates
            img = np.minimum(img, level) / level
        if a.colour_jitter > 0:
            img = colour_jitter(img, rng, a.colour_jitter)
        if a.intensity:
            if rng.random() < a.invert_prob:
                img = 1.0 - img
            gamma = float(np.exp(rng.uniform(-0.4, 0.4)))
            img = np.sign(img) * np.abs(img) ** gamma
            img = img * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15)
        if a.noise_std > 0:
            img = img + rng.normal(0, rng.uniform(0, a.noise_std), img.shape).astype(np.float32)
        return img.astype(np.float32), np.ascontiguousarray(lab), np.ascontiguousarray(val)

    def batch(self, n: int, model: SegmentationModel) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """A batch of ``n`` patches with the model's targets.

        Targets are computed on the patch plus the model's ``target_margin`` of context
        and cropped back, so objects cut by the patch border keep their true shape.
        """
        stride = int(model.output_stride)
        if self.patch_size % stride:
            raise SeglabError(f"patch size {self.patch_size} must be a multiple of the output stride {stride}")
        m = -(-int(model.target_margin) // stride) * stride
        p, ms, ps = self.patch_size, m // stride, self.patch_size // stride
        imgs, vals, targets = [], [], []
        for _ in range(n):
            img, lab, val = self.sample(margin=m)
            t = model.make_targets(lab)
            # the patch with its context only where a teacher is to see it
            imgs.append(img if self.teacher is not None else img[:, m : m + p, m : m + p])
            vals.append(val[m : m + p, m : m + p])
            targets.append({k: v[..., ms : ms + ps, ms : ms + ps] for k, v in t.items()})
        x = torch.from_numpy(np.stack(imgs))
        v = torch.from_numpy(np.stack(vals)[:, None])
        t = {k: torch.from_numpy(np.stack([d[k] for d in targets])) for k in targets[0]}
        if self.teacher is not None:
            # the teacher sees the same context as the labels' targets; its maps are cropped alike
            t[TEACHER_KEY] = self._teacher_maps(x, stride)[..., ms : ms + ps, ms : ms + ps].contiguous()
            x = x[:, :, m : m + p, m : m + p].contiguous()
        return x, t, v

    def _teacher_maps(self, full: torch.Tensor, stride: int) -> torch.Tensor:
        """The teacher's maps of patches with context, padded (reflect) to its size divisor."""
        size = full.shape[-1]
        div = int(np.lcm(int(self.teacher.size_divisor), stride))
        pad = -size % div
        if pad:
            full = F.pad(full, (0, pad, 0, pad), mode="reflect")
        maps = teacher_maps(self.teacher, full, self.teacher_augment)
        return maps[..., : size // stride, : size // stride]


class PrefetchSampler:
    """Makes the next batches of ``sampler`` in a background thread while the network trains.

    The targets (radial distances, compiled without the GIL) and the augmentation overlap
    the network's forward/backward. Same ``batch(n, model)`` as :class:`PatchSampler`; the
    thread is a daemon, stopped by :meth:`close`. Errors in the thread surface in ``batch``.
    """

    def __init__(self, sampler: PatchSampler, depth: int = 2) -> None:
        self.sampler = sampler
        self.depth = depth
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._args: tuple[int, SegmentationModel] | None = None
        #: batches handed out so far (the training step, for a loop that takes one per step)
        self.served = 0

    def __getattr__(self, name: str):
        return getattr(self.sampler, name)

    def _work(self, n: int, model: SegmentationModel) -> None:
        while not self._stop.is_set():
            try:
                item = ("ok", self.sampler.batch(n, model))
            except Exception as exc:  # noqa: BLE001 - handed to the consumer
                item = ("error", exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[0] == "error":
                return

    def batch(self, n: int, model: SegmentationModel) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        if self._thread is None:
            self._args = (n, model)
            self._thread = threading.Thread(target=self._work, args=(n, model), daemon=True)
            self._thread.start()
        elif self._args != (n, model):
            raise SeglabError("a prefetching sampler serves one batch size and model")
        kind, value = self._queue.get()
        if kind == "error":
            raise value
        self.served += 1
        return value

    def close(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _BatchStream(torch.utils.data.IterableDataset):
    """Endless batches of a :class:`PatchSampler`, each worker process drawing with its own seed."""

    def __init__(self, sampler: PatchSampler, n: int, model: SegmentationModel) -> None:
        self.sampler, self.n, self.model = sampler, n, model

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        # a different stream per worker, reproducible from the sampler's seed
        self.sampler.rng = np.random.default_rng([int(self.sampler.seed), 1 + worker])
        while True:
            yield self.sampler.batch(self.n, self.model)


class WorkerSampler:
    """Makes batches of ``sampler`` in ``workers`` processes, for machines whose network outruns
    one thread of augmentation and targets (a GPU beside many CPU cores).

    Serves one batch size and model, as :class:`PrefetchSampler`. The worker processes start
    here, before the network moves to a GPU, and each draws patches with its own seed
    (``[sampler.seed, 1 + worker]``), so a run is reproducible for a given number of workers.
    A teacher is not supported (it would run in every worker). :meth:`close` stops them.
    """

    def __init__(self, sampler: PatchSampler, batch_size: int, model: SegmentationModel, workers: int,
                 prefetch: int = 4) -> None:
        if workers < 1:
            raise SeglabError("the number of data workers must be at least 1")
        if sampler.teacher is not None:
            raise SeglabError("a teacher's maps are made in the training process: use the thread prefetcher")
        self.sampler = sampler
        self._args = (batch_size, model)
        # one batch here first: errors in the data surface at once, and compiled target code is
        # compiled once, before the workers are forked
        sampler.batch(batch_size, model)
        import multiprocessing

        ctx = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        self._loader = torch.utils.data.DataLoader(
            _BatchStream(sampler, batch_size, model), batch_size=None, num_workers=workers,
            prefetch_factor=prefetch, multiprocessing_context=ctx, pin_memory=torch.cuda.is_available())
        self._iter = iter(self._loader)
        #: batches handed out so far
        self.served = 0

    def __getattr__(self, name: str):
        return getattr(self.sampler, name)

    def batch(self, n: int, model: SegmentationModel) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        if (n, model) != self._args:
            raise SeglabError("a sampler with worker processes serves one batch size and model")
        if self._iter is None:
            raise SeglabError("the data workers were stopped")
        self.served += 1
        return next(self._iter)

    def close(self) -> None:
        """Stop the worker processes."""
        self._iter = None  # the loader's iterator stops its workers when released


def background_sampler(sampler: PatchSampler, batch_size: int, model: SegmentationModel,
                       workers: int = 0) -> PrefetchSampler | WorkerSampler:
    """The sampler a recipe trains from: batches made in ``workers`` processes, or (0) in one
    background thread."""
    if workers:
        return WorkerSampler(sampler, batch_size, model, workers)
    return PrefetchSampler(sampler)
