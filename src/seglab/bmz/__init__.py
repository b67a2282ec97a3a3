"""BioImage Model Zoo (bioimage.io) packages: export any seglab model, import one seglab exported.

``export_bmz(model, "out.zip")`` writes a spec 0.5 model package (TorchScript weights for
bioimage.io consumers, test tensors, cover, model card, licence, citations, and the model's
own config and safetensors weights as attachments); ``import_bmz("out.zip")`` reads those
attachments back into a seglab model folder (no code from the package is run). The
bioimage.io libraries are needed only to validate or test a package (:mod:`seglab.bmz.validation`).

Names are imported on first use, so that ``seglab.bmz.commands`` (the CLI's parsers) stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportResult", "export_bmz", "import_bmz", "load_bmz"]


def __getattr__(name: str) -> Any:
    if name in ("ExportResult", "export_bmz"):
        from seglab.bmz import export

        return getattr(export, name)
    if name in ("import_bmz", "load_bmz"):
        from seglab.bmz import importer

        return getattr(importer, name)
    raise AttributeError(f"module 'seglab.bmz' has no attribute {name!r}")
