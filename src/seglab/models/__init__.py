"""Model families, the model interface, storage and the registry."""

from seglab.models.base import ModelConfig, Prediction, SegmentationModel
from seglab.models.families import FAMILIES, family_class
from seglab.models.registry import ModelInfo, ModelRegistry, get_model, list_models, user_models_dir
from seglab.models.storage import load_model, new_model, save_model

__all__ = [
    "FAMILIES",
    "ModelConfig",
    "ModelInfo",
    "ModelRegistry",
    "Prediction",
    "SegmentationModel",
    "family_class",
    "get_model",
    "list_models",
    "load_model",
    "new_model",
    "save_model",
    "user_models_dir",
]
