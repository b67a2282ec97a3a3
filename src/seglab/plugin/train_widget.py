"""The Train widget: fine-tune a model (or train one from scratch) on image/labels layer pairs.

Layers become :class:`~seglab.training.finetune.Annotation` objects on the GUI thread (labels are
copied, so editing them during training changes nothing); checking, training, threshold tuning
and saving run in a worker (:func:`seglab.training.finetune.prepare` and ``finetune_iter``).
The main fields come first; learning rate, augmentation, replay, frozen levels, validation pair and
device sit in a collapsible "Advanced" section, all in a scroll area (fits a 1080p screen).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

import napari.layers
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.utils.notifications import show_error, show_info

from seglab.errors import SeglabError
from seglab.models.families import FAMILIES, family_class
from seglab.models.registry import ModelRegistry, user_models_dir
from seglab.plugin.bmz_export import BUTTON_TOOLTIP as BMZ_TOOLTIP
from seglab.plugin.bmz_export import ask_package_path as ask_bmz_path
from seglab.plugin.bmz_export import start_export as start_bmz_export
from seglab.plugin.events import EVENTS, on_models_changed
from seglab.plugin.jobs import BackgroundJob, UserInputProblem
from seglab.plugin.layers import channel_axis_of, geometry_differences, image_array
from seglab.plugin.model_info import describe_name
from seglab.plugin.plot import TrainPlot
from seglab.plugin.progress_panel import ProgressPanel, progress_info
from seglab.plugin.sections import (
    Collapsible,
    ScrollableContainer,
    button_row,
    wrapped_label,
)
from seglab.plugin.segment_widget import SegmentWidget
from seglab.training.finetune import (
    DEFAULT_TIME_BUDGET,
    Annotation,
    Box,
    FinetuneEvent,
    FinetuneResult,
    FinetuneSettings,
    finetune_iter,
    prepare,
)

if TYPE_CHECKING:
    import napari


def _run_training(annotations: list[Annotation], validation: list[Annotation], kwargs: dict,
                  stop: threading.Event):
    """Worker body (off the GUI thread): check the inputs, train, tune, save; yields progress."""
    try:
        plan = prepare(annotations, validation=validation, **kwargs)
        return (yield from finetune_iter(plan, stop))
    except SeglabError as e:  # the user's input (or a diverging run): a notification, no traceback
        return UserInputProblem(str(e))


def rectangles_in(shapes: Any, image: Any) -> list[Box]:
    """The rectangles of a Shapes layer as pixel boxes ``(y0, x0, y1, x1)`` of ``image``'s data.

    Each rectangle is taken to ``image``'s pixels through both layers' transforms; one that is not
    an axis-aligned box there (the image or the Shapes layer rotated or sheared, the other not, or
    a rectangle turned in the Shapes layer) is refused: its bounding box would hold pixels the user
    did not annotate."""
    boxes = []
    for i, (verts, kind) in enumerate(zip(shapes.data, shapes.shape_type), start=1):
        if kind != "rectangle":
            raise SeglabError(f"shape {i} of Shapes layer '{shapes.name}' is a {kind}; regions must be rectangles")
        px = np.array([image.world_to_data(shapes.data_to_world(v)) for v in np.asarray(verts)])[:, -2:]
        (y0, x0), (y1, x1) = px.min(axis=0), px.max(axis=0)
        tol = 1e-3 * max(1.0, y1 - y0, x1 - x0)
        on_corner = (np.minimum(abs(px[:, 0] - y0), abs(px[:, 0] - y1)) <= tol) & \
                    (np.minimum(abs(px[:, 1] - x0), abs(px[:, 1] - x1)) <= tol)
        if not on_corner.all():
            raise SeglabError(
                f"rectangle {i} of Shapes layer '{shapes.name}' is not an upright rectangle in the pixels of image "
                f"layer '{image.name}' (one of the two layers is rotated or sheared and the other is not, or the "
                "rectangle was turned): its region would cover pixels you did not annotate; draw the regions in a "
                "Shapes layer with the image's rotate, shear and affine (or without any on either)")
        boxes.append((y0 + 0.5, x0 + 0.5, y1 + 0.5, x1 + 0.5))  # pixel centres -> pixel edges
    if not boxes:
        raise SeglabError(f"Shapes layer '{shapes.name}' has no rectangles; draw some or choose no regions")
    return boxes


def check_aligned(image: Any, labels: Any, channel_axis: int | None) -> None:
    """Refuse a labels layer that napari does not show exactly over its image layer (a different
    scale, translate, rotate, shear or affine; ``channel_axis``: the image data's, left out): pixel
    (i, j) of the labels would be trained as the objects of pixel (i, j) of the image, which is not
    where the user saw and drew them."""
    differences = geometry_differences(image, labels, channel_axis)
    if differences:
        raise SeglabError(
            f"labels layer '{labels.name}' does not lie over image layer '{image.name}' as napari shows them "
            f"(image vs labels: {'; '.join(differences)}): the model would train on pixels that do not match; give "
            "the labels layer the image layer's scale, translate, rotate, shear and affine, or choose the labels "
            "drawn on this image")


def layers_to_annotation(image: Any, labels: Any, shapes: Any = None) -> Annotation:
    """One training pair from layers; the labels are copied. Labels (and regions) must lie over the
    image as napari shows them (:func:`check_aligned`, :func:`rectangles_in`)."""
    if image is None or labels is None:
        raise SeglabError("choose an image layer and a labels layer for every pair")
    data = image_array(image)
    ca = channel_axis_of(image, data.ndim, None)
    check_aligned(image, labels, ca)
    lab = labels.data[0] if getattr(labels, "multiscale", False) else labels.data
    regions = None if shapes is None else rectangles_in(shapes, image)
    return Annotation(np.asarray(data), np.array(lab, copy=True), ca, regions, name=image.name,
                      labels_name=labels.name)


class PairRow(Container):
    """One (image, labels, optional rectangles) choice."""

    def __init__(self, index: int) -> None:
        super().__init__(labels=True, label=f"Pair {index}")
        self.image = create_widget(annotation=napari.layers.Image, label="Image",
                                   options={"tooltip": "an image to train on"})
        self.labels = create_widget(annotation=napari.layers.Labels, label="Labels",
                                    options={"tooltip": "the objects of that image, one id per object "
                                                        "(e.g. corrected seglab labels); 0 is background"})
        self.regions = create_widget(annotation=Optional[napari.layers.Shapes], label="Regions",  # noqa: UP045
                                     options={"tooltip": "rectangles in which every object is annotated; "
                                                         "none: the whole image counts"})
        self.extend([self.image, self.labels, self.regions])

    def to_annotation(self) -> Annotation:
        return layers_to_annotation(self.image.value, self.labels.value, self.regions.value)


class TrainWidget(ScrollableContainer):
    """Retrain a model on corrected or drawn labels, then segment with it."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._registry = ModelRegistry()
        self._stop = threading.Event()
        self.new_model: str | None = None
        self.result: FinetuneResult | None = None
        self._build_fields()
        self.finish_layout()
        self.add_pair()
        self.add_pair_button.changed.connect(self.add_pair)
        self.remove_pair_button.changed.connect(self.remove_pair)
        self.train_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.segment_button.changed.connect(self.segment_with_new_model)
        self.bmz_button.changed.connect(self.export_bmz)
        self._shown_lr = self.lr.value
        self.start_model.changed.connect(self._on_start_model_changed)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        on_models_changed(self, TrainWidget._on_models_changed)
        self.reset_choices()
        self._show_start_info()

    def _build_fields(self) -> None:
        """Create the fields: main ones first, the rest in the collapsible Advanced section."""
        self.pairs = Container(labels=False, label="Training")
        self.add_pair_button = PushButton(text="Add pair", tooltip="train on one more image/labels pair")
        self.remove_pair_button = PushButton(text="Remove last pair", enabled=False,
                                             tooltip="remove the last image/labels pair")
        default = self._registry.default_name()
        self.start_model = ComboBox(label="Start from", choices=self._start_choices,
                                    value=("model", default) if default else None,
                                    tooltip="the model to fine-tune (best when it already roughly works on "
                                            "your images), or a new untrained model of a family")
        self.start_info = wrapped_label("family, training data, object size and validation score of the model")
        self.budget_unit = ComboBox(label="Train for", choices=["seconds", "epochs"], value="seconds",
                                    tooltip="limit training by time (seconds, including threshold tuning and "
                                            "saving) or by passes over your pairs (epochs)")
        self.budget = SpinBox(label="Amount", value=int(DEFAULT_TIME_BUDGET), min=1, max=1_000_000,
                              tooltip="how many seconds or epochs to train: more can fit your images better, "
                                      "with diminishing returns")
        self.model_name = LineEdit(label="New model name", value="",
                                   tooltip="the name the new model is saved and listed under "
                                           "(letters, digits and . _ + -)")
        self.overwrite = CheckBox(text="Replace a model of the same name", value=False,
                                  tooltip="replace your own model of that name (built-in models are never replaced)")
        self.train_button = PushButton(text="Train", tooltip="check the pairs, train, tune thresholds and save")
        self.cancel_button = PushButton(text="Cancel (keep best so far)", enabled=False,
                                        tooltip="stop training now; the best weights so far are tuned and "
                                                "saved (click again to stop at once and save nothing)")
        self.segment_button = PushButton(text="Segment current image with new model", enabled=False,
                                         tooltip="segment the selected image layer (or the first training image) "
                                                 "with the model just saved, in the Segment widget")
        self.bmz_button = PushButton(text="Export to BioImage Model Zoo…", enabled=False, tooltip=BMZ_TOOLTIP)
        self.progress = ProgressPanel(label="")
        self.status = Label(value="")
        self.plot = TrainPlot()
        self.plot.setVisible(False)  # shown from the first training on: saves height until then
        plot_box = Container(labels=False, label="")
        plot_box.margins = (0, 0, 0, 0)
        plot_box.native.layout().addWidget(self.plot)
        # advanced
        self.lr = LineEdit(label="Learning rate", value=self._default_lr_text(),
                           tooltip="AdamW learning rate; follows the start model's family default "
                                   "until you change it (empty: that default)")
        self.augment = CheckBox(text="Augment (flips, rotations, scale, intensity, noise)", value=True,
                                tooltip="vary the training patches at random: keep it on unless your images "
                                        "always look exactly alike")
        self.replay = FloatSpinBox(label="Replay share", value=FinetuneSettings.replay, min=0.0, max=0.9, step=0.1,
                                   tooltip="Share of training patches drawn from crops of the start model's own "
                                           "training data, so it keeps working on other kinds of image "
                                           "(0: train on your pairs only)")
        self.freeze_levels = SpinBox(label="Fixed encoder levels", value=FinetuneSettings.freeze_levels, min=0, max=9,
                                     tooltip="Keep this many levels of the start model's feature extractor, from "
                                             "the input down, as they are: faster steps and less forgetting "
                                             "(0: train every weight; 9: the whole encoder)")
        self.val_image = create_widget(annotation=Optional[napari.layers.Image], label="Validation image",  # noqa: UP045
                                       options={"tooltip": "an image kept out of training, to score the model "
                                                           "and tune its thresholds (optional)"})
        self.val_labels = create_widget(annotation=Optional[napari.layers.Labels], label="Validation labels",  # noqa: UP045
                                        options={"tooltip": "the objects of the validation image"})
        self.device = ComboBox(label="Device", choices=["auto", "cpu", "cuda", "mps"], value="auto",
                               tooltip="where training runs; auto: a GPU when there is one, else the CPU")
        self.advanced = Collapsible("Advanced", [self.lr, self.augment, self.replay, self.freeze_levels,
                                                 self.val_image, self.val_labels, self.device],
                                    tooltip="learning rate, augmentation, replay, frozen levels, validation pair "
                                            "and device")
        self.extend([self.pairs, button_row(self.add_pair_button, self.remove_pair_button), self.start_model,
                     self.start_info, self.budget_unit, self.budget, self.model_name, self.overwrite,
                     button_row(self.train_button, self.cancel_button), self.progress, self.status, plot_box,
                     self.segment_button, self.advanced])
        self.insert(self.index(self.segment_button) + 1, self.bmz_button)
        self._job = BackgroundJob("training", self.train_button, self.cancel_button, self.status,
                                  notify_error=lambda msg: show_error(msg), panel=self.progress)

    # ---- pairs and choices -------------------------------------------------
    def _start_choices(self, *_: Any) -> list[tuple[str, tuple[str, str]]]:
        models = [(name, ("model", name)) for name in self._registry.names()]
        return models + [(f"new {fam} model (from scratch)", ("family", fam)) for fam in FAMILIES]

    def _default_lr_text(self) -> str:
        """The start model's family default learning rate, as the field shows it."""
        choice = self.start_model.value
        family = None
        if choice:
            kind, ref = choice
            family = ref if kind == "family" else next((m.family for m in self._registry.list() if m.name == ref), None)
        return f"{family_class(family).finetune_lr:g}" if family else ""

    def _on_start_model_changed(self, *_: Any) -> None:
        # a learning rate the user typed stays; one the widget filled in follows the family
        if self.lr.value.strip() in ("", self._shown_lr):
            self.lr.value = self._shown_lr = self._default_lr_text()
        self._show_start_info()

    def _show_start_info(self) -> None:
        self.bmz_button.enabled = self.bmz_model() is not None
        choice = self.start_model.value
        if not choice:
            self.start_info.value = ""
        elif choice[0] == "model":
            self.start_info.value = describe_name(self._registry, choice[1])
            self.start_info.tooltip = describe_name(self._registry, choice[1], short=False)
        else:
            self.start_info.value = f"an untrained {choice[1]} model: needs more annotations and time"

    def _on_models_changed(self, name: str = "") -> None:
        self.start_model.reset_choices()

    def add_pair(self, *_: Any) -> PairRow:
        row = PairRow(len(self.pairs) + 1)
        self.pairs.append(row)
        self.remove_pair_button.enabled = len(self.pairs) > 1
        self.reset_choices()
        return row

    def remove_pair(self, *_: Any) -> None:
        if len(self.pairs) > 1:
            self.pairs.pop()
        self.remove_pair_button.enabled = len(self.pairs) > 1

    # ---- running -------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._job.running

    def _inputs(self) -> tuple[list[Annotation], list[Annotation], dict]:
        """Everything the worker needs, read from the widgets and layers (GUI thread)."""
        name = self.model_name.value.strip()
        if not name:
            raise SeglabError("type a name for the new model")
        if not self.start_model.value:
            raise SeglabError("choose a model to start from")
        try:
            lr = float(self.lr.value) if self.lr.value.strip() else None
        except ValueError:
            raise SeglabError(f"the learning rate must be a number, e.g. 1e-3, got {self.lr.value!r}") from None
        seconds = self.budget_unit.value == "seconds"
        settings = FinetuneSettings(time_budget=float(self.budget.value) if seconds else None,
                                    epochs=None if seconds else int(self.budget.value), lr=lr,
                                    augment=bool(self.augment.value), replay=float(self.replay.value),
                                    freeze_levels=int(self.freeze_levels.value),
                                    device=self.device.value)
        settings.check()
        annotations = [row.to_annotation() for row in self.pairs]
        if (self.val_image.value is None) != (self.val_labels.value is None):
            raise SeglabError("choose both a validation image and validation labels, or neither")
        validation = [] if self.val_image.value is None else [
            layers_to_annotation(self.val_image.value, self.val_labels.value)]
        kind, ref = self.start_model.value
        kwargs = dict(out=user_models_dir() / name, name=name, settings=settings, overwrite=bool(self.overwrite.value),
                      start=ref if kind == "model" else None, family=ref if kind == "family" else None)
        return annotations, validation, kwargs

    def start(self, *_: Any):
        """Check the inputs and start training in a worker; returns the worker (or None)."""
        if self.running:
            show_info("seglab: training is already running")
            return None
        try:
            annotations, validation, kwargs = self._inputs()
        except SeglabError as e:
            show_error(f"seglab: {e}")
            return None
        self._stop = threading.Event()
        self._name = kwargs["name"]
        self.plot.clear()
        self.plot.setVisible(True)
        self.segment_button.enabled = False
        return self._job.start(_run_training, annotations, validation, kwargs, self._stop,
                               desc=f"seglab: training {self._name}", yielded=self._on_progress,
                               returned=self._on_done, on_cancel=self._request_stop)

    def _request_stop(self) -> None:
        self._stop.set()
        self.status.value = "stopping: saving the best model so far…"

    def cancel(self, *_: Any) -> None:
        """Stop training after the current step; the best weights so far are tuned and saved.
        A second click stops at once and saves nothing."""
        self._job.cancel()

    def _on_progress(self, ev: FinetuneEvent) -> None:
        if ev.stage == "train" and ev.train is not None:
            t = ev.train
            self.plot.add(t.step, t.loss, ev.val_score)
            desc = f"seglab: training {self._name}: step {t.step}, loss {t.loss:.3f}, {t.eta:.0f} s left"
        else:
            if ev.val_score is not None:
                self.plot.add(0, None, ev.val_score)
            desc = {"baseline": "seglab: scoring the start model", "tune": "seglab: tuning thresholds",
                    "save": "seglab: saving the model"}.get(ev.stage, f"seglab: {progress_info(ev).text()}")
        self._job.update(ev.fraction, desc)

    def _on_done(self, result: FinetuneResult) -> None:
        self.result = result
        if result.path is None:
            self.status.value = "cancelled before the first step; nothing saved"
            show_info("seglab: training cancelled before the first step; nothing saved")
            return
        name = result.model.config.name
        self.new_model = name
        self.status.value = f"saved '{name}': {result.steps} steps" + (" (stopped early)" if result.stopped else "")
        EVENTS.models_changed.emit(name)
        self.segment_button.enabled = True
        self.bmz_button.enabled = True
        show_info(f"seglab: model '{name}' saved to {result.path}")

    # ---- using the new model -------------------------------------------------
    def segment_with_new_model(self, *_: Any):
        """Segment the selected image layer (or the first training image) with the new model."""
        if self.new_model is None:
            return None
        layer = self._viewer.layers.selection.active
        if not isinstance(layer, napari.layers.Image):
            layer = self.pairs[0].image.value
        seg = SegmentWidget.for_viewer(self._viewer)
        seg.image.value = layer  # first: choosing the image may propose a model; the new model wins
        seg.model.value = self.new_model
        return seg.start()

    # ---- BioImage Model Zoo ----------------------------------------------------
    def bmz_model(self) -> str | None:
        """The model *Export to BioImage Model Zoo* writes: the one just trained, else the chosen start model."""
        choice = self.start_model.value
        return self.new_model or (choice[1] if choice and choice[0] == "model" else None)

    def export_bmz(self, *_: Any, path: Any = None):
        """Export :meth:`bmz_model` as a bioimage.io package (asks for the file unless ``path``); the worker."""
        name = self.bmz_model()
        if name is None:
            return None
        path = path if path is not None else ask_bmz_path(self.native, name)
        if path is None:
            return None
        self.bmz_button.enabled = False
        self.status.value = f"exporting '{name}' to the BioImage Model Zoo format…"

        def done(message: str) -> None:
            self.status.value = message
            self.bmz_button.enabled = self.bmz_model() is not None

        self._bmz_worker = start_bmz_export(name, path, done)
        return self._bmz_worker
