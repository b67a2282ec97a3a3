"""A model on disk: a folder with ``config.json`` and ``weights.safetensors``.

Loading never runs code from the folder: the config is JSON and the weights are
safetensors (a pickle file such as ``model.pt`` is refused without being opened).
Saving is atomic: a temporary sibling folder is written, then renamed. Reading a
config imports no torch (``seglab models`` lists models without it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import seglab
from seglab.errors import SeglabError
from seglab.models.config import ModelConfig
from seglab.models.families import check_family, family_class

if TYPE_CHECKING:
    import torch
    from torch import nn

    from seglab.models.base import SegmentationModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
#: weight files in pickle formats: loading them can run arbitrary code, so they are never opened
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")


def read_config(folder: str | os.PathLike) -> ModelConfig:
    """Parse and check a model folder's config, with a clear error when it is missing or broken."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise SeglabError(f"{folder} is not a model folder: it has no {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SeglabError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:
        raise SeglabError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        config = ModelConfig.from_dict(data)
        check_family(config.family)
    except SeglabError as e:
        raise SeglabError(f"{path}: {e}") from None
    return config


def weights_path(folder: str | os.PathLike) -> Path:
    """The folder's safetensors weights; a clear error when they are missing or only a pickle exists."""
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if weights.is_file():
        return weights
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickles:
        raise SeglabError(
            f"model folder {folder} has {pickles[0]} instead of {WEIGHTS_FILE}; pickle files can run code "
            f"when loaded, so seglab does not open them (convert the weights with safetensors.torch.save_file "
            f"where you trust the file)")
    raise SeglabError(f"model folder {folder} has no {WEIGHTS_FILE}")


def inspect_folder(folder: str | os.PathLike) -> ModelConfig:
    """The config of a model folder after the checks that need no torch (config, weights file)."""
    config = read_config(folder)
    weights_path(folder)
    return config


def build_checked(cls: type[SegmentationModel], config: ModelConfig, where: str) -> nn.Module:
    """``cls.build_network(config)``; unknown architecture keys (when the family lists its keys in
    ``architecture_keys``) and the builder's errors become one clear message."""
    known = getattr(cls, "architecture_keys", None)
    unknown = sorted(set(config.architecture) - set(known)) if known is not None else []
    if unknown:
        raise SeglabError(
            f"the architecture in {where} has key(s) that family {config.family!r} does not know: "
            f"{', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls.build_network(config)
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, RuntimeError) as e:
        raise SeglabError(f"the architecture in {where} does not make a {config.family} network: {e}") from None


def _check_state(state: dict[str, torch.Tensor], network: nn.Module, weights: Path) -> None:
    """Compare names and shapes of the stored tensors with the network's before loading them."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape (e.g. {k}: {tuple(state[k].shape)} stored, "
                     f"{tuple(expected[k].shape)} in the architecture)")
    raise SeglabError(f"weights in {weights} do not fit the architecture in its config: {'; '.join(parts)}")


def load_model(folder: str | os.PathLike) -> SegmentationModel:
    """Load a model folder onto the CPU, checking config, weights file and weights on the way."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_config(folder)
    weights = weights_path(folder)
    cls = family_class(config.family)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise SeglabError(f"cannot read weights {weights}: {e}") from None
    network = build_checked(cls, config, str(folder / CONFIG_FILE))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    _check_state(state, network, weights)
    try:
        network.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise SeglabError(f"weights in {weights} do not fit the architecture in its config: {first}") from None
    from seglab.inference.size_model import SIZE_MODEL_FILE, load_size_model, n_features

    model = cls(config, network)
    if (folder / SIZE_MODEL_FILE).is_file():  # (spares n_features' probe of the network otherwise)
        model.size_model = load_size_model(folder, n_features(network))
    return model


def check_replaceable(folder: str | os.PathLike) -> None:
    """Refuse to replace anything at ``folder`` but a model folder (one with a ``config.json``) or an
    empty folder: overwriting a model must never delete a folder of other files (``-o out/``)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise SeglabError(f"{folder} exists and is not a folder")
    if not (folder / CONFIG_FILE).is_file() and any(folder.iterdir()):
        raise SeglabError(f"{folder} is a folder but not a model (no {CONFIG_FILE}): replacing it would delete "
                          "everything in it; give a model folder that does not exist yet, or a model's own folder")


def save_model(model: SegmentationModel, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``folder`` atomically; refuse to replace an existing folder unless asked."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise SeglabError(f"{folder} already exists; choose another name or allow overwriting")
    check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(folder.parent, os.W_OK):
        raise SeglabError(f"cannot write to {folder.parent}")
    from safetensors.torch import save_file

    from seglab.io.atomic import default_mode  # seglab.io imports numpy and tifffile: not for listing

    model.config.seglab_version = seglab.__version__
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        default_mode(tmp, directory=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.network.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"family": model.family, "name": model.config.name})
        (tmp / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
        default_mode(tmp / WEIGHTS_FILE)
        if getattr(model, "size_model", None) is not None:
            from seglab.inference.size_model import SIZE_MODEL_FILE, save_size_model

            save_size_model(model.size_model, tmp / SIZE_MODEL_FILE)
            default_mode(tmp / SIZE_MODEL_FILE)
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


def write_size_model(model: SegmentationModel, folder: str | os.PathLike) -> None:
    """Add (or replace) ``model.size_model`` and its config in an existing model folder without rewriting
    the weights: each file is replaced atomically, the size model first."""
    from seglab.inference.size_model import SIZE_MODEL_FILE, save_size_model
    from seglab.io.atomic import atomic_file, default_mode

    folder = Path(folder)
    read_config(folder)
    if model.size_model is None:
        raise SeglabError("the model has no size model to write")
    with atomic_file(folder / SIZE_MODEL_FILE, suffix=".safetensors") as tmp:
        save_size_model(model.size_model, tmp)
        default_mode(tmp)  # safetensors writes a new, private file
    with atomic_file(folder / CONFIG_FILE, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")


def new_model(family: str, name: str, **config_fields) -> SegmentationModel:
    """An untrained model of ``family`` (used for training from scratch)."""
    cls = family_class(family)
    config = ModelConfig(name=name, family=family, **config_fields)
    if not config.thresholds:
        config.thresholds = dict(cls.default_thresholds)
    return cls(config, network=build_checked(cls, config, f"the new {family} model {name!r}"))


def clone_state(model: SegmentationModel) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the network weights (for 'best so far')."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.network.state_dict().items()}
