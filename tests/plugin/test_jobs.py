"""BackgroundJob: cancel is immediate on the GUI side, the run ends and its memory is freed."""

import gc
import threading
import time
import weakref
from types import SimpleNamespace

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from magicgui.widgets import Label, PushButton  # noqa: E402

from seglab.plugin import jobs  # noqa: E402
from seglab.plugin.jobs import CANCELLED, BackgroundJob, guarded  # noqa: E402
from seglab.plugin.progress_panel import ProgressPanel  # noqa: E402
from tests_helpers import record_finish  # noqa: E402


def slow_run(big: np.ndarray, step_s: float, finished: threading.Event, n: int = 10_000):
    """A fake core run: holds a big array, yields a progress event every ``step_s`` seconds."""
    try:
        for i in range(n):
            time.sleep(step_s)
            yield SimpleNamespace(stage="postprocess", done=i + 1, total=n, fraction=(i + 1) / n)
        return big.sum()
    finally:
        finished.set()


@pytest.fixture
def job(monkeypatch, qtbot):
    monkeypatch.setattr(jobs, "show_info", lambda msg: None)
    run, cancel, status, panel = PushButton(), PushButton(enabled=False), Label(), ProgressPanel()
    return BackgroundJob("test run", run, cancel, status, notify_error=lambda m: None, panel=panel)


def test_cancel_makes_the_ui_idle_at_once_and_frees_the_run(qtbot, job):
    big = np.ones(4_000_000)  # 32 MB, referenced only by the run
    ref = weakref.ref(big)
    finished = threading.Event()
    seen, results = [], []
    worker = job.start(slow_run, big, 0.05, finished, desc="test", yielded=seen.append, returned=results.append)
    del big
    ended = record_finish(worker)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=10_000)
    assert job.running and not job.run_button.enabled and job.cancel_button.enabled and job.panel.active
    t0 = time.monotonic()
    job.cancel()
    # idle at once, before the worker thread has noticed anything
    assert time.monotonic() - t0 < 0.5
    assert not job.running and job.run_button.enabled and not job.cancel_button.enabled
    assert job.status.value == "cancelled" and not job.panel.active and job.pbar is None
    n_seen = len(seen)
    qtbot.waitUntil(lambda: bool(ended), timeout=5_000)
    assert finished.is_set()  # the run's generator was closed (its finally ran) in the worker thread
    qtbot.wait(100)
    assert len(seen) <= n_seen + 1 and not results  # later events and the result are ignored
    del worker
    gc.collect()
    assert ref() is None  # nothing holds the run's array any more


def test_a_new_run_can_start_while_a_cancelled_one_winds_down(qtbot, job):
    first_done, second_done = threading.Event(), threading.Event()
    job.start(slow_run, np.zeros(3), 0.2, first_done, desc="a", yielded=lambda e: None, returned=lambda v: None)
    job.cancel()
    results = []
    job.start(slow_run, np.ones(3), 0.01, second_done, 3, desc="b", yielded=lambda e: None,
              returned=results.append)
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    assert results == [3.0]  # only the second run's result arrives


def test_graceful_cancel_keeps_the_run_going(qtbot, job):
    stop = threading.Event()
    finished = threading.Event()

    def run():
        try:
            while not stop.is_set():
                time.sleep(0.01)
                yield SimpleNamespace(stage="train", fraction=0.5)
            return "kept"
        finally:
            finished.set()

    results = []
    job.start(run, desc="t", yielded=lambda e: None, returned=results.append, on_cancel=stop.set)
    job.cancel()
    assert job.status.value == "cancelling…"
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    assert results == ["kept"]


def test_guarded_closes_the_inner_generator():
    closed = threading.Event()

    def gen():
        try:
            yield 1
            yield 2
            return "done"
        finally:
            closed.set()

    cancel = threading.Event()
    g = guarded(gen, (), cancel)
    assert next(g) == 1
    cancel.set()
    with pytest.raises(StopIteration) as stop:
        next(g)
    assert stop.value.value is CANCELLED and closed.is_set()
    assert list(guarded(gen, (), threading.Event())) == [1, 2]


def test_a_flood_of_events_is_handled_in_order_without_nesting(qtbot, make_napari_viewer, monkeypatch):
    """napari's progress bar widget calls ``processEvents`` on every update, which delivers the
    worker's next queued event inside the current one; a fast run used to nest its handlers until
    Python's recursion limit (the run then never looked finished). Events, result and the end
    are now handled one after another, in order, each at nesting depth 1."""
    monkeypatch.setattr(jobs, "show_info", lambda msg: None)
    make_napari_viewer()  # the activity dialog whose progress bars call processEvents
    run, cancel, status = PushButton(), PushButton(enabled=False), Label()
    job = BackgroundJob("flood", run, cancel, status, notify_error=lambda m: None, panel=ProgressPanel())
    n = 3000
    depth, deepest, seen, order = [0], [0], [], []

    def flood():
        for i in range(n):
            yield SimpleNamespace(stage="train", done=i + 1, total=n, fraction=(i + 1) / n)
        return "done"

    def on_event(ev):
        depth[0] += 1
        deepest[0] = max(deepest[0], depth[0])
        try:
            seen.append(ev.done)
            job.update(ev.fraction, f"step {ev.done}")  # what the widgets do with each event
            time.sleep(0.0005)  # a GUI slower than the run: events queue up
        finally:
            depth[0] -= 1

    job.start(flood, desc="flood", yielded=on_event, returned=lambda v: order.append((v, len(seen))))
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    assert deepest[0] == 1
    assert seen == list(range(1, n + 1))
    assert order == [("done", n)]  # the result after every event
    assert job.status.value != "failed" and job.pbar is None


def test_warnings_in_a_worker_reach_the_user(qtbot, monkeypatch):
    """seglab's warnings become 'seglab: ...' notifications, others go to napari as warnings."""
    import warnings

    from seglab.errors import SeglabWarning
    from seglab.plugin import jobs

    shown, others = [], []
    monkeypatch.setattr(jobs, "show_warning", shown.append)
    monkeypatch.setattr(jobs.notification_manager, "receive_warning", lambda message, *a: others.append(str(message)))

    def work():
        warnings.warn("the GPU ran out of memory", SeglabWarning)
        warnings.warn("a library's own warning", RuntimeWarning)
        yield 1
        return 2

    worker = jobs.new_worker(work)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        worker.start()
    qtbot.waitUntil(lambda: bool(shown and others), timeout=5_000)
    assert shown == ["seglab: the GPU ran out of memory"] and others == ["a library's own warning"]
