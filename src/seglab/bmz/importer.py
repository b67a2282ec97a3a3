"""Import a bioimage.io package that seglab exported back into a seglab model.

Only the description (YAML), the model's ``config.json`` and its safetensors weights are
read, straight from the zip (nothing is extracted, no pickle or TorchScript is loaded, no
code from the package runs).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from seglab.errors import SeglabError
from seglab.models.base import SegmentationModel

#: largest member seglab reads from a package (bytes): the weights of any seglab model fit
MAX_MEMBER = 2 << 30


def _open(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise SeglabError(f"{path} does not exist")
    if path.is_dir():
        raise SeglabError(f"{path} is a folder; give a bioimage.io package (.zip)")
    if not zipfile.is_zipfile(path):
        raise SeglabError(f"{path} is not a zip file, so not a bioimage.io model package")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise SeglabError(f"cannot read {path}: {e}") from None


def _member(zf: zipfile.ZipFile, name: Any, path: Path) -> bytes:
    if not isinstance(name, str) or name not in zf.namelist():
        raise SeglabError(f"{path} lacks the file {name!r} that its description names")
    if zf.getinfo(name).file_size > MAX_MEMBER:
        raise SeglabError(f"{path}: {name} is too large ({zf.getinfo(name).file_size} bytes)")
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, OSError, ValueError) as e:  # CRC errors are BadZipFile
        raise SeglabError(f"cannot read {name} from {path}: {e}") from None


def seglab_section(rdf: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``config.seglab`` section of a package seglab wrote; clear errors for any other package."""
    from seglab.bmz.export import SEGLAB_PACKAGE_FORMAT

    if rdf.get("type") != "model":
        raise SeglabError(f"{path} is a bioimage.io {rdf.get('type', 'resource')!r} description, not a model")
    version = str(rdf.get("format_version", ""))
    if not version.startswith("0.5."):
        raise SeglabError(f"{path} uses bioimage.io spec {version or '(none)'}; seglab imports spec 0.5 packages")
    config = rdf.get("config")
    section = config.get("seglab") if isinstance(config, dict) else None
    if not isinstance(section, dict):
        raise SeglabError(f"{path} was not exported by seglab (its description has no config.seglab section); "
                          f"seglab imports only packages it exported")
    fmt = section.get("format")
    if fmt != SEGLAB_PACKAGE_FORMAT:
        raise SeglabError(f"{path} has seglab package format {fmt!r}; this seglab reads format {SEGLAB_PACKAGE_FORMAT}")
    if not isinstance(section.get("files"), dict):
        raise SeglabError(f"{path}: config.seglab.files is missing")
    return section


def load_bmz(path: str | os.PathLike) -> SegmentationModel:
    """The seglab model in a package seglab exported (on the CPU), without saving it."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from seglab.bmz.export import read_rdf
    from seglab.models.config import ModelConfig
    from seglab.models.families import check_family, family_class
    from seglab.models.storage import _check_state, build_checked

    path = Path(path)
    with _open(path) as zf:
        section = seglab_section(read_rdf(zf), path)
        files = section["files"]
        raw_config = _member(zf, files.get("config"), path)
        raw_weights = _member(zf, files.get("weights"), path)
    if not str(files.get("weights", "")).endswith(".safetensors"):
        raise SeglabError(f"{path}: seglab reads only safetensors weights, not {files.get('weights')!r}")
    try:
        config = ModelConfig.from_dict(json.loads(raw_config.decode("utf-8")))
        check_family(config.family)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SeglabError(f"{path}: {files['config']} is not valid JSON: {e}") from None
    except SeglabError as e:
        raise SeglabError(f"{path}: {files['config']}: {e}") from None
    try:
        state = load_safetensors(raw_weights)
    except (SafetensorError, ValueError, OSError) as e:
        raise SeglabError(f"{path}: cannot read {files['weights']}: {e}") from None
    cls = family_class(config.family)
    network = build_checked(cls, config, f"{path}:{files['config']}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    _check_state(state, network, Path(f"{path}:{files['weights']}"))
    network.load_state_dict(state)
    return cls(config, network)


def import_bmz(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    models_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Import a package seglab exported as a model folder named ``name`` (default: the model's own
    name) in ``models_dir`` (default: the user's models folder); returns the folder.

    A name that exists is refused unless ``overwrite``; a built-in's name is always refused
    (a user model never hides a built-in)."""
    import re

    from seglab.models.registry import ModelRegistry, user_models_dir
    from seglab.models.storage import save_model

    model = load_bmz(path)
    name = (name or model.config.name).strip()
    if not name or name.startswith(".") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.+()-]*", name):
        raise SeglabError(f"{name!r} is not a usable model name: letters, digits, '-', '_', '.', spaces")
    registry = ModelRegistry()
    builtins = {m.name for m in registry.list() if m.source == "builtin"}
    if name in builtins:
        raise SeglabError(f"{name!r} is the name of a built-in model; import under another name (--name)")
    folder = Path(models_dir) if models_dir is not None else user_models_dir()
    original = model.config.name
    model.config.name = name
    if isinstance(model.config.training, dict):
        model.config.training = {**model.config.training,
                                 "imported_from_bmz": {"package": Path(path).name, "model": original}}
    return save_model(model, folder / name, overwrite=overwrite)
