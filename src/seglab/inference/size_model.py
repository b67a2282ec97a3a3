"""A learned size model: the objects' size read from the network's own encoder features.

As Cellpose reads the size from its style vector (there with a linear regression): each encoder
level's output on a probe window is summarised by its per-channel mean and standard deviation,
standardised, and a small MLP (one hidden layer of 32) maps that to
``log(object diameter / the model's object diameter)``. It is fitted on the model's training
images resized over a wide range of factors (:mod:`seglab.training.size_fit`) and stored beside
the weights (``size_model.safetensors``).

It does not segment, so it cannot be fooled by the fragments a model cuts from objects far larger
than its own size (fragments measure the model's size; the encoder sees the large objects). It is
coarse (median error 8-12 %, cross-validated, about one reading in ten off by more than 30 %), so
``diameter="auto"`` uses it as a referee between object measures made at different scales
(:mod:`seglab.inference.diameter`), not as the answer.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

#: file in a model folder that holds the size model (safetensors: no code runs on loading)
SIZE_MODEL_FILE = "size_model.safetensors"
#: what the stored tensors mean; a file of another kind is refused
KIND = "encoder-mean-std-in-tile-mlp-v2"
#: earlier kinds, not read (with a warning): their features were summarised differently
OLD_KINDS = {"encoder-mean-std-mlp-v1": "features of the bare probe window, before the probe's own pass was read"}
#: planes smaller than this (pixels per side) give no features (too little for the deepest level)
MIN_SIDE = 32


@dataclass
class SizeModel:
    """Standardised features through one hidden layer:
    ``log(d / object_diameter) = relu(((f - mean) / scale) @ w1 + b1) @ w2 + b2``."""

    mean: np.ndarray
    scale: np.ndarray
    w1: np.ndarray  # (features, hidden)
    b1: np.ndarray  # (hidden,)
    w2: np.ndarray  # (hidden,)
    b2: float

    def log_ratio(self, features: np.ndarray) -> float:
        """Predicted ``log(diameter / the model's object_diameter)`` for one feature vector."""
        f = (np.asarray(features, np.float64) - self.mean) / self.scale
        return float(np.maximum(f @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2)

    def diameter(self, features: np.ndarray, object_diameter: float) -> float:
        """Predicted object diameter (pixels of the window the features came from)."""
        return float(object_diameter) * math.exp(min(max(self.log_ratio(features), -8.0), 8.0))

    @property
    def n_features(self) -> int:
        return int(self.mean.size)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        t = {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k), np.float64))
             for k in ("mean", "scale", "w1", "b1", "w2")}
        t["b2"] = torch.tensor([float(self.b2)], dtype=torch.float64)
        return t

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> SizeModel:
        mean, scale, w1, b1, w2 = (t[k].double().numpy() for k in ("mean", "scale", "w1", "b1", "w2"))
        n, h = mean.size, b1.size
        if not (mean.shape == scale.shape == (n,) and w1.shape == (n, h) and b1.shape == w2.shape == (h,)):
            raise ValueError("inconsistent shapes")
        if not all(np.isfinite(a).all() for a in (mean, w1, b1, w2)) or not (scale > 0).all():
            raise ValueError("non-finite values or a scale <= 0")
        return cls(mean, scale, w1, b1, w2, float(t["b2"].double().reshape(-1)[0]))


def save_size_model(size_model: SizeModel, path: Path) -> None:
    """Write ``size_model`` to ``path`` (a model folder's :data:`SIZE_MODEL_FILE`; callers write atomically)."""
    from safetensors.torch import save_file

    save_file(size_model.to_tensors(), str(path), metadata={"kind": KIND})


def load_size_model(folder: Path, n_features: int | None = None) -> SizeModel | None:
    """The folder's size model, or None when it has none. A file that is unreadable, of another
    kind, or made for other features (``n_features``) is an error: it would give wrong sizes."""
    from safetensors import SafetensorError, safe_open

    from seglab.errors import SeglabError

    path = Path(folder) / SIZE_MODEL_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            kind = (f.metadata() or {}).get("kind")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if kind in OLD_KINDS:
            warnings.warn(f"{path} is a size model of an earlier kind ({kind!r}: {OLD_KINDS[kind]}); it is not "
                          "used (diameter='auto' measures objects only). Fit a new one with python -m "
                          "seglab.training.size_fit", stacklevel=2)
            return None
        if kind != KIND:
            raise ValueError(f"it is of kind {kind!r}, seglab reads {KIND!r}")
        sm = SizeModel.from_tensors(tensors)
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise SeglabError(f"cannot read the size model {path}: {e}") from None
    if n_features is not None and sm.n_features != n_features:
        raise SeglabError(f"the size model {path} reads {sm.n_features} features, the network gives {n_features}")
    return sm


def n_features(network: torch.nn.Module) -> int | None:
    """Length of :func:`window_features`'s vector for ``network`` (None: it has no encoder to read)."""
    if not callable(getattr(network, "encoder_features", None)):
        return None
    div = int(getattr(network, "divisor", 1) or 1)
    side = max(MIN_SIDE, div)
    p = next(network.parameters())
    cin = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    with torch.no_grad():
        outs = network.encoder_features(torch.zeros(1, cin, side, side, dtype=p.dtype, device=p.device))
    return 2 * sum(int(o.shape[1]) for o in outs)


@torch.no_grad()
def window_features(network: torch.nn.Module, tile: np.ndarray, rows: slice | None = None,
                    cols: slice | None = None) -> np.ndarray | None:
    """Per-channel mean and standard deviation of each encoder level's output over the window
    ``rows, cols`` (default: all) of a normalised ``(C, H, W)`` tile that the encoder runs on (in
    the network's dtype and on its device; the tile padded by reflection to its size divisor).
    None for a window under :data:`MIN_SIDE` pixels on a side."""
    h, w = tile.shape[-2:]
    rows = slice(0, h) if rows is None else rows
    cols = slice(0, w) if cols is None else cols
    if min(rows.stop - rows.start, cols.stop - cols.start) < MIN_SIDE:
        return None
    div = int(getattr(network, "divisor", 1) or 1)
    ph, pw = (-h) % div, (-w) % div
    x = np.asarray(tile, np.float32)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    p = next(network.parameters())
    t = torch.from_numpy(np.ascontiguousarray(x[None])).to(device=p.device, dtype=p.dtype)
    was_training = network.training
    if was_training:  # (walking the modules costs a millisecond or two per call)
        network.eval()
    try:
        outs = network.encoder_features(t)
    finally:
        if was_training:
            network.train(True)
    parts = []
    for o in outs:
        stats = level_window_stats(o[0], x.shape[-2:], rows, cols)
        if stats is None:
            return None
        parts += list(stats)
    return torch.cat(parts).double().cpu().numpy()


def level_window_stats(out: torch.Tensor, tile_shape: tuple[int, int], rows: slice,
                       cols: slice) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`channel_mean_std` of the part of one encoder level's ``(C, h, w)`` output that covers
    the window ``rows, cols`` (pixels of the tile of ``tile_shape`` the encoder ran on); None
    when the level's stride is not a whole number of pixels, the same on both axes."""
    (th, tw), (mh, mw) = tile_shape, out.shape[-2:]
    if th % mh or tw % mw or th // mh != tw // mw:
        return None
    s = th // mh
    return channel_mean_std(out[:, rows.start // s:-(-rows.stop // s), cols.start // s:-(-cols.stop // s)])


def channel_mean_std(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) standard deviation of a ``(C, H, W)`` map, in float32.

    Two passes (mean, then the squared deviations, so that a constant channel gives 0), each sum
    a matrix-vector product over the map in its own memory layout (the inference network's maps are
    channels-last): ``Tensor.std`` over a channels-last map took 2.2 ms per map on this CPU, 60 %
    of the size model's cost per window; this takes about a third of that and agrees to 1e-4."""
    c = o.shape[0]
    if o.dim() == 3 and o.stride(0) == 1 and c > 1:  # channels-last: an (H*W, C) matrix
        g = o.permute(1, 2, 0).reshape(-1, c).float()
        n = g.shape[0]
        ones = torch.ones(1, n, dtype=g.dtype, device=g.device)
        mean = (ones @ g) / n
        var = (ones @ (g - mean).square_()) / max(n - 1, 1)
    else:
        g = o.reshape(c, -1).float()
        n = g.shape[1]
        ones = torch.ones(n, 1, dtype=g.dtype, device=g.device)
        mean = (g @ ones) / n
        var = ((g - mean).square_() @ ones) / max(n - 1, 1)
    return mean.reshape(c), var.reshape(c).sqrt()


def run_features(model, tile: np.ndarray, rows: slice | None = None, cols: slice | None = None,
                 amp: bool = True) -> np.ndarray | None:
    """:func:`window_features` as a run reads them: through the model's inference copy of its network
    (batch norm folded, ReLU fused) under the run's mixed precision when it has one. The fit reads the
    plain network in float32; on DSB2018 ``val`` windows the two readings differ by 0.25 % (median;
    1.8 % at most) in size."""
    from seglab.torch_env import autocast

    get = getattr(model, "_inference_network", None)
    net = get() if callable(get) else model.network
    device = next(net.parameters()).device
    with torch.inference_mode(), autocast(device, amp):
        return window_features(net, tile, rows, cols)


#: the fit: hidden units, steps of full-batch AdamW, learning rate, weight decay, input dropout
HIDDEN, STEPS, LR, WEIGHT_DECAY, DROPOUT = 32, 1500, 1e-3, 1e-3, 0.2


def fit_size_model(features: np.ndarray, log_ratios: np.ndarray, seed: int = 0) -> SizeModel:
    """Fit :class:`SizeModel` (smooth-L1 loss on the log ratio, so that a few images with odd labels do
    not dominate); deterministic for a given seed. An MLP rather than a ridge regression: with the
    same features (stardist-nuclei) 0.91 of the cross-validated readings fell within 30 % of the
    truth against 0.86 with ridge (on DSB2018 ``val`` enlarged 4x: 0.84 against 0.70)."""
    X = np.asarray(features, np.float64)
    y = np.asarray(log_ratios, np.float64)
    mean = X.mean(0)
    scale = X.std(0)
    scale[scale < 1e-6] = 1.0
    Xs = torch.tensor((X - mean) / scale, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1))
    opt = torch.optim.AdamW(net.parameters(), LR, weight_decay=WEIGHT_DECAY)
    with torch.enable_grad():
        for _ in range(STEPS):
            keep = (torch.rand(Xs.shape, generator=gen) >= DROPOUT).float() / (1.0 - DROPOUT)
            opt.zero_grad()
            loss = torch.nn.functional.smooth_l1_loss(net(Xs * keep)[:, 0], yt, beta=0.1)
            loss.backward()
            opt.step()
    w1, b1 = net[0].weight.detach().double().numpy().T, net[0].bias.detach().double().numpy()
    w2, b2 = net[2].weight.detach().double().numpy()[0], float(net[2].bias.detach().double()[0])
    return SizeModel(mean, scale, w1, b1, w2, b2)
