"""Atomic writes: write a temporary sibling, then rename it over the target."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seglab.errors import SeglabError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a temp file/folder the usual mode (0666/0777 minus umask); mkstemp makes them private."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one
    rename, on any failure it is removed and ``path`` is left as it was. OS errors become
    :class:`SeglabError`. ``suffix`` lets writers that look at the extension see the right one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        default_mode(tmp)
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise SeglabError(f"cannot write {path}: {e}") from None
        raise


def check_writable_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` if needed and check that files can be written in it, so that
    a run fails before its work, not after; OS errors become :class:`SeglabError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SeglabError(f"output {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".seglab-write-test.", dir=path)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise SeglabError(f"cannot write to the output folder {path}: {e.strerror or e}") from None
    return path
