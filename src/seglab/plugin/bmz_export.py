"""The Train widget's *Export to BioImage Model Zoo* action: ask for a file, export in a worker thread.

The export itself is :func:`seglab.bmz.export.export_bmz` (about 5-20 s on a CPU: TorchScript,
test tensors, validation); the GUI thread only asks for the path and shows the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error, show_info

from seglab.errors import SeglabError

BUTTON_TOOLTIP = ("write the model as a bioimage.io package (.zip) for the BioImage Model Zoo and its tools "
                  "(deepImageJ, ilastik, bioimageio.core): the model just trained, else the model chosen in "
                  "'Start from'")


def ask_package_path(parent: Any, model_name: str) -> Path | None:
    """A save dialog for the package (it asks before replacing a file); None when cancelled."""
    from qtpy.QtWidgets import QFileDialog

    name, _ = QFileDialog.getSaveFileName(parent, f"Export '{model_name}' to the BioImage Model Zoo",
                                          str(Path.home() / f"{model_name}.zip"), "bioimage.io package (*.zip)")
    if not name:
        return None
    path = Path(name)
    return path if path.suffix.lower() == ".zip" else path.with_name(path.name + ".zip")


class ExportProblem(str):
    """What the worker returns when the export was refused (a worker must not return an exception)."""


def _export(model_name: str, path: Path):
    from seglab.bmz.export import export_bmz

    try:
        return export_bmz(model_name, path, overwrite=True)
    except SeglabError as e:
        return ExportProblem(str(e))


def start_export(model_name: str, path: Path, done: Callable[[str], None]) -> Any:
    """Export ``model_name`` to ``path`` in a worker; ``done(message)`` gets the outcome (GUI thread)."""
    from seglab.plugin.jobs import new_worker

    def returned(result: Any) -> None:
        if isinstance(result, ExportProblem):
            show_error(f"seglab: export to the BioImage Model Zoo failed: {result}")
            done(f"export failed: {result}")
            return
        check = "validated" if result.validated else "not validated (bioimageio.spec not installed)"
        message = f"exported '{result.name}' to {result.path} (licence {result.license}, {check})"
        show_info(f"seglab: {message}")
        done(message)

    def errored(exc: BaseException) -> None:
        show_error(f"seglab: export to the BioImage Model Zoo failed: {exc}")
        done(f"export failed: {exc}")

    worker = new_worker(_export, model_name, Path(path))
    worker.returned.connect(returned)
    worker.errored.connect(errored)
    worker.start()
    return worker
