"""BioImage Model Zoo (bioimage.io) packages: export any seglab model, import one seglab exported.

``export_bmz(model, "out.zip")`` writes a spec 0.5 model package (TorchScript weights for
bioimage.io consumers, test tensors, cover, model card, licence, citations, and the model's
own config and safetensors weights as attachments); ``import_bmz("out.zip")`` reads those
attachments back into a seglab model folder (no code from the package is run). The
bioimage.io libraries are needed only to validate or test a package (:mod:`seglab.bmz.validation`).
"""

from __future__ import annotations

from seglab.bmz.export import ExportResult, export_bmz
from seglab.bmz.importer import import_bmz, load_bmz

__all__ = ["ExportResult", "export_bmz", "import_bmz", "load_bmz"]
