"""Model families by name. New families (StarDist-style, Mask R-CNN) register here."""

from __future__ import annotations

from seglab.errors import SeglabError
from seglab.models.base import SegmentationModel
from seglab.models.stardist import StarDistModel
from seglab.models.maskrcnn import MaskRCNNModel
from seglab.models.unet import UNetModel

FAMILIES: dict[str, type[SegmentationModel]] = {
    UNetModel.family: UNetModel,
    StarDistModel.family: StarDistModel,
    MaskRCNNModel.family: MaskRCNNModel,
}


def family_class(name: str) -> type[SegmentationModel]:
    """The class implementing a family; a clear error for unknown names."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise SeglabError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None
