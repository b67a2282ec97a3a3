"""The Segment widget: pick an image layer and a model, run the core in a worker, add a Labels layer."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

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
from seglab.inference.diameter import parse_diameter
from seglab.models.families import family_class
from seglab.models.registry import ModelRegistry
from seglab.models.storage import read_config
from seglab.outlines import collect_outlines
from seglab.plugin.events import alive, on_models_changed
from seglab.plugin.jobs import BackgroundJob, UserInputProblem
from seglab.plugin.layers import (
    channel_axis_of,
    image_array,
    is_own_unedited,
    output_metadata,
    table_to_features,
)

if TYPE_CHECKING:
    import napari


def _run_segmentation(model_ref: str, data: Any, kwargs: dict):
    """Worker body (runs off the GUI thread): load the model and segment, yielding progress."""
    from seglab.inference.engine import segment_iter

    try:
        model = ModelRegistry().load(model_ref)
        result = yield from segment_iter(model, np.asarray(data), **kwargs)
    except SeglabError as e:  # the user's input: reported as a notification, no traceback
        return UserInputProblem(str(e))
    return model.config.name, result


def _run_estimate(model_ref: str, data: Any, kwargs: dict):
    """Worker body of the *Estimate* button: the objects' diameter, as ``diameter="auto"`` finds it."""
    from seglab.inference.diameter import estimate_image_iter

    try:
        model = ModelRegistry().load(model_ref)
        est = yield from estimate_image_iter(model, np.asarray(data), **kwargs)
    except SeglabError as e:
        return UserInputProblem(str(e))
    return model.config.object_diameter, est


def describe_size(diameter: float | None, factor: float) -> str:
    """'diameter 42.0 px (rescaled x0.39)' for the label under the Diameter field."""
    if diameter is None:
        return "diameter: unknown (not rescaled)"
    return f"diameter {diameter:.1f} px" + (f" (rescaled x{factor:.3g})" if factor != 1.0 else " (not rescaled)")


def parse_channels(text: str) -> list[int] | None:
    """'0, 2' -> [0, 2]; '' -> None."""
    text = text.strip()
    if not text:
        return None
    try:
        return [int(t) for t in text.replace(";", ",").replace(" ", ",").split(",") if t]
    except ValueError:
        raise SeglabError(f"channels must be integers separated by commas, got {text!r}") from None


_LIVE: weakref.WeakSet[SegmentWidget] = weakref.WeakSet()


class SegmentWidget(Container):
    """Segment an image layer with a seglab model."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._registry = ModelRegistry()
        self.output_layer = None
        self.outlines_layer = None
        self.image = create_widget(annotation="napari.layers.Image", label="Image")
        self.model = ComboBox(label="Model", choices=self._model_choices, value=self._registry.default_name())
        self.diameter = LineEdit(label="Diameter", value="auto",
                                 tooltip="object diameter in pixels: the image is rescaled so objects arrive at "
                                         "the model's size; 'auto' estimates it, 'none' turns rescaling off")
        self.estimate_button = PushButton(text="Estimate")
        self.diameter_used = Label(value="")
        self.channel_axis = SpinBox(label="Channel axis", value=-1, min=-1, max=4,
                                    tooltip="axis of a non-RGB multichannel layer holding channels; -1: none")
        self.channels = LineEdit(label="Channels", value="", tooltip="channels to use, e.g. '0' or '0,1' (multichannel only)")
        self.tile_size = SpinBox(label="Tile size", value=1024, min=128, max=8192, step=64)
        self.device = ComboBox(label="Device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.thresholds = Container(labels=True, label="Thresholds")
        self.outlines = CheckBox(text="Add outlines (Shapes layer)", value=False,
                                 tooltip="also add the objects' polygons or boxes as an editable Shapes layer")
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self._job = BackgroundJob("segmentation", self.run_button, self.cancel_button, self.status,
                                  notify_error=lambda msg: show_error(msg))
        self.extend([self.image, self.model, self.diameter, self.estimate_button, self.diameter_used, self.channel_axis, self.channels, self.tile_size, self.device,
                     self.thresholds, self.outlines, self.run_button, self.cancel_button, self.status])
        self.model.changed.connect(self._rebuild_thresholds)
        self.run_button.changed.connect(self.start)
        self.estimate_button.changed.connect(self.estimate)
        self._estimate_worker = None
        self.cancel_button.changed.connect(self.cancel)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        on_models_changed(self, SegmentWidget._on_models_changed)
        self.reset_choices()
        self._rebuild_thresholds()
        _LIVE.add(self)

    @classmethod
    def for_viewer(cls, viewer: napari.viewer.Viewer) -> SegmentWidget:
        """The Segment widget docked in ``viewer``, docking a new one when there is none."""
        for widget in list(_LIVE):
            if widget._viewer is viewer and alive(widget):
                return widget
        widget = cls(viewer)
        viewer.window.add_dock_widget(widget, name="Segment (seglab)")
        widget.reset_choices()  # layer choices are found through the dock's viewer
        return widget

    def _on_models_changed(self, name: str = "") -> None:
        """A model was saved: list it at once."""
        self.model.reset_choices()

    # ---- models and thresholds ------------------------------------------
    def _model_choices(self, *_: Any) -> list[str]:
        return self._registry.names()

    def _rebuild_thresholds(self, *_: Any) -> None:
        self.thresholds.clear()
        name = self.model.value
        if not name:
            return
        try:
            cfg = read_config(self._registry.resolve(name))
            family = family_class(cfg.family)
            values = dict(family.default_thresholds)
            values.update(cfg.thresholds)
        except SeglabError as e:
            show_error(f"seglab: {e}")
            return
        self.outlines.enabled = family.shape_type is not None
        self.outlines.text = f"Add {'boxes' if family.shape_type == 'rectangle' else 'polygons'} (Shapes layer)"
        for key, val in values.items():
            self.thresholds.append(FloatSpinBox(name=key, label=key, value=float(val), min=0.0,
                                                max=1e6 if "area" in key else 1.0, step=0.05))

    def threshold_values(self) -> dict[str, float]:
        return {w.name: float(w.value) for w in self.thresholds}

    # ---- running ----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._job.running

    def start(self, *_: Any):
        """Check the inputs and start segmentation in a worker; returns the worker (or None)."""
        if self.running:
            show_info("seglab: a segmentation is already running")
            return None
        layer = self.image.value
        try:
            if layer is None:
                raise SeglabError("choose an image layer first")
            if not self.model.value:
                raise SeglabError("no model available")
            data = image_array(layer)
            user_axis = None if self.channel_axis.value < 0 else int(self.channel_axis.value)
            ca = channel_axis_of(layer, data.ndim, user_axis)
            kwargs = dict(
                channel_axis=ca,
                channels=parse_channels(self.channels.value),
                tile_size=int(self.tile_size.value),
                device=self.device.value,
                thresholds=self.threshold_values(),
                diameter=parse_diameter(self.diameter.value),
            )
            spatial = data.ndim - (0 if ca is None else 1)
            if spatial < 2 or spatial > 4:
                raise SeglabError(
                    f"layer '{layer.name}' has shape {data.shape}: expected 2 to 4 spatial axes (T, Z, Y, X)"
                    + ("" if ca is not None else " (set 'Channel axis' for multichannel data)")
                )
        except SeglabError as e:
            show_error(f"seglab: {e}")
            return None
        self._source = layer
        return self._job.start(_run_segmentation, self.model.value, data, kwargs,
                               desc=f"seglab: segmenting {layer.name}", yielded=self._on_progress,
                               returned=self._on_done)

    def estimate(self, *_: Any):
        """Estimate the objects' diameter of the chosen layer in a worker; fills the Diameter field."""
        from napari.qt.threading import create_worker

        layer = self.image.value
        if self._estimate_worker is not None:
            return None
        try:
            if layer is None:
                raise SeglabError("choose an image layer first")
            if not self.model.value:
                raise SeglabError("no model available")
            data = image_array(layer)
            user_axis = None if self.channel_axis.value < 0 else int(self.channel_axis.value)
            ca = channel_axis_of(layer, data.ndim, user_axis)
            kwargs = dict(channel_axis=ca, channels=parse_channels(self.channels.value),
                          tile_size=int(self.tile_size.value), device=self.device.value,
                          thresholds=self.threshold_values())
        except SeglabError as e:
            show_error(f"seglab: {e}")
            return None

        def done(value: Any) -> None:
            if isinstance(value, UserInputProblem):
                show_error(f"seglab: {value}")
                return
            model_diameter, est = value
            if model_diameter is None:
                self.diameter_used.value = "this model records no object size: not rescaled"
            elif est.diameter is None:
                self.diameter_used.value = "too few objects found to estimate a diameter"
            else:
                self.diameter.value = f"{est.diameter:.1f}"
                self.diameter_used.value = f"estimated {describe_size(est.diameter, est.factor)}"

        def finished() -> None:
            self._estimate_worker = None
            self.estimate_button.enabled = True

        worker = create_worker(_run_estimate, self.model.value, data, kwargs, _start_thread=False,
                               _connect={"returned": done, "finished": finished,
                                         "errored": lambda e: show_error(f"seglab: estimate failed: {e}")})
        self._estimate_worker = worker
        self.estimate_button.enabled = False
        self.diameter_used.value = "estimating…"
        worker.start()
        return worker

    def cancel(self, *_: Any) -> None:
        self._job.cancel()

    def _on_progress(self, event: Any) -> None:
        self._job.update(event.fraction, f"seglab: {event.stage} {event.done}/{event.total}"
                         + (f" (plane {event.plane + 1}/{event.n_planes})" if event.n_planes > 1 else ""))

    def _on_done(self, value: tuple[str, Any]) -> None:
        model_name, result = value
        src = self._source
        name = f"{src.name} [seglab]"
        meta = output_metadata(src.name, model_name, result.thresholds, result.labels)
        features = table_to_features(result.table)
        target = None
        for lyr in self._viewer.layers:
            if lyr.__class__.__name__ == "Labels" and is_own_unedited(lyr, src.name):
                target = lyr
                break
        if target is not None:
            target.data = result.labels
            target.metadata.update(meta)
            target.features = features
            target.scale, target.translate = src.scale, src.translate
        else:
            target = self._viewer.add_labels(result.labels, name=name, scale=src.scale, translate=src.translate,
                                             metadata=meta, features=features)
        self.output_layer = target
        if self.outlines.value and self.outlines.enabled:
            self.outlines_layer = self._put_outlines(result, src.name, model_name, target)
        self.status.value = f"{result.n_objects} objects ({model_name})"
        self.diameter_used.value = describe_size(result.diameter, result.scale_factor)
        show_info(f"seglab: {result.n_objects} objects in '{src.name}'")

    def _put_outlines(self, result: Any, source: str, model_name: str, labels_layer: Any) -> Any:
        """Add the objects' outlines as a Shapes layer, replacing only this widget's own unedited one."""
        from napari.layers import Shapes

        outlines = collect_outlines(result)
        if outlines is None:
            return None
        old = next((lyr for lyr in self._viewer.layers
                    if lyr.__class__.__name__ == "Shapes" and is_own_unedited(lyr, source, "outlines")), None)
        layer = Shapes(
            outlines.data, ndim=result.labels.ndim, shape_type=outlines.shape_type,
            features=outlines.features, name=f"{source} [seglab outlines]",
            edge_color="yellow", face_color="transparent", edge_width=1,
            scale=labels_layer.scale, translate=labels_layer.translate,
        )
        layer.metadata.update(output_metadata(source, model_name, result.thresholds, list(layer.data), "outlines"))
        if old is not None:
            index = self._viewer.layers.index(old)
            self._viewer.layers.remove(old)
            self._viewer.layers.insert(index, layer)
        else:
            self._viewer.add_layer(layer)
        return layer
