"""What became of one file of a batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: a file's status: segmented now, finished by an earlier run, failed, or stopped by a cancel
STATUSES = ("done", "skipped", "failed", "cancelled")


@dataclass(frozen=True)
class FileOutcome:
    """One file's result: status, outputs, object count and mean area, or the error."""

    path: Path
    status: str
    outputs: dict[str, Path] = field(default_factory=dict)
    n_objects: int | None = None
    mean_area: float | None = None  # pixels
    size: str = ""  # how it was rescaled, e.g. "diameter 18.2 px, not rescaled"
    error: str = ""
    seconds: float = 0.0
    #: a file of several images written apart (a multi-position TIFF): each one's (series, labels path)
    images: tuple[tuple[int, Path], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")
