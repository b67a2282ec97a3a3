"""Running one core generator at a time in a napari worker, with progress and Run/Cancel buttons.

Shared by the Segment and Train widgets: the GUI thread only receives the worker's events.
A worker returns :class:`UserInputProblem` instead of a result when the input was not usable;
that becomes an error notification, not a traceback.

Cancelling is immediate on the GUI side: the job detaches from its worker at once (buttons back,
status "cancelled", later events and the result ignored). The worker thread stops at the core's
next yield: there the generator is closed, in the worker thread, so the run's arrays are freed.

A worker's signals are handled one at a time, in order: napari's progress bar widget calls
``QApplication.processEvents()`` on every update, which would otherwise deliver the worker's next
queued event inside the handler of the current one, nesting deeper with every event of a fast run
(until Python's recursion limit, after which the run never looked finished).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from napari.utils import progress
from napari.utils.notifications import notification_manager, show_error, show_info, show_warning

from seglab.errors import SeglabWarning
from seglab.plugin.progress_panel import ProgressPanel


class UserInputProblem(str):
    """Returned by a worker instead of a result when the input was not usable."""


class _Cancelled:
    """What a cancelled worker returns (ignored: the job has already detached)."""


CANCELLED = _Cancelled()


def show_worker_warning(args: tuple) -> None:
    """A warning raised in a worker thread (``warnings.showwarning``'s arguments), as a napari
    notification: seglab's own as ``seglab: <message>``, others as napari shows warnings."""
    message, category = args[0], args[1]
    if isinstance(category, type) and issubclass(category, SeglabWarning):
        show_warning(f"seglab: {message}")
    else:
        notification_manager.receive_warning(*args)


def new_worker(fn: Callable, *args: Any, connect: dict[str, Callable] | None = None) -> Any:
    """A worker thread for ``fn(*args)`` (not started) whose warnings reach the user.

    napari's own worker classes are meant to relay warnings as notifications, but in napari 0.9
    with PyQt6 they do not (their relaying mixin's ``__init__`` is never reached), so a warning
    raised in a worker (an H&E model given fluorescence, a GPU out of memory) was lost; this
    uses superqt's worker and relays them itself (:func:`show_worker_warning`)."""
    from superqt.utils import create_worker

    worker = create_worker(fn, *args, _start_thread=False, _connect=connect)
    worker.warned.connect(show_worker_warning)
    return worker
#: shortest time between two updates of napari's progress bar (each one repaints)
UPDATE_INTERVAL_S = 0.05
#: the Cancel button's text once a graceful stop is under way: a second click discards the run
STOP_NOW_TEXT = "Stop now (discard)"


def guarded(fn: Callable[..., Generator], args: tuple, cancel: threading.Event) -> Generator:
    """Run the generator ``fn(*args)``, yielding its events, until ``cancel`` is set.

    Once cancelled it closes the inner generator at once (its ``finally`` blocks run and its
    frame, with every array it holds, is released) and returns :data:`CANCELLED`.
    """
    gen = fn(*args)
    del args
    try:
        value = None
        while True:
            if cancel.is_set():
                return CANCELLED
            try:
                event = gen.send(value)
            except StopIteration as stop:
                return CANCELLED if cancel.is_set() else stop.value
            if cancel.is_set():
                return CANCELLED
            value = yield event
    finally:
        gen.close()


class BackgroundJob:
    """One worker at a time: progress bar, buttons enabled while running, status text, cancel."""

    def __init__(self, what: str, run_button: Any, cancel_button: Any, status: Any,
                 notify_error: Callable[[str], None] | None = None, panel: ProgressPanel | None = None) -> None:
        self.what = what
        self.run_button, self.cancel_button, self.status = run_button, cancel_button, status
        self.panel = panel
        self._notify_error = notify_error
        self.worker = None
        self.pbar: progress | None = None
        self._cancel_event: threading.Event | None = None
        self._on_cancel: Callable[[], None] | None = None
        self._cancel_text = str(getattr(cancel_button, "text", ""))
        self._last_update = -1e9

    @property
    def running(self) -> bool:
        return self.worker is not None

    def show_error(self, message: str) -> None:
        (self._notify_error or show_error)(message)

    def start(self, fn: Callable, *args: Any, desc: str, yielded: Callable[[Any], None],
              returned: Callable[[Any], None], on_cancel: Callable[[], None] | None = None):
        """Start ``fn(*args)`` (a generator function) in a worker thread; returns the worker.

        ``yielded`` gets each progress event (after the progress panel has shown it);
        ``returned`` gets the worker's value unless it is a :class:`UserInputProblem`.
        ``on_cancel`` replaces the immediate cancel, e.g. to stop gracefully and keep a result;
        a second cancel then stops at once (the button says so).
        Events of a worker the job has detached from (cancelled) are ignored.
        """
        cancel = threading.Event()
        worker = new_worker(guarded, fn, args, cancel)

        def current() -> bool:
            return self.worker is worker

        pending: deque[Callable[[], None]] = deque()
        dispatching = [False]

        def serial(handler: Callable[[Any], None]) -> Callable[..., None]:
            """``handler`` run after the handlers already under way (never nested inside one)."""
            def queued(*args: Any) -> None:
                pending.append(lambda: handler(*args))
                if dispatching[0]:
                    return  # delivered by processEvents inside a handler: the outer loop runs it next
                dispatching[0] = True
                error: Exception | None = None
                try:
                    while pending:
                        try:
                            pending.popleft()()
                        except Exception as exc:  # noqa: BLE001 - the later handlers (the end) still run
                            error = error or exc
                finally:
                    dispatching[0] = False
                if error is not None:
                    raise error
            return queued

        def on_yielded(event: Any) -> None:
            if current():
                if self.panel is not None:
                    self.panel.show_event(event)
                yielded(event)

        def on_returned(value: Any) -> None:
            if not current() or value is CANCELLED:
                return
            if isinstance(value, UserInputProblem):
                self.status.value = "failed"
                self.show_error(f"seglab: {value}")
            else:
                returned(value)

        def on_errored(exc: BaseException) -> None:
            if current():
                # unexpected failures (bugs, out of memory): napari's worker also logs them with details
                self.status.value = "failed"
                self.show_error(f"seglab: {self.what} failed: {type(exc).__name__}: {exc}")

        def on_finished() -> None:
            if current():
                self._detach()

        worker.yielded.connect(serial(on_yielded))
        worker.returned.connect(serial(on_returned))
        worker.errored.connect(serial(on_errored))
        worker.finished.connect(serial(on_finished))
        self.pbar = progress(total=1000, desc=desc)
        self._last_update = -1e9
        self.worker = worker
        self._cancel_event = cancel
        self._on_cancel = on_cancel
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "running…"
        if self.panel is not None:
            self.panel.begin()
        worker.start()
        return worker

    def update(self, fraction: float, desc: str | None = None) -> None:
        """Move napari's activity-panel bar to ``fraction`` (0..1)."""
        pbar = self.pbar
        if pbar is None:
            return
        n = int(min(max(fraction, 0.0), 1.0) * 1000)
        now = time.monotonic()
        if n < 1000 and now - self._last_update < UPDATE_INTERVAL_S:
            return  # each update repaints (processEvents): at most every UPDATE_INTERVAL_S
        self._last_update = now
        if desc is not None:
            pbar.set_description(desc)
        if n != pbar.n:
            pbar.update(n - pbar.n)

    def cancel(self, *_: Any) -> None:
        """Cancel the run: gracefully through ``on_cancel`` when given, else at once."""
        if self.worker is None:
            return
        graceful, self._on_cancel = self._on_cancel, None
        if graceful is not None:
            self.status.value = "cancelling…"
            self.cancel_button.text = STOP_NOW_TEXT
            graceful()
        else:
            self.abort()

    def abort(self) -> None:
        """Stop at once: detach from the worker (UI idle now, result discarded); the thread ends
        at the core's next yield and frees the run's memory."""
        if self.worker is None:
            return
        assert self._cancel_event is not None
        self._cancel_event.set()
        self._detach()
        self.status.value = "cancelled"
        show_info(f"seglab: {self.what} cancelled")

    def _detach(self) -> None:
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None
        if self.panel is not None:
            self.panel.end()
        self.worker = None
        self._cancel_event = None
        self._on_cancel = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self.cancel_button.text = self._cancel_text
