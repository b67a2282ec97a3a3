"""Inference: normalisation, tiling and the engine shared by all families."""

from seglab.inference.device import resolve_device
from seglab.inference.engine import ProgressEvent, Segmentation, run_to_end, segment, segment_iter

__all__ = ["ProgressEvent", "Segmentation", "resolve_device", "run_to_end", "segment", "segment_iter"]
