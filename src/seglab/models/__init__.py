"""Model families, the model interface, storage and the registry.

Names are imported on first access (PEP 562), so ``import seglab.models.registry``
(listing models) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "FAMILIES": "seglab.models.families",
    "family_class": "seglab.models.families",
    "ModelConfig": "seglab.models.config",
    "Prediction": "seglab.models.base",
    "SegmentationModel": "seglab.models.base",
    "ModelInfo": "seglab.models.registry",
    "ModelRegistry": "seglab.models.registry",
    "get_model": "seglab.models.registry",
    "list_models": "seglab.models.registry",
    "user_models_dir": "seglab.models.registry",
    "load_model": "seglab.models.storage",
    "new_model": "seglab.models.storage",
    "save_model": "seglab.models.storage",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'seglab.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
