"""Fit a model's size model (:mod:`seglab.inference.size_model`) on annotated images.

    python -m seglab.training.size_fit src/seglab/models/builtin/stardist-nuclei \
        --data ../shared/data/dsb2018 [--monuseg ../shared/data/monuseg-kumar]

Every ``train`` image (never ``val``) is resized by each of :data:`FACTORS`; on each the probe
window that ``diameter="auto"`` would read gives one sample (up to :data:`WINDOWS` windows of a
plane probed through one): the encoder's features there, in the tile the factor-1 probe runs
(:func:`~seglab.inference.diameter.probe_tile`), and ``log`` of the image's median object diameter
(equivalent diameter of its labels, times the factor) over the model's ``object_diameter``.
Its errors are measured by 5-fold cross-validation grouped by image; the model folder is
given ``size_model.safetensors`` and the fit's facts in
``config.training["size_model"]`` (the weights are not rewritten).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import SeglabError
from seglab.evaluation import AnnotatedImage
from seglab.inference.size_model import SizeModel, fit_size_model, window_features
from seglab.models.base import SegmentationModel

#: resize factors of the training samples: objects from about a third to four times their size
FACTORS = (0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)
#: windows per image probed through one (its most structured candidates): more samples of the large
#: planes, measured on the windows ``auto`` reads (cross-validated; stardist-nuclei: median error
#: 8.6 % with one window, 7.95 % with four, within 15 % 0.71 -> 0.74; unet-nuclei 8.7 % -> 8.5 %);
#: the H&E model's 12 MoNuSeg tiles (1000x1000) would otherwise give one sample per factor each
#: against 96 DSB2018 colour images. About three times the fitting time.
WINDOWS = 4
#: images with fewer labelled objects give no sample (their median size says little)
MIN_OBJECTS = 3


def size_samples_iter(
    model: SegmentationModel, items: Sequence[AnnotatedImage], factors: Sequence[float] = FACTORS,
    windows: int = WINDOWS,
) -> Generator[tuple[int, int], None, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Features, log size ratios, image indices and whether it is the window ``auto`` reads, of every
    (image, factor, window) sample: up to ``windows`` windows (:func:`probe_windows`) of a plane probed
    through one, one of a plane probed whole; yields ``(done, total)`` images."""
    from seglab.inference.diameter import WHOLE_PROBE_AREA, equivalent_diameters, probe_tile, probe_windows
    from seglab.inference.denoise import prepared_plane
    from seglab.inference.rescale import resize_image, scaled_shape

    target = model.config.object_diameter
    if not target:
        raise SeglabError(f"model {model.config.name!r} records no object_diameter: a size model needs one")
    feats, ys, groups, primary = [], [], [], []
    for k, item in enumerate(items):
        d = equivalent_diameters(np.asarray(item.labels))
        if d.size >= MIN_OBJECTS:
            x = prepared_plane(model.config, np.asarray(item.image), "auto", item.channel_axis)[0]
            size = float(np.median(d))
            for f in factors:
                # the plane as it would arrive at factor f, and the tile its factor-1 probe reads
                whole = math.prod(scaled_shape(x.shape[-2:], f)) <= WHOLE_PROBE_AREA
                if whole:
                    sources = [x if f == 1.0 else resize_image(x, scaled_shape(x.shape[-2:], f))]
                else:  # only the probe windows are needed: resize those
                    sources = [x[:, rows, cols] for rows, cols in probe_windows(x, f, k=windows)]
                    sources = [s if f == 1.0 else resize_image(s, scaled_shape(s.shape[-2:], f)) for s in sources]
                for j, src in enumerate(sources):
                    v = window_features(model.network, *probe_tile(model, src, whole))
                    if v is not None:
                        feats.append(v)
                        ys.append(math.log(size * f / float(target)))
                        groups.append(k)
                        primary.append(j == 0)
        yield k + 1, len(items)
    if not feats:
        raise SeglabError("no image with enough labelled objects to fit a size model")
    return np.stack(feats), np.asarray(ys), np.asarray(groups), np.asarray(primary, bool)


def cross_validate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Absolute log errors of each sample predicted by a fit without its image's fold."""
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(uniq).tolist(), np.arange(uniq.size) % folds))
    fold = np.array([fold_of[g] for g in groups.tolist()])
    err = np.empty(len(y))
    for k in range(folds):
        test = fold == k
        if not test.any() or test.all():
            continue
        sm = fit_size_model(X[~test], y[~test], seed)
        err[test] = np.abs(np.array([sm.log_ratio(v) for v in X[test]]) - y[test])
    return err


def fit_size_model_iter(
    model: SegmentationModel, items: Sequence[AnnotatedImage], factors: Sequence[float] = FACTORS,
    windows: int = WINDOWS,
) -> Generator[tuple[int, int], None, tuple[SizeModel, dict[str, Any]]]:
    """The size model for ``model`` from ``items``, and facts for its config (cross-validated errors,
    on the windows ``auto`` reads)."""
    t0 = time.perf_counter()
    X, y, groups, primary = yield from size_samples_iter(model, items, factors, windows)
    e = cross_validate(X, y, groups)[primary]
    facts = {
        "kind": "MLP (one hidden layer) on the encoder levels' per-channel mean and standard deviation "
                "over the probe window, in the tile the factor-1 probe runs (its context around it)",
        "images": int(np.unique(groups).size), "samples": int(len(y)), "factors": [float(f) for f in factors],
        "windows_per_large_image": int(windows),
        "cv_median_abs_log_error": round(float(np.median(e)), 4),
        "cv_within_15_percent": round(float(np.mean(e < math.log(1.15))), 4),
        "cv_within_30_percent": round(float(np.mean(e < math.log(1.3))), 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return fit_size_model(X, y), facts


def attach_size_model(model: SegmentationModel, items: Sequence[AnnotatedImage], data: str,
                      windows: int = WINDOWS) -> dict[str, Any]:
    """Fit ``model``'s size model on ``items`` (training images only) and record the fit's facts and
    ``data`` in ``config.training["size_model"]``; returns those facts."""
    from seglab.progress import run_to_end

    size_model, facts = run_to_end(fit_size_model_iter(model, items, windows=windows))
    model.size_model = size_model
    facts = {**facts, "data": data}
    model.config.training = {**model.config.training, "size_model": facts}
    return facts


def he_training_items(dsb_root: str | Path, monuseg_root: str | Path) -> tuple[list[AnnotatedImage], str]:
    """The H&E model's size-model data: DSB2018's ``train`` colour images and MoNuSeg's ``train``
    tiles (whole), and how the config names them."""
    from seglab.datasets import load_split
    from seglab.training.recipe_he import colour_ids

    items = list(load_split(dsb_root, "train", colour_ids(dsb_root, "train")))
    items += list(load_split(monuseg_root, "train"))
    return items, "DSB2018 split train, colour images; MoNuSeg (Kumar split) train tiles"


def main(argv: list[str] | None = None) -> int:
    from seglab.datasets import load_split
    from seglab.models.storage import load_model, write_size_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model folder to fit the size model of (its size model and config are replaced)")
    p.add_argument("--data", default="../shared/data/dsb2018", help="DSB2018-layout folder; its train split")
    p.add_argument("--monuseg", default=None, help="also MoNuSeg's train tiles (for an H&E model)")
    p.add_argument("--windows", type=int, default=WINDOWS,
                   help=f"windows per image probed through a window, the most structured first (default {WINDOWS})")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if args.monuseg:
        items, data = he_training_items(args.data, args.monuseg)
    else:
        items, data = list(load_split(args.data, "train")), "DSB2018 split train"
    facts = attach_size_model(model, items, data, args.windows)
    write_size_model(model, args.model)
    print(facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
