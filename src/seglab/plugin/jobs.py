"""Running one core generator at a time in a napari worker, with a progress bar and Run/Cancel buttons.

Shared by the Segment and Train widgets: the GUI thread only receives the worker's events.
A worker returns :class:`UserInputProblem` instead of a result when the input was not usable;
that becomes an error notification, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info


class UserInputProblem(str):
    """Returned by a worker instead of a result when the input was not usable."""


class BackgroundJob:
    """One worker at a time: progress bar, buttons enabled while running, status text, cancel."""

    def __init__(self, what: str, run_button: Any, cancel_button: Any, status: Any,
                 notify_error: Callable[[str], None] | None = None) -> None:
        self.what = what
        self.run_button, self.cancel_button, self.status = run_button, cancel_button, status
        self._notify_error = notify_error
        self.worker = None
        self.pbar: progress | None = None
        self._on_cancel: Callable[[], None] | None = None

    @property
    def running(self) -> bool:
        return self.worker is not None

    def show_error(self, message: str) -> None:
        (self._notify_error or show_error)(message)

    def start(self, fn: Callable, *args: Any, desc: str, yielded: Callable[[Any], None],
              returned: Callable[[Any], None], on_cancel: Callable[[], None] | None = None):
        """Start ``fn(*args)`` (a generator function) in a worker thread; returns the worker.

        ``returned`` gets the worker's value unless it is a :class:`UserInputProblem`.
        ``on_cancel`` replaces the default cancel (``worker.quit()``), e.g. to stop gracefully.
        """
        def done(value: Any) -> None:
            if isinstance(value, UserInputProblem):
                self.status.value = "failed"
                self.show_error(f"seglab: {value}")
            else:
                returned(value)

        worker = create_worker(
            fn, *args,
            _connect={"yielded": yielded, "returned": done, "errored": self._on_error,
                      "aborted": self._on_aborted, "finished": self._on_finished},
            _start_thread=False,
        )
        self.pbar = progress(total=1000, desc=desc)
        self.worker = worker
        self._on_cancel = on_cancel
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "running…"
        worker.start()
        return worker

    def update(self, fraction: float, desc: str | None = None) -> None:
        """Move the progress bar to ``fraction`` (0..1)."""
        pbar = self.pbar  # a local: setting the description may let the 'finished' handler run
        if pbar is None:
            return
        if desc is not None:
            pbar.set_description(desc)
        pbar.update(int(min(max(fraction, 0.0), 1.0) * 1000) - pbar.n)

    def cancel(self, *_: Any) -> None:
        if self.worker is None:
            return
        self.status.value = "cancelling…"
        if self._on_cancel is not None:
            self._on_cancel()
        else:
            self.worker.quit()

    def _on_error(self, exc: BaseException) -> None:
        # unexpected failures (bugs, out of memory): napari's worker also logs them with details
        self.status.value = "failed"
        self.show_error(f"seglab: {self.what} failed: {type(exc).__name__}: {exc}")

    def _on_aborted(self) -> None:
        self.status.value = "cancelled"
        show_info(f"seglab: {self.what} cancelled")

    def _on_finished(self) -> None:
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
