"""Command line: ``seglab models``, ``seglab segment``, ``seglab evaluate``, ``seglab train``.

Errors caused by input are printed as one line on stderr with a non-zero exit
status; no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

from seglab.errors import SeglabError, SeglabWarning

EXIT_USAGE = 2
EXIT_FAILED = 1


def _finite(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} needs a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{what} must be a finite number, got {value.strip()!r}")
    return number


def positive_int(text: str) -> int:
    """A whole number of at least 1 (sizes and counts: ``--tile-size``, ``--batch-size``, ...)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs a whole number, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _number(text: str) -> float:
    """Any float; a threshold's range (finite, within the family's limits) is the model's to check."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs a number, got {text!r}") from None


def _parse_threshold(text: str) -> tuple[str, float]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threshold {name.strip()!r} needs a number, got {value!r}") from None


def _finite_float(text: str) -> float:
    return _finite(text, "the value")


def _parse_diameter(text: str):
    from seglab.inference.diameter import parse_diameter

    try:
        return parse_diameter(text)
    except SeglabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parse_denoise(text: str):
    from seglab.inference.denoise import parse_denoise

    try:
        return parse_denoise(text)
    except SeglabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _thresholds(args: argparse.Namespace) -> dict[str, float]:
    th = dict(args.threshold or [])
    if getattr(args, "prob_thresh", None) is not None:
        th["prob_thresh"] = args.prob_thresh
    return th


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="built-in model name or path of a model folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="default: auto (CUDA, MPS, CPU)")
    p.add_argument("--tile-size", type=positive_int, default=2048,
                   help="tile size in pixels for large images (default 2048)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="tiles per batch (default 4)")
    p.add_argument("--prob-thresh", type=_number, default=None, help="object probability threshold (overrides the model's)")
    p.add_argument("-t", "--threshold", type=_parse_threshold, action="append", metavar="NAME=VALUE",
                   help="override any model threshold, e.g. -t seed_thresh=0.4 (repeatable)")
    p.add_argument("--no-amp", action="store_true", help="full precision (no bfloat16/float16 autocast)")
    p.add_argument("--diameter", type=_parse_diameter, default="auto", metavar="auto|none|PX",
                   help="object diameter in pixels: images are rescaled so objects arrive at the model's size; "
                        "auto (default): estimated per image (once per stack), or from the file's pixel size "
                        "when the model records the pixel size it was trained at; none (or 0): no rescaling; "
                        "a number must be within 16x of the model's object size either way")
    p.add_argument("--denoise", type=_parse_denoise, default="auto", metavar="auto|on|off",
                   help="smooth noisy (low-light) images before the model; auto (default): where an image's noise "
                        "passes the level from which it pays for the model (models without a measured rule: never)")
    p.add_argument("--augment", action="store_true",
                   help="test-time augmentation: average the model's maps over the image's 8 flips and rotations "
                        "(U-Net and StarDist models; eight passes of the network: 5-7x the time)")


def channel_list(text: str) -> list[int]:
    """``--channels``' value: channel indices separated by commas (``1``, ``0,2``).

    One value, not several words, so that ``--channels 1 image.tif`` leaves the file name to the inputs.
    """
    try:
        channels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        channels = []
    if not channels or min(channels) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give channel indices (0, 1, ...) separated by commas, "
                                         "e.g. --channels 1 or --channels 0,2")
    return channels


def _add_channels_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--channels I[,J...]``; repeating it adds channels (``--channels 0 --channels 2`` is ``0,2``)."""
    parser.add_argument("--channels", type=channel_list, action="extend", default=None, metavar="I[,J...]",
                        help=help)


def _numbers_taken_as_inputs(args: argparse.Namespace) -> None:
    """Name the likely cause when an input that does not exist is a bare number after ``--channels``."""
    if args.channels is None:
        return
    for item in args.inputs:
        if str(item).isdigit() and not Path(item).exists():
            raise SeglabError(f"no such file or folder: {item}; --channels takes one comma-separated list "
                              f"(--channels {','.join(map(str, args.channels))},{item}), not separate numbers")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seglab", description="Deep-learning segmentation of microscopy images")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list available models")
    m.add_argument("--json", action="store_true", help="print JSON")

    s = sub.add_parser("segment", help="segment image files or folders into label TIFFs")
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    s.add_argument("-o", "--outdir", required=True, help="output folder for <stem>_labels.tif")
    _add_run_options(s)
    _add_channels_option(s, "channel indices to use (multichannel input), e.g. 1 or 0,2")
    s.add_argument("--axes", default=None, metavar="AXES",
                   help="what each axis of the input is, e.g. YXC, CYX, ZYX, TZCYX (Y, X; C channels; S RGB "
                        "colour; Z, T planes); default: what the file declares")
    s.add_argument("--channel-axis", type=int, default=None,
                   help="axis holding channels (default: the file's C or S axis, if any)")
    s.add_argument("--no-table", action="store_true", help="do not write <stem>_objects.csv")
    s.add_argument("--rois", action="store_true",
                   help="also write the outlines as <stem>_rois.zip, an ImageJ ROI set for Fiji's ROI Manager "
                        "(models with polygons or boxes)")
    s.add_argument("--boxes", action="store_true",
                   help="also write <stem>_boxes.csv (label, score, class, y0, x0, y1, x1; plane for stacks) "
                        "for models that detect boxes; pixel k spans [k, k+1)")
    s.add_argument("--measure", action="store_true",
                   help="also write <stem>_measurements.csv: per object area, perimeter, centroid, box, shape, "
                        "intensity of every channel, physical sizes from the file's pixel size (see seglab measure)")
    s.add_argument("--geojson", action="store_true",
                   help="also write <stem>_objects.geojson: one polygon per object (the model's polygons, else "
                        "the label outlines) with label, score and measurements, for QuPath's Import objects")
    s.add_argument("--link-z", action="store_true",
                   help="Z stacks: link objects of consecutive planes by overlap, so that one object keeps one id "
                        "through the stack (see --link-iou)")
    s.add_argument("--link-iou", type=_finite_float, default=0.3, metavar="IOU",
                   help="with --link-z: the smallest overlap (intersection over union, 0-1] that links two objects "
                        "(default 0.3)")
    s.add_argument("--ome-zarr", action="store_true",
                   help="also write the labels as OME-Zarr, <stem>_labels.ome.zarr (multiscale, with the pixel size)")
    s.add_argument("--out-of-core", action=argparse.BooleanOptionalAction, default=None,
                   help="read TIFFs lazily and segment them block by block into <stem>_labels.zarr (default: "
                        "only TIFFs over 1 GiB; zarr and OME-Zarr inputs always)")
    s.add_argument("--block-size", type=positive_int, default=4096,
                   help="block size in pixels for out-of-core inputs (default 4096)")
    s.add_argument("--series", default="all", metavar="all|first|K[,K...]",
                   help="a TIFF that holds several images (the positions of a multi-position OME-TIFF): segment "
                        "all (default; each into its own outputs, <stem>_s<K>_labels.tif), only the first (named "
                        "as the file), or the series numbered K (from 0)")
    s.add_argument("--overwrite", action="store_true", help="replace existing output files")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from seglab.batch.options import add_batch_options

    add_batch_options(s)

    e = sub.add_parser("evaluate", help="score a model against ground-truth labels")
    _add_run_options(e)
    e.add_argument("--images", required=True, help="folder of images")
    e.add_argument("--labels", required=True, help="folder of label images with the same file names")
    _add_channels_option(e, "channel indices to use (multichannel input), e.g. 1 or 0,2")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_train_parser(sub)
    from seglab.measure_cli import add_measure_parser

    add_measure_parser(sub)
    from seglab.bmz.commands import add_parsers as add_bmz_parsers  # export-bmz, import-bmz

    add_bmz_parsers(sub)
    return p


TRAIN_EPILOG = """\
Images and labels are paired by file name (img.tif with img.tif, img_labels.tif or
img_masks.tif). Labels are integer images, one id per object, 0 = background.

--regions DIR marks where the annotation is complete, so you can annotate a few crops
instead of whole images: for each image, DIR holds a mask of the same size named like the
image (img.tif or img_regions.tif, any image format); non-zero pixels are annotated
regions, in which every object is labelled; pixels outside them do not count in training
(they are not assumed to be background). Without --regions the whole image counts.

The model is saved as a folder (config.json + weights.safetensors) at -o MODEL_DIR, or in
your models folder under --name (then `seglab models` lists it). Ctrl-C stops training
early and saves the best weights so far; a second Ctrl-C aborts without saving.
"""


def _add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="fine-tune a model, or train one from scratch, on annotated images",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    start = t.add_mutually_exclusive_group(required=True)
    start.add_argument("--from", dest="start", metavar="MODEL",
                       help="model to start from: built-in name, one of your models, or a model folder")
    start.add_argument("--family", help="train from scratch with this family (e.g. unet)")
    t.add_argument("--images", required=True, metavar="DIR", help="folder of training images")
    t.add_argument("--labels", required=True, metavar="DIR", help="folder of label images with the same names")
    t.add_argument("--val-images", metavar="DIR", help="validation images (pick the best weights and thresholds)")
    t.add_argument("--val-labels", metavar="DIR", help="labels of the validation images")
    t.add_argument("--regions", metavar="DIR", help="masks of the completely annotated regions (see below)")
    _add_channels_option(t, "channel indices to train on, e.g. 1 or 0,2 (multichannel images; segment with the "
                            "same --channels)")
    t.add_argument("-o", "--out", metavar="MODEL_DIR",
                   help="the new model's own folder (its name is the folder's; an existing folder is replaced, "
                        "with --overwrite, only when it holds a model)")
    t.add_argument("--name", help="name of the new model, saved in your models folder (with -o: MODEL_DIR's name)")
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--time-budget", type=_finite_float, metavar="SECONDS",
                        help="train for this long (default 120 s unless --epochs)")
    budget.add_argument("--epochs", type=int, help="passes over the annotated pixels")
    t.add_argument("--lr", type=_finite_float, default=None, help="learning rate (default: the family's, 3e-4; U-Net 1e-3)")
    t.add_argument("--no-augment", action="store_true", help="no flips/rotations, scaling, intensity or noise")
    t.add_argument("--freeze-levels", type=int, default=None, metavar="N",
                   help="keep the first N levels of the start model's feature extractor fixed (0: train every "
                        "weight; a large N: the whole encoder; default 2)")
    t.add_argument("--replay", type=_finite_float, default=None, metavar="SHARE",
                   help="share of patches drawn from the start model's replay set (crops of its own "
                        "training data) so it keeps working on other kinds of image; 0 turns it off "
                        "(default 0.5)")
    t.add_argument("--patch-size", type=positive_int, default=None, help="training patch size in pixels (default 128)")
    t.add_argument("--batch-size", type=positive_int, default=None, help="patches per step (default 8)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="default: auto")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model of the same name")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def cmd_models(args: argparse.Namespace) -> int:
    from seglab.models.registry import list_models

    models = list_models()
    if args.json:
        print(json.dumps([{"name": m.name, "family": m.family, "description": m.description,
                           "source": m.source, "path": str(m.path)} for m in models], indent=2))
        return 0
    if not models:
        print("no models found")
        return 0
    w = max(len(m.name) for m in models)
    wf = max(len(m.family) for m in models)
    for m in models:
        print(f"{m.name:<{w}}  {m.family:<{wf}}  {m.description}" + ("  [user]" if m.source == "user" else ""))
    return 0


def _progress(gen, desc: str, quiet: bool, postfix=None):
    """Drive a progress generator with a tqdm bar; return its result. ``postfix(event)`` adds text."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, disable=quiet, leave=False, unit="‰", file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                return stop.value
            bar.update(int(ev.fraction * 1000) - bar.n)
            if postfix is not None:
                bar.set_postfix_str(postfix(ev), refresh=False)
    finally:
        bar.close()
        gen.close()


def segment_outputs(args: argparse.Namespace) -> list[str]:
    """The output kinds ``seglab segment`` options ask for (labels always)."""
    names = [] if args.no_table else ["objects"]
    names += ["rois"] if args.rois else []
    names += ["boxes"] if args.boxes else []
    names += ["measurements"] if getattr(args, "measure", False) else []
    names += ["geojson"] if getattr(args, "geojson", False) else []
    names += ["ome-zarr"] if getattr(args, "ome_zarr", False) else []
    return names


def segment_options(args: argparse.Namespace, model):
    """The per-file settings of ``seglab segment``."""
    from seglab.files import SegmentOptions, parse_series
    from seglab.inference.diameter import check_diameter

    link_iou = getattr(args, "link_iou", 0.3)
    if not 0 < link_iou <= 1:
        raise SeglabError(f"--link-iou must be in (0, 1], got {link_iou:g}")
    check_diameter(model, args.diameter)
    return SegmentOptions(channels=args.channels, axes=args.axes, channel_axis=args.channel_axis,
                          tile_size=args.tile_size, batch_size=args.batch_size, device=args.device,
                          amp=not args.no_amp, thresholds=model.thresholds(_thresholds(args)),
                          diameter=args.diameter, denoise=getattr(args, "denoise", "auto"),
                          augment=bool(getattr(args, "augment", False)), link_z=bool(getattr(args, "link_z", False)),
                          link_min_iou=link_iou, out_of_core=getattr(args, "out_of_core", None),
                          block_size=getattr(args, "block_size", 4096),
                          series=parse_series(getattr(args, "series", "all")))


def cmd_segment(args: argparse.Namespace) -> int:
    from seglab.files import all_output_targets, output_stems, parse_series, planned_series, segment_file_iter
    from seglab.inference.engine import check_augment
    from seglab.io import list_images
    from seglab.io.atomic import check_writable_folder
    from seglab.models.registry import get_model
    from seglab.outputs import resolve_outputs

    _numbers_taken_as_inputs(args)
    paths = list_images(args.inputs)
    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise SeglabError(f"output {outdir} exists and is not a folder")
    series = parse_series(args.series)
    chosen = {p: planned_series(p, series) for p in paths}  # each file's header read once
    stems = [stem for p in paths for stem in output_stems(p, chosen[p])]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise SeglabError(f"several inputs share the name {dupes[0]!r}; their outputs would collide")
    model = get_model(args.model)
    check_augment(model, bool(getattr(args, "augment", False)))  # once, not once per file
    kinds = resolve_outputs(segment_outputs(args), model)
    if getattr(args, "workers", None) is not None or getattr(args, "scheduler", None):  # seglab.batch
        from seglab.batch.command import run_segment_batch

        return run_segment_batch(args, outdir, model, [k.name for k in kinds], segment_options(args, model))
    if not args.overwrite:
        existing = [t for p in paths for targets in all_output_targets(p, outdir, kinds, args.out_of_core, chosen[p])
                    for t in targets.values() if t.exists()]
        if existing:
            more = f", as do {len(existing) - 1} other output(s)" if len(existing) > 1 else ""
            raise SeglabError(f"{existing[-1]} already exists{more} (use --overwrite to replace them)")
    options = segment_options(args, model)
    check_writable_folder(outdir)  # before any inference: a run is never lost to an unwritable folder
    failures = 0
    for i, path in enumerate(paths):
        try:
            gen = segment_file_iter(model, path, outdir, kinds, options)
            done = _progress(gen, f"[{i + 1}/{len(paths)}] {path.name}", args.quiet)
            if not args.quiet:
                for name, part in [(f"{path.name} series {k}", p) for k, p in done.parts] or [(path.name, done)]:
                    print(f"{name}: {part.n_objects} objects ({part.size}) -> {part.outputs['labels']}",
                          file=sys.stderr)
        except SeglabError as e:
            failures += 1
            print(f"seglab: error: {path.name}: {e}", file=sys.stderr)
    return EXIT_FAILED if failures else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from seglab.datasets import load_annotated, pair_folders, pick_channels
    from seglab.evaluation import evaluate_model_iter
    from seglab.inference.diameter import check_diameter
    from seglab.models.registry import get_model

    pairs = pair_folders(args.images, args.labels)
    items = []
    for a, b in pairs:
        it = load_annotated(a, b)
        it.image, it.channel_axis = pick_channels(it.image, it.channel_axis, args.channels, a.name)
        items.append(it)
    model = get_model(args.model)
    check_diameter(model, args.diameter)
    if args.diameter is None or not model.config.object_diameter:
        gen = evaluate_model_iter(model, items, thresholds=_thresholds(args), device=args.device,
                                  tile_size=args.tile_size, batch_size=args.batch_size, amp=not args.no_amp,
                                  denoise=getattr(args, "denoise", "auto"), augment=bool(getattr(args, "augment", False)))
    else:
        gen = _evaluate_rescaled_iter(model, items, args)
    metrics, _ = _progress(gen, "evaluate", args.quiet)
    metrics["model"] = model.config.name
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"model {model.config.name}: {metrics['n_images']} images, {metrics['n_true']} true objects, "
          f"{metrics['n_pred']} predicted")
    print(f"{'IoU':>5}  {'AP':>6}  {'F1':>6}  {'PQ':>6}  {'prec':>6}  {'recall':>6}")
    for t, m in metrics["thresholds"].items():
        print(f"{t:>5}  {m['ap']:6.3f}  {m['f1']:6.3f}  {m['pq']:6.3f}  {m['precision']:6.3f}  {m['recall']:6.3f}")
    print(f"DSB score (mean AP over IoU 0.5:0.05:0.95): {metrics['dsb_score']:.3f}")
    print(f"per image, averaged: AJI {metrics['aji']:.3f}, PQ {metrics['pq_per_image']:.3f}")
    return 0


def _evaluate_rescaled_iter(model, items, args):
    """Like ``evaluate_model_iter``, segmenting each image with ``--diameter`` (printing the size used)."""
    from seglab.files import describe_size
    from seglab.inference.engine import ProgressEvent, segment_iter, run_to_end
    from seglab.metrics import evaluate

    th = model.thresholds(_thresholds(args))
    preds = []
    for i, it in enumerate(items):
        result = run_to_end(segment_iter(model, it.image, channel_axis=it.channel_axis, tile_size=args.tile_size,
                                         batch_size=args.batch_size, device=args.device, amp=not args.no_amp,
                                         thresholds=th, diameter=args.diameter,
                                         denoise=getattr(args, "denoise", "auto"),
                                         augment=bool(getattr(args, "augment", False))))
        preds.append(result.labels)
        if not args.quiet and not args.json:
            print(f"{it.name}: {describe_size(result)}", file=sys.stderr)
        yield ProgressEvent("image", i + 1, len(items))
    metrics = evaluate(zip([it.labels for it in items], preds))
    metrics["model_thresholds"] = th
    metrics["diameter"] = args.diameter
    return metrics, preds


def _train_postfix(ev) -> str:
    if ev.stage != "train":
        return {"baseline": "scoring the start model", "tune": "tuning thresholds", "save": "saving"}[ev.stage]
    text = f"step {ev.train.step}, loss {ev.train.loss:.3f}"
    return text + (f", val AP@0.5 {ev.val_score:.3f}" if ev.val_score is not None else "")


def _stop_on_ctrl_c(stop: threading.Event):
    """First Ctrl-C: stop after this step and save; second: abort. Returns the handler to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nseglab: stopping; the best weights so far will be saved (Ctrl-C again aborts)", file=sys.stderr)

    return signal.signal(signal.SIGINT, handler)


def cmd_train(args: argparse.Namespace) -> int:
    from seglab.training.finetune import DEFAULT_TIME_BUDGET, FinetuneSettings, finetune_iter, prepare
    from seglab.training.folders import load_annotations

    if (args.val_images is None) != (args.val_labels is None):
        raise SeglabError("give both --val-images and --val-labels, or neither")
    if args.out is None and args.name is None:
        raise SeglabError("say where to save the model: -o MODEL_DIR or --name NAME (your models folder)")
    if args.out is None:
        from seglab.models.registry import user_models_dir

        out = user_models_dir() / args.name
    else:
        out = Path(args.out)
    defaults = FinetuneSettings()
    settings = FinetuneSettings(
        time_budget=DEFAULT_TIME_BUDGET if args.time_budget is None and args.epochs is None else args.time_budget,
        epochs=args.epochs, lr=args.lr, augment=not args.no_augment,
        device=args.device, patch_size=args.patch_size or defaults.patch_size,
        batch_size=args.batch_size or defaults.batch_size,
        replay=args.replay if args.replay is not None else defaults.replay,
        freeze_levels=args.freeze_levels if args.freeze_levels is not None else defaults.freeze_levels)
    settings.check()
    train = load_annotations(args.images, args.labels, args.regions, channels=args.channels)
    val = load_annotations(args.val_images, args.val_labels, channels=args.channels) if args.val_images else []
    plan = prepare(train, out=out, start=args.start, family=args.family, name=args.name, settings=settings,
                   validation=val, overwrite=args.overwrite)
    stop = threading.Event()
    previous = _stop_on_ctrl_c(stop)
    try:
        result = _progress(finetune_iter(plan, stop), f"train {plan.model.config.name}", args.quiet, _train_postfix)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if result.path is None:
        print("seglab: stopped before the first training step; nothing saved", file=sys.stderr)
        return EXIT_FAILED
    scores = ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items() if isinstance(v, float))
    print(f"saved {plan.model.config.name} to {result.path}: {result.steps} steps in {result.seconds:.0f} s"
          + (" (stopped early)" if result.stopped else "") + (f"; {scores}" if scores else ""))
    return 0


def _one_line_warnings(previous):
    """A ``warnings.showwarning`` that prints :class:`SeglabWarning` as one line of its own (above
    a running progress bar, not glued to it) and hands the others to ``previous``."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, SeglabWarning):
            text = f"seglab: warning: {message}"
            if "tqdm" in sys.modules:  # bars may be drawn: tqdm clears them, prints, redraws
                sys.modules["tqdm"].tqdm.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _one_line_warnings(previous_showwarning)
    try:
        command = COMMANDS.get(args.command) or getattr(args, "func", None)
        if command is not None:
            return command(args)
        if args.command in ("export-bmz", "import-bmz"):
            from seglab.bmz.commands import run as run_bmz

            return run_bmz(args)
    except SeglabError as e:
        print(f"seglab: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a file system problem no check foresaw: one line, no traceback
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"seglab: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("seglab: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_showwarning
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


COMMANDS = {"models": cmd_models, "segment": cmd_segment, "evaluate": cmd_evaluate, "train": cmd_train}
"""Built-in subcommands; others register with ``parser.set_defaults(func=...)`` in :func:`build_parser`."""


if __name__ == "__main__":
    sys.exit(main())
