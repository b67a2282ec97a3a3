"""The Batch widget: segment every image of a folder, then a table of the results to open in the viewer.

The work is :func:`seglab.batch.core.batch_iter` (the engine of ``seglab segment --workers``) in a
napari worker through :class:`~seglab.plugin.jobs.BackgroundJob`: progress over files, Cancel
(the generator is closed at its next event: within a fraction of a second in this process, a
quarter of a second plus the running files' next step on Dask). Finished files (their label
image exists) are skipped, so a run after a cancel does the rest. Results open as new layers;
layers the user has are never changed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    Table,
)
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QStyledItemDelegate

from seglab.batch.core import BatchSettings, BatchSummary, batch_inputs, batch_iter
from seglab.batch.one_file import error_text
from seglab.batch.outcome import FileOutcome
from seglab.errors import SeglabError
from seglab.inference.denoise import parse_denoise
from seglab.inference.diameter import parse_diameter
from seglab.models.families import family_class
from seglab.models.registry import ModelRegistry
from seglab.models.storage import read_config
from seglab.outputs import LABELS, output_kinds
from seglab.plugin.events import on_models_changed
from seglab.plugin.jobs import BackgroundJob, UserInputProblem
from seglab.plugin.layers import OwnedLayers
from seglab.plugin.model_info import describe_name, supports_augment
from seglab.plugin.progress_panel import ProgressPanel
from seglab.plugin.sections import (
    Collapsible,
    ScrollableContainer,
    augment_choice,
    button_row,
    show_augment_support,
    smoothing_choice,
    wrapped_label,
)
from seglab.plugin.tooltips import fill_threshold_tooltips

if TYPE_CHECKING:
    import napari

NEXT_TO_IMAGES = "next to the images"
IN_FOLDER = "into a folder"
COLUMNS = ("file", "objects", "mean area (px)", "status")
#: widest the file-name column grows (longer names are elided), so the counts stay in view
FILE_COLUMN_MAX_PX = 180
#: the metadata key marking layers the widget opened (the source image's path; for the user's
#: information: which layers the widget shows again is known by identity, :class:`OwnedLayers`)
OPENED_KEY = "seglab_batch_source"


def _run_batch(model_name: str, folder: str, outdir: str | None, outputs: list[str], options: dict,
               thresholds: dict[str, float], settings: BatchSettings):
    """Worker body (off the GUI thread): load the model, list the folder, run the batch."""
    from seglab.batch.cluster import model_reference
    from seglab.files import SegmentOptions

    try:
        model = ModelRegistry().load(model_name)
        paths = batch_inputs([folder])
        opts = SegmentOptions(thresholds=model.thresholds(thresholds), **options)
        summary = yield from batch_iter(model, paths, outdir, outputs, opts, settings,
                                        model_ref=model_reference(model_name))
    except SeglabError as e:
        return UserInputProblem(str(e))
    return summary


class FilesProgress(ProgressPanel):
    """The progress panel, counting files: 'files 3/20' (within a file, in this process, the bar moves on)."""

    def show_event(self, event: Any):
        if getattr(event, "stage", "") == "start":
            return super().show_event(SimpleNamespace(stage=f"running in {event.where}", fraction=event.fraction))
        return super().show_event(SimpleNamespace(stage="files", fraction=event.fraction, done=event.done,
                                                  total=event.total))


def outcome_row(o: FileOutcome) -> list[str]:
    """A table row: file, objects, mean area, status (the error for a failed file)."""
    status = {"done": "done", "skipped": "finished earlier (skipped)", "cancelled": "cancelled"}.get(o.status)
    return [o.path.name, "" if o.n_objects is None else str(o.n_objects),
            "" if o.mean_area is None else f"{o.mean_area:.1f}", status or f"failed: {o.error}"]


class BatchWidget(ScrollableContainer):
    """Segment all images of a folder with a seglab model; a summary table of the results."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._registry = ModelRegistry()
        self.summary: BatchSummary | None = None
        self._rows: list[FileOutcome] = []
        # the layers this widget opened, by identity (a renamed or duplicated one is the user's)
        self._opened = OwnedLayers()
        self._build_fields()
        self.finish_layout()
        self.model.changed.connect(self._on_model_changed)
        self.destination.changed.connect(self._on_destination_changed)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.open_button.changed.connect(self.open_selected)
        self.table.native.cellDoubleClicked.connect(lambda row, _col: self.open_result(row))
        on_models_changed(self, BatchWidget._on_models_changed)
        self._on_model_changed()
        self._on_destination_changed()

    def _build_fields(self) -> None:
        self.folder = FileEdit(mode="d", label="Folder", tooltip="the folder of images to segment (every image in it; "
                               "seglab's own outputs are left out)")
        self.model = ComboBox(label="Model", choices=lambda *_: self._registry.names(),
                              value=self._registry.default_name(), tooltip="the model to segment with")
        self.model_info = wrapped_label("family, training data, object size and validation score of the model")
        self.diameter = LineEdit(label="Diameter", value="auto",
                                 tooltip="object diameter in pixels: images are rescaled so that objects arrive at "
                                         "the model's size; 'auto' estimates it per image, 'none' turns it off")
        self.outputs = Container(labels=False, label="Outputs", layout="vertical")
        self.outputs.margins = (0, 0, 0, 0)
        self.destination = ComboBox(label="Write", choices=[NEXT_TO_IMAGES, IN_FOLDER], value=NEXT_TO_IMAGES,
                                    tooltip="write the outputs next to each image, or into a folder of your choice")
        self.outdir = FileEdit(mode="d", label="Output folder", tooltip="where the outputs go")
        self.workers = SpinBox(label="Workers", value=0, min=0, max=64,
                               tooltip="0: in napari's process (progress within each file); N: a local Dask "
                                       "cluster of N workers (threads)")
        self.scheduler = LineEdit(label="Scheduler", value="",
                                  tooltip="address of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (its "
                                          "workers need seglab and the same paths); empty: as Workers says")
        self.overwrite = CheckBox(text="Redo finished images", value=False,
                                  tooltip="segment again images whose label image exists (default: skip them, so a "
                                          "run after a cancel does only the rest); a label image seglab did not "
                                          "write (your own) is never replaced")
        self.run_button = PushButton(text="Run", tooltip="segment every image of the folder")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip="stop now: images already finished keep their outputs")
        self.progress = FilesProgress(label="")
        self.status = Label(value="")
        self.table = Table(value={c: [] for c in COLUMNS}, label="Results")
        self.table.read_only = True
        self.table.native.setSelectionBehavior(self.table.native.SelectionBehavior.SelectRows)
        self.table.native.setMinimumHeight(160)
        # show the cells' text as it is (magicgui's delegate reformats numbers: "7783.8" -> "7783.8000")
        self.table.native.setItemDelegate(QStyledItemDelegate(self.table.native))
        self.table.native.verticalHeader().setVisible(False)
        self.table.tooltip = "one row per image; double-click a row (or Open) to show the image and its labels"
        self.open_button = PushButton(text="Open selected result",
                                      tooltip="add the selected image and its labels to the viewer as new layers")
        # advanced
        self.tile_size = SpinBox(label="Tile size", value=1024, min=128, max=8192, step=64,
                                 tooltip="images are segmented in tiles of this many pixels a side")
        self.batch_size = SpinBox(label="Batch size", value=4, min=1, max=64, tooltip="tiles the network runs at once")
        self.device = ComboBox(label="Device", choices=["auto", "cpu", "cuda", "mps"], value="auto",
                               tooltip="where the network runs; auto: a GPU when there is one, else the CPU")
        self.amp = CheckBox(text="Mixed precision", value=True, tooltip="16-bit precision where the device has it")
        self.channels = LineEdit(label="Channels", value="",
                                 tooltip="channels of multichannel images to use, e.g. '0' or '0,1' (empty: all; "
                                         "colour images become grey for grey models)")
        self.denoise = smoothing_choice()
        self.augment = augment_choice()
        self.thresholds = Container(labels=True, label="Thresholds")
        self.advanced = Collapsible("Advanced", [self.workers, self.scheduler, self.tile_size, self.batch_size,
                                                 self.device, self.amp, self.channels, self.denoise, self.augment,
                                                 self.thresholds],
                                    tooltip="workers, cluster, tile size, batch size, device, precision, smoothing of "
                                            "noisy images, test-time augmentation, thresholds")
        self.extend([self.folder, self.model, self.model_info, self.diameter, self.outputs, self.destination,
                     self.outdir, self.overwrite, button_row(self.run_button, self.cancel_button), self.progress,
                     self.status, self.advanced, self.table, self.open_button])
        self._job = BackgroundJob("batch", self.run_button, self.cancel_button, self.status,
                                  notify_error=lambda msg: show_error(msg), panel=self.progress)

    # ---- fields -----------------------------------------------------------
    def _on_models_changed(self, name: str = "") -> None:
        self.model.reset_choices()

    def _on_destination_changed(self, *_: Any) -> None:
        self.outdir.visible = self.destination.value == IN_FOLDER

    def _on_model_changed(self, *_: Any) -> None:
        name = self.model.value
        self.model_info.value = describe_name(self._registry, name) if name else "no model available"
        self._rebuild_thresholds()
        fill_threshold_tooltips(self.thresholds)
        self._rebuild_outputs()
        show_augment_support(self.augment, supports_augment(self._registry, name), bool(self.augment.value))

    def _model_family(self) -> Any:
        try:
            return family_class(read_config(self._registry.resolve(self.model.value)).family)
        except (SeglabError, TypeError):
            return None

    def _rebuild_outputs(self) -> None:
        """One check box per registered output kind; the label image is always written; kinds the
        model cannot give are disabled, with the reason as tooltip."""
        wanted = {w.name for w in self.outputs if w.value and w.enabled}
        self.outputs.clear()
        family = self._model_family()
        probe = SimpleNamespace(family=getattr(family, "family", ""), shape_type=getattr(family, "shape_type", None),
                                has_boxes=bool(getattr(family, "has_boxes", False)),
                                config=SimpleNamespace(name=self.model.value))
        for kind in output_kinds().values():
            box = CheckBox(name=kind.name, text=kind.name,  # the help as tooltip keeps the dock narrow
                           value=kind.name == LABELS or kind.name in wanted or (not wanted and kind.name == "objects"),
                           tooltip=(f"{kind.help}: " if kind.help else "") + f"writes <image>{kind.suffix}")
            if kind.name == LABELS:
                box.enabled = False
                box.tooltip += " (always: it marks an image as finished)"
            elif kind.check is not None and family is not None:
                try:
                    kind.check(probe)
                except SeglabError as e:
                    box.value, box.enabled = False, False
                    box.tooltip = str(e)
                except Exception:  # noqa: BLE001 - a check that needs more than the family: left to the run
                    pass
            self.outputs.append(box)

    def _rebuild_thresholds(self) -> None:
        self.thresholds.clear()
        family = self._model_family()
        if family is None:
            return
        values = dict(family.default_thresholds)
        values.update(read_config(self._registry.resolve(self.model.value)).thresholds)
        for key, val in values.items():
            spec = family.threshold_specs.get(key)
            if spec is None:  # a config threshold the family does not declare: shown, not range-checked
                low, high, step = -1e9, 1e9, 0.05
            else:
                low, high, step = max(spec.low, -1e9), min(spec.high, 1e9), spec.step
            tip = "" if spec is None else f"{spec.help} (range {spec.low:g} to {spec.high:g})"
            field = FloatSpinBox(name=key, label=key, value=min(max(float(val), low), high), min=low, max=high,
                                 step=step, tooltip=tip or None)
            field.native.setDecimals(max(2, len(f"{step:g}".partition(".")[2])))
            self.thresholds.append(field)

    def selected_outputs(self) -> list[str]:
        return [w.name for w in self.outputs if w.value and w.enabled and w.name != LABELS]

    # ---- running ----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._job.running

    def _inputs(self) -> tuple:
        folder = Path(str(self.folder.value)) if self.folder.value else None
        if folder is None or str(self.folder.value) in ("", ".") or not folder.is_dir():
            raise SeglabError("choose a folder of images")
        if not self.model.value:
            raise SeglabError("no model available")
        outdir = None
        if self.destination.value == IN_FOLDER:
            if not self.outdir.value or str(self.outdir.value) in ("", "."):
                raise SeglabError("choose the output folder")
            outdir = str(self.outdir.value)
        from seglab.plugin.segment_widget import parse_channels

        options = dict(channels=parse_channels(self.channels.value),
                       tile_size=int(self.tile_size.value), batch_size=int(self.batch_size.value),
                       device=self.device.value, amp=bool(self.amp.value),
                       diameter=parse_diameter(self.diameter.value), denoise=parse_denoise(self.denoise.value),
                       augment=bool(self.augment.value and self.augment.enabled))
        settings = BatchSettings(workers=int(self.workers.value), scheduler=self.scheduler.value.strip() or None,
                                 processes=False, overwrite=bool(self.overwrite.value))
        thresholds = {w.name: float(w.value) for w in self.thresholds}
        return str(folder), outdir, options, thresholds, settings

    def start(self, *_: Any):
        """Check the fields and start the batch in a worker; returns the worker (or None)."""
        if self.running:
            show_info("seglab: a batch is already running")
            return None
        try:
            folder, outdir, options, thresholds, settings = self._inputs()
        except SeglabError as e:
            show_error(f"seglab: {e}")
            return None
        self._show([])
        self.summary = None
        return self._job.start(_run_batch, self.model.value, folder, outdir, self.selected_outputs(), options,
                               thresholds, settings, desc=f"seglab: batch {Path(folder).name}",
                               yielded=self._on_event, returned=self._on_done)

    def cancel(self, *_: Any) -> None:
        """Stop now; images already finished keep their outputs (a later run skips them)."""
        self._job.cancel()

    def _on_event(self, event: Any) -> None:
        self._job.update(event.fraction, f"seglab: batch, {event.done}/{event.total} files")
        if event.outcome is not None and self.summary is None:  # a late event after the result changes nothing
            self._rows = [o for o in self._rows if o.path != event.outcome.path] + [event.outcome]
            self._fill_table()

    def _show(self, outcomes: list[FileOutcome]) -> None:
        self._rows = list(outcomes)
        self._fill_table()

    def _fill_table(self) -> None:
        rows = [outcome_row(o) for o in self._rows]
        self.table.value = {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}
        self.table.native.resizeColumnsToContents()
        header = self.table.native.horizontalHeader()  # long file names elided: the counts stay in view
        header.resizeSection(0, min(header.sectionSize(0), FILE_COLUMN_MAX_PX))

    def _on_done(self, summary: BatchSummary) -> None:
        self.summary = summary
        self._show(summary.outcomes)
        counts = {s: len(summary.with_status(s)) for s in ("done", "skipped", "failed")}
        self.status.value = (f"{counts['done']} segmented, {counts['skipped']} skipped, {counts['failed']} failed "
                             f"({summary.seconds:.0f} s)")
        if summary.failed:
            first = summary.failed[0]
            more = f" (and {len(summary.failed) - 1} more, see the table)" if len(summary.failed) > 1 else ""
            show_error(f"seglab: {len(summary.failed)} of {len(summary.outcomes)} images failed: "
                       f"{first.path.name}: {first.error}{more}")
        else:
            show_info(f"seglab: batch done: {self.status.value}")

    # ---- results ----------------------------------------------------------
    def open_selected(self, *_: Any) -> None:
        rows = sorted({i.row() for i in self.table.native.selectedIndexes()})
        if not rows:
            show_info("seglab: select a row of the results first")
            return
        for row in rows:
            self.open_result(row)

    def open_result(self, row: int) -> list[Any]:
        """Add the row's image and label image to the viewer as new layers (or select the ones this
        widget opened before and nobody removed); returns the layers."""
        if not 0 <= row < len(self._rows):
            return []
        o = self._rows[row]
        labels_path = o.outputs.get(LABELS)
        if not o.ok or labels_path is None or not Path(labels_path).exists():
            show_warning(f"seglab: {o.path.name} has no result to open ({outcome_row(o)[3]})")
            return []
        opened = self._opened.layers(self._viewer, str(o.path), "opened")
        if {type(lyr).__name__ for lyr in opened} >= {"Image", "Labels"}:  # opened before: show them again
            self._viewer.layers.selection.active = opened[-1]
            return opened
        layers: list[Any] = []
        try:  # a multi-position file: each position's image and labels
            for series, labels in o.images or ((None, Path(labels_path)),):
                layers += self._add_layers(o.path, Path(labels), series)
        except (SeglabError, OSError, ValueError) as e:
            show_error(f"seglab: cannot open the result of {o.path.name}: {error_text(e)}")
        return layers

    def _add_layers(self, image_path: Path, labels_path: Path, series: int | None = None) -> list[Any]:
        from seglab.io.images import image_stem, read_image_data, series_stem
        from seglab.plugin.reader import layer_geometry, read_one

        data = read_image_data(image_path, series=series)
        name = image_path.stem if series is None else series_stem(image_stem(image_path), series)
        kwargs: dict[str, Any] = {"name": name, "metadata": {OPENED_KEY: str(image_path)}}
        spatial = data.axes
        if data.channel_axis is not None:
            if data.rgb and data.channel_axis == data.array.ndim - 1:
                kwargs["rgb"] = True
            else:
                kwargs["channel_axis"] = data.channel_axis
            spatial = data.axes.replace(data.axes[data.channel_axis], "")
        kwargs.update(layer_geometry(data, spatial))
        labels, lkw, _ = read_one(str(labels_path))
        lkw["metadata"] = {OPENED_KEY: str(image_path)}
        image_layers = self._viewer.add_image(data.array, **kwargs)
        image_layers = image_layers if isinstance(image_layers, list) else [image_layers]
        labels_layer = self._viewer.add_labels(labels, **lkw)
        for layer in (*image_layers, labels_layer):
            self._opened.add(layer, str(image_path), "opened")
        return [*image_layers, labels_layer]
