"""napari-seglab: deep-learning segmentation of microscopy images.

The core (models, inference, training, metrics, io, CLI) never imports Qt or napari;
the napari plugin lives in :mod:`seglab.napari` and is a thin layer over it.
"""

__version__ = "0.1.0"

from seglab.errors import SeglabError  # noqa: E402

__all__ = ["SeglabError", "__version__"]
