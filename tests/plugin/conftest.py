import os

import pytest

if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
    pytest.skip("napari tests need a display: run them under xvfb-run", allow_module_level=True)


@pytest.fixture
def grey_builtins(tmp_path):
    """A built-in folder holding only the grey built-ins (no RGB model such as stardist-he)."""
    from seglab.models.registry import BUILTIN_DIR

    folder = tmp_path / "grey-builtins"
    folder.mkdir()
    for name in ("unet-nuclei", "stardist-nuclei", "maskrcnn-nuclei"):
        (folder / name).symlink_to(BUILTIN_DIR / name)
    return folder


@pytest.fixture
def segment_dock(make_napari_viewer):
    """A viewer with the Segment widget docked: ``(viewer, widget)``."""
    from seglab.plugin import segment_widget as sw

    viewer = make_napari_viewer()
    widget = sw.SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


@pytest.fixture
def segment_errors(monkeypatch):
    """The error notifications of the Segment widget, collected instead of shown."""
    from seglab.plugin import segment_widget as sw

    seen = []
    monkeypatch.setattr(sw, "show_error", lambda msg: seen.append(msg))
    return seen


@pytest.fixture
def segment_run_kwargs(monkeypatch):
    """The keyword arguments of the Segment widget's last run, recorded as the run starts."""
    from seglab.plugin import segment_widget as sw

    seen = {}
    real = sw._run_segmentation

    def spy(model_ref, data, kwargs):
        seen.update(kwargs)
        return (yield from real(model_ref, data, kwargs))

    monkeypatch.setattr(sw, "_run_segmentation", spy)
    return seen
