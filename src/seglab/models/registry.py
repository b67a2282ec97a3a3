"""Registry of models: built-ins shipped in the package and the user's own models folder.

Nothing is cached globally: each :class:`ModelRegistry` scans its folders when
asked, so a model saved a moment ago shows up at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seglab.errors import SeglabError
from seglab.models.base import SegmentationModel
from seglab.models.storage import CONFIG_FILE, load_model, read_config

BUILTIN_DIR = Path(__file__).parent / "builtin"
MODELS_DIR_ENV = "SEGLAB_MODELS_DIR"

#: the built-in the widgets select first (best val AP@0.5 of the built-ins, gives polygons)
DEFAULT_MODEL = "stardist-nuclei"


def user_models_dir() -> Path:
    """Where the user's own models live: ``$SEGLAB_MODELS_DIR`` or the platform's data folder."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-seglab", appauthor=False)) / "models"


@dataclass(frozen=True)
class ModelInfo:
    """A model's name, family and one line of description, and where it lives."""

    name: str
    family: str
    description: str
    path: Path
    source: str  # "builtin" or "user"


class ModelRegistry:
    """Finds models by name in the built-in and user folders, or by folder path."""

    def __init__(self, builtin_dir: Path | None = None, user_dir: Path | None = None) -> None:
        self.builtin_dir = Path(builtin_dir) if builtin_dir is not None else BUILTIN_DIR
        self.user_dir = Path(user_dir) if user_dir is not None else user_models_dir()

    def _scan(self, folder: Path, source: str) -> list[ModelInfo]:
        if not folder.is_dir():
            return []
        out = []
        for sub in sorted(folder.iterdir()):
            if sub.name.startswith(".") or not (sub / CONFIG_FILE).is_file():
                continue
            try:
                cfg = read_config(sub)
            except SeglabError:
                continue  # a broken folder is skipped, not fatal for listing
            out.append(ModelInfo(sub.name, cfg.family, cfg.description.splitlines()[0] if cfg.description else "", sub, source))
        return out

    def list(self) -> list[ModelInfo]:
        """Built-in models first, then the user's; a user model never hides a built-in."""
        builtins = self._scan(self.builtin_dir, "builtin")
        names = {m.name for m in builtins}
        return builtins + [m for m in self._scan(self.user_dir, "user") if m.name not in names]

    def names(self) -> list[str]:
        return [m.name for m in self.list()]

    def default_name(self) -> str | None:
        """The model a widget offers first: :data:`DEFAULT_MODEL` when present, else the first listed."""
        names = self.names()
        return DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else None)

    def resolve(self, name_or_path: str | os.PathLike) -> Path:
        """Folder of a model given by registered name or by path."""
        text = str(name_or_path)
        for info in self.list():
            if info.name == text:
                return info.path
        p = Path(text).expanduser()
        if p.is_dir():
            if not (p / CONFIG_FILE).is_file():
                raise SeglabError(f"{p} is not a model folder (no {CONFIG_FILE})")
            return p
        known = ", ".join(self.names()) or "none"
        raise SeglabError(f"unknown model {text!r}: not a model name ({known}) nor a model folder")

    def load(self, name_or_path: str | os.PathLike) -> SegmentationModel:
        """Load a model by name or folder path (on the CPU)."""
        return load_model(self.resolve(name_or_path))


def list_models() -> list[ModelInfo]:
    """Models available now (built-in and user)."""
    return ModelRegistry().list()


def get_model(name_or_path: str | os.PathLike) -> SegmentationModel:
    """Load a model by name or folder path."""
    return ModelRegistry().load(name_or_path)
