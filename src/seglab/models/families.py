"""Model families by name, imported only when a model of the family is used.

Each entry maps a family name to ``"module:Class"``; the module is imported the first
time :func:`family_class` asks for it, so listing models (``seglab models``) imports no
network code and a U-Net run never imports torchvision (Mask R-CNN's dependency). A new
family is one module plus one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from seglab.errors import SeglabError

if TYPE_CHECKING:
    from seglab.models.base import SegmentationModel

FAMILIES: dict[str, str] = {
    "unet": "seglab.models.unet:UNetModel",
    "stardist": "seglab.models.stardist:StarDistModel",
    "maskrcnn": "seglab.models.maskrcnn:MaskRCNNModel",
}


def check_family(name: str) -> None:
    """A clear error for a family name that is not registered (imports nothing)."""
    if name not in FAMILIES:
        raise SeglabError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")


def family_class(name: str) -> type[SegmentationModel]:
    """The class implementing a family (its module imported on first use)."""
    check_family(name)
    module_name, _, class_name = FAMILIES[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if getattr(cls, "family", None) != name:
        raise SeglabError(f"family {name!r} is registered as {FAMILIES[name]}, whose family is "
                          f"{getattr(cls, 'family', None)!r}")
    return cls
