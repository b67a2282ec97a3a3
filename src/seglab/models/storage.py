"""A model on disk: a folder with ``config.json`` and ``weights.safetensors``.

Loading never runs code from the folder: the config is JSON and the weights are
safetensors. Saving is atomic: a temporary sibling folder is written, then renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import seglab
from seglab.errors import SeglabError
from seglab.io.atomic import default_mode
from seglab.models.base import ModelConfig, SegmentationModel
from seglab.models.families import family_class

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


def read_config(folder: str | os.PathLike) -> ModelConfig:
    """Parse a model folder's config, with a clear error when it is missing or broken."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise SeglabError(f"{folder} is not a model folder: it has no {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SeglabError(f"{path} is not valid JSON: {e}") from None
    return ModelConfig.from_dict(data)


def load_model(folder: str | os.PathLike) -> SegmentationModel:
    """Load a model folder onto the CPU."""
    folder = Path(folder)
    config = read_config(folder)
    cls = family_class(config.family)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise SeglabError(f"model folder {folder} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise SeglabError(f"cannot read weights {weights}: {e}") from None
    network = cls.build_network(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        network.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise SeglabError(f"weights in {weights} do not fit the architecture in its config: {first}") from None
    return cls(config, network)


def save_model(model: SegmentationModel, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``folder`` atomically; refuse to replace an existing folder unless asked."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise SeglabError(f"{folder} already exists; choose another name or allow overwriting")
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(folder.parent, os.W_OK):
        raise SeglabError(f"cannot write to {folder.parent}")
    model.config.seglab_version = seglab.__version__
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        default_mode(tmp, directory=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.network.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"family": model.family, "name": model.config.name})
        (tmp / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
        default_mode(tmp / WEIGHTS_FILE)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def new_model(family: str, name: str, **config_fields) -> SegmentationModel:
    """An untrained model of ``family`` (used for training from scratch)."""
    cls = family_class(family)
    config = ModelConfig(name=name, family=family, **config_fields)
    if not config.thresholds:
        config.thresholds = dict(cls.default_thresholds)
    return cls(config)


def clone_state(model: SegmentationModel) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the network weights (for 'best so far')."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.network.state_dict().items()}
