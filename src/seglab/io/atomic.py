"""Helpers for atomic writes: temporary files get the permissions a plain write would."""

from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a temp file/folder the usual mode (0666/0777 minus umask); mkstemp makes them private."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())
