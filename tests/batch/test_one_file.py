"""One file of a batch: the stop check right before its outputs are written."""

from __future__ import annotations

from seglab.batch.one_file import run_file
from seglab.files import SegmentOptions
from seglab.models.storage import load_model


def test_a_stop_asked_right_before_writing_leaves_no_outputs(tmp_path, image_folder, tiny_model_dir):
    """A batch cancelled after a file's last throttled poll: the unthrottled ask before the write
    stops it, and the file has no outputs (so a rerun does it again)."""
    model = load_model(tiny_model_dir)
    path = sorted(image_folder.glob("*.tif"))[0]
    out = tmp_path / "out"
    asked = []

    def cancelled_before_the_write(now: bool = False) -> bool:
        asked.append(now)
        return now  # the cancel arrived after the last ordinary poll

    outcome = run_file(model, path, out, ["labels"], SegmentOptions(device="cpu"), cancelled_before_the_write)
    assert outcome.status == "cancelled"
    assert asked[-1] is True and not any(asked[:-1])  # asked now=True once, at the end
    assert not out.exists() or not any(out.iterdir())
    outcome = run_file(model, path, out, ["labels"], SegmentOptions(device="cpu"), lambda now=False: False)
    assert outcome.status == "done" and sorted(p.name for p in out.iterdir()) == ["img0_labels.tif"]


def test_the_poller_asks_the_scheduler_now_when_told(local_cluster, monkeypatch):
    """Between its throttled polls the poller answers from its last ask; with ``now`` it asks again."""
    from distributed import Client, Event

    from seglab.batch import worker

    monkeypatch.setattr(worker, "CANCEL_POLL_SECONDS", 600.0)  # no ordinary poll during the test

    with Client(local_cluster) as client:
        event = Event("seglab-cancel-test", client=client)
        should_stop = worker._cancel_poller("seglab-cancel-test")
        assert should_stop() is False  # asked: not set
        event.set()
        assert should_stop() is False  # within CANCEL_POLL_SECONDS: not asked again
        assert should_stop(now=True) is True
