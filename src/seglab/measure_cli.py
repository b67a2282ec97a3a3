"""``seglab measure``: measure label images from elsewhere against their images (CSV per image).

Only argparse at import time (the command line starts without numpy); the work is in
:mod:`seglab.measure_files`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seglab.errors import SeglabError

SUFFIX = "_measurements.csv"

MEASURE_EPILOG = """\
Images and labels are paired by file name (img.tif with img_labels.tif, img_masks.tif
or, in another folder, img.tif; .ome is no part of the name). Images and labels may share
one folder. Each pair gives OUT/<image stem>_measurements.csv: one row per object (per
plane for Z/T stacks: plane = flat index of the leading axes) with shape, intensity of every
channel of the image and, when the image file declares its pixel size and unit, areas and
lengths in that unit (e.g. area_um2, perimeter_um).
"""


def add_measure_parser(sub: Any) -> None:
    """``seglab measure`` (registered in :func:`seglab.cli.build_parser`)."""
    p = sub.add_parser("measure", help="measure objects of label images against their images (CSV)",
                       epilog=MEASURE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (intensities, pixel size)")
    p.add_argument("--labels", required=True, metavar="DIR", help="folder of label images with the same names")
    p.add_argument("-o", "--outdir", required=True, metavar="DIR", help="output folder for <stem>_measurements.csv")
    p.add_argument("--axes", default=None, metavar="AXES",
                   help="what each axis of the images is, e.g. YXC, CYX, ZYX (default: what the file declares)")
    p.add_argument("--overwrite", action="store_true", help="replace existing CSV files")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per image")
    p.set_defaults(func=cmd_measure)


def cmd_measure(args: argparse.Namespace) -> int:
    """Measure every pair of ``--images`` and ``--labels`` into ``--outdir``."""
    from seglab.datasets import pair_folders
    from seglab.measure_files import measure_pair
    from seglab.io import write_table_csv
    from seglab.io.atomic import check_writable_folder
    from seglab.io.images import image_stem

    pairs = pair_folders(args.images, args.labels)
    outdir = Path(args.outdir)
    targets = [outdir / f"{image_stem(img)}{SUFFIX}" for img, _ in pairs]
    if not args.overwrite:
        existing = [t for t in targets if t.exists()]
        if existing:
            more = f", as do {len(existing) - 1} other(s)" if len(existing) > 1 else ""
            raise SeglabError(f"{existing[0]} already exists{more} (use --overwrite to replace them)")
    check_writable_folder(outdir)
    failures = 0
    for (image_path, labels_path), target in zip(pairs, targets):
        try:
            table = measure_pair(image_path, labels_path, args.axes)
            write_table_csv(target, table)
        except SeglabError as e:
            failures += 1
            print(f"seglab: error: {image_path.name}: {e}", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"{image_path.name}: {len(table['label'])} objects -> {target}", file=sys.stderr)
    return 1 if failures else 0
