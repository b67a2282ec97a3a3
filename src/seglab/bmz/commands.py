"""``seglab export-bmz`` and ``seglab import-bmz``: parsers (light: argparse only) and command bodies."""

from __future__ import annotations

import argparse
import sys

#: the subcommands this module adds to ``seglab``
COMMANDS = ("export-bmz", "import-bmz")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the two subcommands on the ``seglab`` parser's subparsers."""
    e = sub.add_parser("export-bmz", help="write a model as a BioImage Model Zoo (bioimage.io) package (.zip)")
    e.add_argument("model", metavar="MODEL", help="built-in model name, one of your models, or a model folder")
    e.add_argument("out", metavar="OUT.zip", help="package to write")
    e.add_argument("--author", action="append", metavar="NAME",
                   help="author of the model (repeatable; default: napari-seglab developers)")
    e.add_argument("--license", metavar="SPDX",
                   help="licence (SPDX id, e.g. CC-BY-4.0; default from the training data: CC-BY-NC-SA-4.0 "
                        "when MoNuSeg is in it, else CC0-1.0)")
    e.add_argument("--image", metavar="FILE", help="test image (default: a shipped sample image)")
    e.add_argument("--no-validate", action="store_true",
                   help="do not check the package with bioimageio.spec before writing it")
    e.add_argument("--overwrite", action="store_true", help="replace an existing file")

    i = sub.add_parser("import-bmz", help="import a bioimage.io package that seglab exported as one of your models")
    i.add_argument("package", metavar="PACKAGE.zip", help="package written by seglab export-bmz")
    i.add_argument("--name", help="name of the imported model (default: the model's own name)")
    i.add_argument("-o", "--out", metavar="MODELS_DIR", help="models folder to import into (default: yours)")
    i.add_argument("--overwrite", action="store_true", help="replace a model of the same name")


def run(args: argparse.Namespace) -> int:
    """Run ``export-bmz`` or ``import-bmz``; errors are :class:`~seglab.errors.SeglabError` (the CLI prints them)."""
    if args.command == "export-bmz":
        from seglab.bmz.export import export_bmz

        image = None
        if args.image:
            from seglab.io import read_image

            image = read_image(args.image)
        result = export_bmz(args.model, args.out, image=image, authors=args.author, license=args.license,
                            overwrite=args.overwrite, validate=False if args.no_validate else None)
        check = ("validated with bioimageio.spec" if result.validated else "not validated" if args.no_validate
                 else "not validated: bioimageio.spec is not installed (pip install 'napari-seglab[bmz]')")
        print(f"wrote {result.path} ({result.family} model {result.name!r}, licence {result.license}, "
              f"{result.n_objects} objects in the test image; {check})")
        return 0
    if args.command == "import-bmz":
        from seglab.bmz.importer import import_bmz

        folder = import_bmz(args.package, args.name, models_dir=args.out, overwrite=args.overwrite)
        print(f"imported {args.package} as model {folder.name!r} ({folder})")
        return 0
    print(f"seglab: unknown command {args.command}", file=sys.stderr)
    return 2
