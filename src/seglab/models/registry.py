"""Registry of models: built-ins shipped in the package and the user's own models folder.

Nothing is cached globally: each :class:`ModelRegistry` scans its folders when
asked, so a model saved a moment ago shows up at once.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seglab.errors import SeglabError, SeglabWarning
from seglab.models.storage import CONFIG_FILE, inspect_folder, load_model

if TYPE_CHECKING:
    from seglab.models.base import SegmentationModel

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
    input_channels: int = 1  # 3: the model reads RGB colour


class ModelRegistry:
    """Finds models by name in the built-in and user folders, or by folder path."""

    def __init__(self, builtin_dir: Path | None = None, user_dir: Path | None = None) -> None:
        self.builtin_dir = Path(builtin_dir) if builtin_dir is not None else BUILTIN_DIR
        self.user_dir = Path(user_dir) if user_dir is not None else user_models_dir()
        self.problems: list[tuple[Path, str]] = []

    def _scan(self, folder: Path, source: str) -> list[ModelInfo]:
        """Models in ``folder``; a broken model folder is skipped with a :class:`SeglabWarning`
        naming it and its problem (also kept in :attr:`problems`)."""
        try:
            subs = sorted(folder.iterdir()) if folder.is_dir() else []
        except OSError as e:
            self._skip(folder, f"cannot list the folder: {e.strerror or e}")
            return []
        out = []
        for sub in subs:
            if sub.name.startswith(".") or not (sub / CONFIG_FILE).is_file():
                continue
            try:
                cfg = inspect_folder(sub)
            except SeglabError as e:
                self._skip(sub, str(e))
                continue
            out.append(ModelInfo(sub.name, cfg.family, cfg.description.splitlines()[0] if cfg.description else "", sub,
                                 source, cfg.input_channels))
        return out

    def _skip(self, folder: Path, problem: str) -> None:
        self.problems.append((folder, problem))
        warnings.warn(f"skipped model folder {folder}: {problem}", SeglabWarning, stacklevel=4)

    def list(self) -> list[ModelInfo]:
        """Built-in models first, then the user's; a user model never hides a built-in.

        Broken folders are skipped; :attr:`problems` lists them as (folder, problem)."""
        self.problems: list[tuple[Path, str]] = []
        builtins = self._scan(self.builtin_dir, "builtin")
        names = {m.name for m in builtins}
        return builtins + [m for m in self._scan(self.user_dir, "user") if m.name not in names]

    def names(self) -> list[str]:
        return [m.name for m in self.list()]

    def names_reading(self, channels: int) -> list[str]:
        """Models that read ``channels`` channels (1: grey; 3: RGB colour), the default first."""
        names = [m.name for m in self.list() if m.input_channels == channels]
        return sorted(names, key=lambda n: n != DEFAULT_MODEL)

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
        for folder, problem in self.problems:
            if folder.name == text:
                raise SeglabError(f"model {text!r} cannot be used: {problem}")
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
