"""The Train widget's *Export to BioImage Model Zoo* button (napari, under xvfb)."""

from __future__ import annotations

import zipfile

import pytest

napari = pytest.importorskip("napari")

from seglab.models.storage import save_model  # noqa: E402
from seglab.plugin import bmz_export  # noqa: E402
from seglab.plugin import train_widget as tw  # noqa: E402


@pytest.fixture
def widget(make_napari_viewer, models_dir, tiny_model, monkeypatch):
    save_model(tiny_model, models_dir / "tiny")
    seen: list[str] = []
    monkeypatch.setattr(bmz_export, "show_error", seen.append)
    monkeypatch.setattr(bmz_export, "show_info", lambda msg: None)
    w = tw.TrainWidget(make_napari_viewer())
    w.errors = seen
    return w


def test_button_follows_the_chosen_model_and_exports_it(qtbot, widget, tmp_path, monkeypatch):
    widget.start_model.value = ("family", "unet")  # a new, untrained model: nothing to export yet
    assert not widget.bmz_button.enabled and widget.bmz_model() is None
    assert widget.bmz_button.tooltip
    widget.start_model.value = ("model", "tiny")
    assert widget.bmz_button.enabled and widget.bmz_model() == "tiny"
    out = tmp_path / "tiny-package.zip"
    monkeypatch.setattr(tw, "ask_bmz_path", lambda parent, name: out)  # the file dialog's answer
    widget.bmz_button.changed.emit(True)  # a click
    qtbot.waitUntil(lambda: widget.bmz_button.enabled, timeout=120_000)
    assert not widget.errors
    assert widget.status.value.startswith(f"exported 'tiny' to {out}")
    with zipfile.ZipFile(out) as zf:
        assert "rdf.yaml" in zf.namelist()


def test_after_training_the_new_model_is_exported_and_failures_are_shown(qtbot, widget, tmp_path, tiny_model,
                                                                        models_dir):
    from types import SimpleNamespace

    widget.start_model.value = ("family", "unet")
    assert not widget.bmz_button.enabled
    tiny_model.config.name = "tiny"
    widget._on_done(SimpleNamespace(path=models_dir / "tiny", model=tiny_model, steps=3, stopped=False))  # trained
    assert widget.bmz_button.enabled and widget.bmz_model() == "tiny"
    bad = tmp_path / "folder.zip"
    bad.mkdir()
    assert widget.export_bmz(path=bad) is not None
    qtbot.waitUntil(lambda: widget.bmz_button.enabled, timeout=120_000)
    assert widget.status.value.startswith("export failed") and "is a folder" in widget.errors[0]
