"""A progress bar inside a widget: stage, done/total and time left of the running job.

Works with any progress event of the core (segmentation's ``ProgressEvent``, training's
``FinetuneEvent`` and whatever stages the core adds later): it reads the event's ``stage``,
``fraction`` and, when present, ``done``/``total``, ``plane``/``n_planes`` and ``eta`` (or those of
a nested ``train`` event), and shows the stage name as the event gives it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar

#: steps of the bar (fractions are shown to 0.1 %)
BAR_STEPS = 1000
#: below this fraction done (or this many seconds run) a time left is too unreliable to show
MIN_FRACTION_FOR_ETA = 0.02
MIN_SECONDS_FOR_ETA = 1.0


@dataclass
class ProgressInfo:
    """What the panel shows of one event."""

    stage: str
    fraction: float | None = None
    done: int | None = None
    total: int | None = None
    plane: int | None = None
    n_planes: int | None = None
    eta: float | None = None
    #: what ``done`` counts when there is no total (e.g. ``"step"``)
    unit: str = ""

    def text(self) -> str:
        """E.g. ``'tile 3/16 (plane 2/6), 12 s left'``."""
        out = self.stage
        if self.done is not None and self.total:
            out += f" {self.done}/{self.total}"
        elif self.done is not None:
            out += f" {self.unit} {self.done}" if self.unit else f" {self.done}"
        if self.n_planes and self.n_planes > 1 and self.plane is not None:
            out += f" (plane {self.plane + 1}/{self.n_planes})"
        if self.eta is not None:
            out += f", {format_seconds(self.eta)} left"
        return out


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def progress_info(event: Any) -> ProgressInfo:
    """Read a core progress event generically (missing attributes are simply not shown)."""
    nested = getattr(event, "train", None)  # training: the loop's own event (step, eta)

    def pick(name: str) -> Any:
        value = getattr(event, name, None)
        if value is None and nested is not None:
            value = getattr(nested, name, None)
        return value

    done, total, unit = pick("done"), pick("total"), ""
    if not total:  # a stage without a count (events may carry done = total = 0 for "not counted")
        done = total = None
    if done is None and nested is not None and getattr(nested, "step", None) is not None:
        done, unit = nested.step, "step"
    plane, n_planes = pick("plane"), pick("n_planes")
    fraction = _number(pick("fraction"))
    return ProgressInfo(
        stage=str(getattr(event, "stage", "") or "working"),
        fraction=None if fraction is None else min(max(fraction, 0.0), 1.0),
        done=None if done is None else int(done),
        total=None if total is None else int(total),
        plane=None if plane is None else int(plane),
        n_planes=None if n_planes is None else int(n_planes),
        eta=_number(pick("eta")),
        unit=unit,
    )


class ProgressPanel(Container):
    """A label (stage, done/total, time left) over a bar; hidden while nothing runs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(labels=False, layout="vertical", **kwargs)
        self.text = Label(value="")
        self.bar = ProgressBar(value=0, min=0, max=BAR_STEPS, tooltip="progress of the running job")
        self.extend([self.text, self.bar])
        self.margins = (0, 0, 0, 0)
        self._t0: float | None = None
        self.visible = False

    @property
    def active(self) -> bool:
        return self._t0 is not None

    def begin(self, text: str = "starting…") -> None:
        """A job started: show the panel at 0."""
        self._t0 = time.monotonic()
        self.bar.value = 0
        self.text.value = text
        self.visible = True

    def show_event(self, event: Any) -> ProgressInfo:
        """Show one progress event; returns what was shown."""
        info = progress_info(event)
        if info.eta is None and info.fraction is not None and self._t0 is not None:
            elapsed = time.monotonic() - self._t0
            # at 100 % a stage may still be working (e.g. tuning after training): no estimate
            if MIN_FRACTION_FOR_ETA <= info.fraction < 1.0 and elapsed >= MIN_SECONDS_FOR_ETA:
                info.eta = elapsed * (1.0 - info.fraction) / info.fraction
        if info.fraction is not None:
            self.bar.value = int(info.fraction * BAR_STEPS)
        self.text.value = info.text()
        return info

    def end(self) -> None:
        """The job ended (done, failed or cancelled): hide the panel."""
        self._t0 = None
        self.bar.value = 0
        self.text.value = ""
        self.visible = False
