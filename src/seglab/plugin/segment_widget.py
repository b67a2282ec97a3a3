"""The Segment widget: pick an image layer and a model, run the core in a worker, add a Labels layer.

Layout: the main fields, then a collapsible "Advanced" section (tile size, batch size, device,
mixed precision, thresholds), all in a scroll area so that it fits a 1080p screen beside the
Train widget. Helpers live in small modules: progress panel, model information line, outline
layers, object-table refresh, docking.
"""

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
from napari.utils.notifications import show_error, show_info, show_warning

from seglab.errors import SeglabError
from seglab.inference.appearance import rgb_appearance
from seglab.inference.denoise import parse_denoise
from seglab.inference.diameter import parse_diameter
from seglab.models.families import family_class
from seglab.models.registry import ModelRegistry
from seglab.models.storage import read_config
from seglab.outlines import collect_outlines
from seglab.plugin.docking import docked_widget, same_viewer
from seglab.plugin.events import alive, on_models_changed
from seglab.plugin.jobs import BackgroundJob, UserInputProblem, new_worker
from seglab.plugin.layers import (
    OWNER_KEY,
    OwnedLayers,
    ambiguous_axes_note,
    apply_geometry,
    channel_axis_of,
    image_array,
    output_metadata,
    rgb_preview,
    spatial_geometry,
    table_to_features,
)
from seglab.plugin.model_info import describe_name, layer_is_rgb, rgb_proposal, supports_augment
from seglab.plugin.object_table import keep_table_fresh, layer_calibration, measured_features
from seglab.plugin.outline_layers import new_run_id, tag_run, update_outlines
from seglab.plugin.progress_panel import ProgressPanel, progress_info
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


def _run_segmentation(model_ref: str, data: Any, kwargs: dict):
    """Worker body (runs off the GUI thread): load the model, segment and measure the objects
    (the layer's features; ``kwargs["calibration"]``: pixel size and unit), yielding progress.
    Lazy (dask, zarr) data is segmented block by block into a zarr store and not measured."""
    from seglab.inference.engine import ProgressEvent, segment_iter
    from seglab.inference.lazy import is_lazy

    kwargs = dict(kwargs)
    calibration = kwargs.pop("calibration", None)
    link_axis = kwargs.pop("link_axis", None)
    try:
        model = ModelRegistry().load(model_ref)
        if is_lazy(data):  # dask / zarr layers: block by block into a zarr store, never whole
            from seglab.plugin.lazy_layers import segment_lazily_iter

            if link_axis is not None:
                raise SeglabError("linking objects across Z is not available for layers segmented out of core "
                                  "(dask or zarr data); untick 'Link objects across Z'")
            result = yield from segment_lazily_iter(model, data, kwargs)
            # measuring would read every pixel: the object table only (Measurements > Measure on demand)
            return model.config.name, result, table_to_features(result.table)
        data = np.asarray(data)
        result = yield from segment_iter(model, data, **kwargs)
        if link_axis is not None:  # one id per object through the Z stack; one feature row per object
            from seglab.linking import link_segmentation, one_row_per_object

            result = link_segmentation(result, axis=link_axis)
            result.table = one_row_per_object(result.table)
        yield ProgressEvent("measure", 0, 0)  # not counted: the bar stays full, the stage says "measure"
        features = measured_features(result.labels, data, kwargs.get("channel_axis"), calibration,
                                     table_to_features(result.table))
    except SeglabError as e:  # the user's input: reported as a notification, no traceback
        return UserInputProblem(str(e))
    return model.config.name, result, features


def _run_estimate(model_ref: str, data: Any, kwargs: dict):
    """Worker body of the *Estimate* button: the objects' diameter, as ``diameter="auto"`` finds it.
    Lazy (dask, zarr) data is looked at as the out-of-core run would (its sampled planes, read in
    bands), never loaded whole."""
    from seglab.inference.diameter import estimate_image_iter
    from seglab.inference.lazy import is_lazy

    try:
        model = ModelRegistry().load(model_ref)
        if is_lazy(data):
            from seglab.plugin.lazy_layers import estimate_lazily_iter

            est = yield from estimate_lazily_iter(model, data, kwargs)
        else:
            est = yield from estimate_image_iter(model, np.asarray(data), **kwargs)
    except SeglabError as e:
        return UserInputProblem(str(e))
    return model.config.object_diameter, est


def describe_run(result: Any) -> str:
    """The label under the Diameter field after a run: its size (:func:`describe_size`) and, on a
    second line, the smoothing noisy planes got (low light) and the planes left blank (empty views)."""
    from seglab.inference.denoise import describe_planes

    text = describe_size(result.diameter, result.scale_factor, result.pixel_size)
    smoothing = describe_planes(getattr(result, "smoothing", []))
    return f"{text}\n{smoothing}" if smoothing else text


def describe_size(diameter: float | None, factor: float, pixel_size: float | None = None) -> str:
    """'diameter 42.0 px (rescaled x0.39)' for the label under the Diameter field (with the pixel
    size when ``auto`` took the diameter from the layer's calibration)."""
    if diameter is None:
        return "diameter: unknown (not rescaled)"
    source = "" if pixel_size is None else f" from the pixel size {pixel_size:.3g} µm"
    return f"diameter {diameter:.1f} px{source}" + (f" (rescaled x{factor:.3g})" if factor != 1.0 else " (not rescaled)")


def _calibration(layer: Any, channel_axis: int | None) -> dict[str, Any]:
    """The layer's pixel size and unit (:func:`layer_calibration`); empty when it has none."""
    try:
        return layer_calibration(spatial_geometry(layer, channel_axis))
    except ValueError:  # a channel axis out of range: the engine says so in one message
        return {}


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


class SegmentWidget(ScrollableContainer):
    """Segment an image layer with a seglab model."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._registry = ModelRegistry()
        self.output_layer = None
        self.outlines_layer = None
        self._source = None
        self._want_outlines = False  # the run's choice of outlines, read when it started
        # the output layers this widget made, by identity: the only ones a new run may update in place
        self._owned = OwnedLayers()
        self._live_layer = None  # the Labels layer a lazy run fills as it goes
        self._temp_stores: dict[int, Any] = {}  # id(layer) -> finalizer removing its temporary store
        self._source_channel_axis: int | None = None
        self._setting_model = False  # True while the widget itself changes the model choice
        # RGB layers already settled -> (model proposed, reason), (None, "") when nothing was proposed
        self._proposals: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._outlines_wanted = False  # the user's last choice, restored for models that have outlines
        self._augment_wanted = False  # likewise for test-time augmentation
        self._build_fields()
        self.finish_layout()
        self.model.changed.connect(self._on_model_changed)
        self.image.changed.connect(self._on_image_changed)
        self.image.changed.connect(self._update_link_option)
        self.channel_axis.changed.connect(self._update_link_option)
        self.outlines.changed.connect(self._on_outlines_toggled)
        self.augment.changed.connect(self._on_augment_toggled)
        self.run_button.changed.connect(self.start)
        self.estimate_button.changed.connect(self.estimate)
        self._estimate_worker = None
        self.cancel_button.changed.connect(self.cancel)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        on_models_changed(self, SegmentWidget._on_models_changed)
        self.reset_choices()
        self._on_model_changed()
        self._on_image_changed()
        self._update_link_option()
        _LIVE.add(self)

    def _build_fields(self) -> None:
        """Create the fields: main ones first, the rest in the collapsible Advanced section."""
        self.image = create_widget(annotation="napari.layers.Image", label="Image",
                                   options={"tooltip": "the image layer to segment"})
        self.model = ComboBox(label="Model", choices=self._model_choices, value=self._registry.default_name(),
                              tooltip="the model to segment with: built-in models and your own trained ones")
        self.model_info = wrapped_label("family, training data, object size and validation score of the model")
        self.proposal = wrapped_label("why this model was chosen for you")
        self.proposal.visible = False
        self.diameter = LineEdit(label="Diameter", value="auto",
                                 tooltip="object diameter in pixels: the image is rescaled so that objects arrive at "
                                         "the model's size; 'auto' estimates it (or, for a model that records its "
                                         "training pixel size, takes it from the layer's scale in µm), 'none' "
                                         "turns rescaling off")
        self.estimate_button = PushButton(text="Estimate",
                                          tooltip="estimate the objects' diameter in the chosen image with the model "
                                                  "(fills the Diameter field)")
        self.diameter_used = Label(value="")
        self.diameter_used.tooltip = ("the object diameter used in the last run or estimate, the rescale factor, "
                                      "and any smoothing of a noisy image")
        self.channel_axis = SpinBox(label="Channel axis", value=-1, min=-1, max=4,
                                    tooltip="axis of a non-RGB multichannel layer holding channels; -1: none")
        self.channels = LineEdit(label="Channels", value="",
                                 tooltip="channels of a multichannel image to use, e.g. '0' or '0,1' "
                                         "(empty: all of them)")
        self.outlines = CheckBox(text="Add outlines (Shapes layer)", value=False,
                                 tooltip="also add the objects' polygons or boxes as an editable Shapes layer "
                                         "(models that give outlines only)")
        self.augment = augment_choice()
        self.run_button = PushButton(text="Segment", tooltip="segment the image with the model")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip="stop the running segmentation now; nothing is added")
        self.progress = ProgressPanel(label="")
        self.status = Label(value="")
        # advanced
        self.tile_size = SpinBox(label="Tile size", value=2048, min=128, max=8192, step=64,
                                 tooltip="images are segmented in tiles of this many pixels a side: smaller "
                                         "tiles need less memory, larger ones are a little faster")
        self.batch_size = SpinBox(label="Batch size", value=4, min=1, max=64,
                                  tooltip="tiles the network processes at once: lower it if memory runs out")
        self.device = ComboBox(label="Device", choices=["auto", "cpu", "cuda", "mps"], value="auto",
                               tooltip="where the network runs; auto: a GPU when there is one, else the CPU")
        self.amp = CheckBox(text="Mixed precision", value=True,
                            tooltip="run the network in 16-bit precision where the device supports it: "
                                    "faster, same results to within rounding; untick if results look wrong")
        self.denoise = smoothing_choice()
        self.link_z = CheckBox(text="Link objects across Z", value=False, enabled=False,
                               tooltip="Z stacks: give an object one id through the stack, linking objects of "
                                       "consecutive planes that overlap (IoU >= 0.3)")
        self.thresholds = Container(labels=True, label="Thresholds")
        self.advanced = Collapsible("Advanced", [self.tile_size, self.batch_size, self.device, self.amp,
                                                 self.denoise, self.link_z, self.thresholds],
                                    tooltip="tile size, batch size, device, precision, smoothing of noisy images "
                                            "and the model's thresholds")
        channel_row = Container(layout="horizontal", labels=True, label="Channel axis",
                                widgets=[self.channel_axis, self.channels])
        channel_row.margins = (0, 0, 0, 0)
        self.channel_axis.label = ""  # the row's label names it
        diameter_row = Container(layout="horizontal", labels=True, label="Diameter",
                                 widgets=[self.diameter, self.estimate_button])
        diameter_row.margins = (0, 0, 0, 0)
        self.diameter.label = ""  # the row's label names it
        self.extend([self.image, self.model, self.model_info, self.proposal, diameter_row, self.diameter_used,
                     channel_row,
                     self.outlines, self.augment, button_row(self.run_button, self.cancel_button), self.progress, self.status,
                     self.advanced])
        self._job = BackgroundJob("segmentation", self.run_button, self.cancel_button, self.status,
                                  notify_error=lambda msg: show_error(msg), panel=self.progress)

    @classmethod
    def for_viewer(cls, viewer: napari.viewer.Viewer) -> SegmentWidget:
        """The Segment widget docked in ``viewer``, docking a new one when there is none.

        Widgets hold different proxies of the same viewer: the docks and the viewers behind
        the proxies are compared, never the proxies.
        """
        found = docked_widget(viewer, cls)
        if found is not None:
            return found
        for widget in list(_LIVE):
            if alive(widget) and same_viewer(widget._viewer, viewer) and widget.native.parent() is not None:
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

    def _on_model_changed(self, *_: Any) -> None:
        self._rebuild_thresholds()
        fill_threshold_tooltips(self.thresholds)
        self._update_outlines_option()
        self._update_augment_option()
        name = self.model.value
        self.model_info.value = describe_name(self._registry, name) if name else "no model available"
        self.model_info.tooltip = describe_name(self._registry, name, short=False) if name else ""
        if not self._setting_model:  # the user's own choice: it wins over any proposal
            self._show_proposal("")
            layer = self.image.value
            if layer is not None and layer_is_rgb(layer):
                self._proposals.setdefault(layer, (None, ""))

    def _update_outlines_option(self) -> None:
        """Outlines only for families that give them; the user's wish comes back with such a model."""
        try:
            shape_type = family_class(read_config(self._registry.resolve(self.model.value)).family).shape_type
        except (SeglabError, TypeError):
            shape_type = None
        wanted = self._outlines_wanted
        self.outlines.enabled = shape_type is not None
        self.outlines.value = wanted and shape_type is not None
        self._outlines_wanted = wanted
        self.outlines.text = (f"Add {'boxes' if shape_type == 'rectangle' else 'polygons'} (Shapes layer)"
                              if shape_type else "Add outlines (this model gives labels only)")

    def _update_augment_option(self) -> None:
        """Test-time augmentation only for families whose maps turn with the image; the user's
        wish comes back with such a model."""
        wanted = self._augment_wanted
        show_augment_support(self.augment, supports_augment(self._registry, self.model.value), wanted)
        self._augment_wanted = wanted

    def _on_augment_toggled(self, value: bool) -> None:
        if self.augment.enabled:
            self._augment_wanted = bool(value)

    def _on_outlines_toggled(self, value: bool) -> None:
        if self.outlines.enabled:
            self._outlines_wanted = bool(value)

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
        for key, val in values.items():
            spec = family.threshold_specs.get(key)
            if spec is None:  # a config threshold the family does not declare: shown, not range-checked
                field = FloatSpinBox(name=key, label=key, value=float(val), min=-1e9, max=1e9, step=0.05)
            else:
                # the spin box's range is the family's; a finite stand-in for an open end
                low, high = max(spec.low, -1e9), min(spec.high, 1e9)
                decimals = max(2, len(f"{spec.step:g}".partition(".")[2]))
                field = FloatSpinBox(name=key, label=key, value=min(max(float(val), low), high), min=low, max=high,
                                     step=spec.step, tooltip=f"{spec.help} (range {spec.low:g} to {spec.high:g})")
                field.native.setDecimals(decimals)
            self.thresholds.append(field)

    def threshold_values(self) -> dict[str, float]:
        return {w.name: float(w.value) for w in self.thresholds}

    # ---- RGB images: propose the model for what the layer looks like, once per layer ------
    def _on_image_changed(self, *_: Any) -> None:
        layer = self.image.value
        if layer is None or not layer_is_rgb(layer):
            self._show_proposal("")
            return
        if layer in self._proposals:  # shown again while its proposal is still the choice
            name, text = self._proposals[layer]
            self._show_proposal(text if name == self.model.value else "")
            return
        self._proposals[layer] = (None, "")
        try:
            appearance = rgb_appearance(rgb_preview(layer))
        except Exception as e:  # noqa: BLE001 - a layer that cannot be read is told at Segment
            show_warning(f"seglab: could not look at '{layer.name}' to propose a model: {e}")
            self._show_proposal("")
            return
        proposal = rgb_proposal(self._registry, self.model.value, appearance)
        if proposal is None:
            self._show_proposal("")
            return
        name, reason = proposal
        self._proposals[layer] = (name, reason)
        if name != self.model.value:
            self._setting_model = True
            try:
                self.model.value = name
            finally:
                self._setting_model = False
        self._show_proposal(reason)

    def link_axis(self, layer: Any = None) -> int | None:
        """The labels' stack axis that *Link objects across Z* links along (None: no Z stack)."""
        from seglab.linking import stack_letters, z_axis

        layer = self.image.value if layer is None else layer
        if layer is None:
            return None
        ndim = len(layer.data.shape) if not getattr(layer, "multiscale", False) else len(layer.data[0].shape)
        ca = channel_axis_of(layer, ndim, None if self.channel_axis.value < 0 else int(self.channel_axis.value))
        keep = [i for i in range(ndim) if ca is None or i != ca % ndim][:-2]
        names = list(getattr(layer, "axis_labels", ()) or ())
        names = [names[i] if i < len(names) else "" for i in keep]
        return z_axis(stack_letters(names))

    def _update_link_option(self, *_: Any) -> None:
        self.link_z.enabled = self.link_axis() is not None

    def _show_proposal(self, text: str) -> None:
        self.proposal.value = text
        self.proposal.visible = bool(text)

    # ---- running ----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._job.running

    def _run_inputs(self, layer: Any) -> tuple[Any, int | None, dict[str, Any]]:
        """The layer's data, its channel axis and the engine's keyword arguments from the fields;
        a :class:`SeglabError` for what cannot be segmented."""
        if layer is None:
            raise SeglabError("choose an image layer first")
        if not self.model.value:
            raise SeglabError("no model available")
        data = image_array(layer)
        user_axis = None if self.channel_axis.value < 0 else int(self.channel_axis.value)
        ca = channel_axis_of(layer, data.ndim, user_axis)
        spatial = data.ndim - (0 if ca is None else 1)
        if spatial < 2 or spatial > 4:
            raise SeglabError(
                f"layer '{layer.name}' has shape {data.shape}: expected 2 to 4 spatial axes (T, Z, Y, X)"
                + ("" if ca is not None else " (set 'Channel axis' for multichannel data)")
            )
        kwargs = dict(
            channel_axis=ca,
            rgb=bool(getattr(layer, "rgb", False)),
            channels=parse_channels(self.channels.value),
            tile_size=int(self.tile_size.value),
            batch_size=int(self.batch_size.value),
            device=self.device.value,
            amp=bool(self.amp.value),
            thresholds=self.threshold_values(),
            denoise=parse_denoise(self.denoise.value),
        )
        from seglab.io.images import pixel_size_um

        cal = _calibration(layer, ca)  # a calibrated layer: "auto" may rescale by its pixel size
        kwargs["pixel_size"] = pixel_size_um(cal.get("pixel_size"), cal.get("unit"))
        return data, ca, kwargs

    def start(self, *_: Any):
        """Check the inputs and start segmentation in a worker; returns the worker (or None)."""
        if self.running:
            show_info("seglab: a segmentation is already running")
            return None
        layer = self.image.value
        try:
            data, ca, kwargs = self._run_inputs(layer)
            kwargs["diameter"] = parse_diameter(self.diameter.value)
            kwargs["link_axis"] = self.link_axis(layer) if self.link_z.value and self.link_z.enabled else None
            kwargs["augment"] = bool(self.augment.value and self.augment.enabled)
        except SeglabError as e:
            show_error(f"seglab: {e}")
            return None
        self._source, self._source_channel_axis = layer, ca
        # the choices of this run, read now: changing the model while it runs must not change them
        self._want_outlines = bool(self.outlines.value and self.outlines.enabled)
        if (note := ambiguous_axes_note(layer, data.shape, ca)) is not None:
            show_info(note)
        kwargs["calibration"] = _calibration(layer, ca)
        return self._job.start(_run_segmentation, self.model.value, data, kwargs,
                               desc=f"seglab: segmenting {layer.name}", yielded=self._on_progress,
                               returned=self._on_result)

    def estimate(self, *_: Any):
        """Estimate the objects' diameter of the chosen layer in a worker; fills the Diameter field."""
        if self._estimate_worker is not None:
            return None
        try:
            data, _, kwargs = self._run_inputs(self.image.value)
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
                what = "from the layer's calibration:" if est.pixel_size is not None else "estimated"
                self.diameter_used.value = f"{what} {describe_size(est.diameter, est.factor, est.pixel_size)}"

        def finished() -> None:
            self._estimate_worker = None
            self.estimate_button.enabled = True

        worker = new_worker(_run_estimate, self.model.value, data, kwargs,
                            connect={"returned": done, "finished": finished,
                                     "errored": lambda e: show_error(f"seglab: estimate failed: {e}")})
        self._estimate_worker = worker
        self.estimate_button.enabled = False
        self.diameter_used.value = "estimating…"
        worker.start()
        return worker

    def cancel(self, *_: Any) -> None:
        """Stop now: the widget is idle at once, the result is discarded, the run's memory freed."""
        self._job.cancel()
        self._source = None
        if self._live_layer is not None and self._live_layer in self._viewer.layers:
            self._viewer.layers.remove(self._live_layer)  # its store is removed with the run
        self._live_layer = None

    def _on_layer_removed(self, event: Any) -> None:
        """A lazy result's layer left the viewer: its temporary store goes with it."""
        removal = self._temp_stores.pop(id(getattr(event, "value", None)), None)
        if removal is not None:
            removal()

    def _on_progress(self, event: Any) -> None:
        live = getattr(event, "labels", None)
        if live is not None and self._source is not None:  # a lazy run's store exists: show it filling
            from seglab.plugin.lazy_layers import LAZY_ROLE

            src = self._source
            self._live_layer = self._viewer.add_labels(
                live, name=f"{src.name} [seglab]", **spatial_geometry(src, self._source_channel_axis),
                metadata={OWNER_KEY: {"source": src.name, "model": self.model.value, "role": LAZY_ROLE}})
        elif self._live_layer is not None and event.stage == "block":
            from seglab.inference.lazy import WrittenEvent

            if isinstance(event, WrittenEvent):
                self._live_layer.refresh()  # a block is in the store
        info = progress_info(event)  # any stage the core reports, shown by name
        self._job.update(info.fraction or 0.0, f"seglab: {info.text()}")

    def _show_lazy_result(self, src: Any, model_name: str, result: Any) -> None:
        from seglab.plugin.lazy_layers import LAZY_ROLE

        target, self._live_layer = self._live_layer, None
        meta = {OWNER_KEY: {"source": src.name, "model": model_name, "thresholds": dict(result.thresholds),
                            "role": LAZY_ROLE, "path": str(result.path)}}
        features = table_to_features(result.table)
        if target is None or target not in self._viewer.layers:
            target = self._viewer.add_labels(result.labels, name=f"{src.name} [seglab]", metadata=meta,
                                             features=features, **spatial_geometry(src, self._source_channel_axis))
        else:
            target.data = result.labels
            target.metadata.update(meta)
            target.features = features
        self.output_layer = target
        from seglab.plugin.lazy_layers import remove_with_layer

        removal = remove_with_layer(target, result.path)
        where, self.status.tooltip = "labels in a zarr store", f"The labels are in {result.path}"
        if removal is not None:  # the line stays short (the dock cuts it); the tooltip says the rest
            self._temp_stores[id(target)] = removal
            where = "temporary store"
            self.status.tooltip = (f"The labels are in a temporary store ({result.path}), removed with the layer. "
                                   "File > Save Selected Layers (OME-Zarr labels) keeps them.")
        self.status.value = f"{result.n_objects} objects ({model_name}; {where})"
        self.diameter_used.value = describe_run(result)
        show_info(f"seglab: {result.n_objects} objects in '{src.name}' (out of core)")

    def _on_result(self, value: tuple[str, Any]) -> None:
        """Show the result; any failure ends in the status 'failed' and one message, never 'running…'."""
        try:
            self._on_done(value)
        except Exception as e:  # noqa: BLE001 - a GUI handler must not leave the widget stuck
            self.status.value = "failed"
            show_error(f"seglab: could not show the result: {type(e).__name__}: {e}")

    def _on_done(self, value: tuple) -> None:
        model_name, result, *measured = value
        src, self._source = self._source, None
        if src is None:
            return
        if hasattr(result, "path"):  # out of core: the lazy layer takes the finished store
            self._show_lazy_result(src, model_name, result)
            return
        geometry = spatial_geometry(src, self._source_channel_axis)
        name = f"{src.name} [seglab]"
        meta = output_metadata(src.name, model_name, result.thresholds, result.labels)
        features = measured[0] if measured else table_to_features(result.table)
        # only the very layer this widget made for this very image layer, under the name it gave
        # it and unedited, is updated in place; renamed, duplicated, edited or other layers never
        target = next((lyr for lyr in self._viewer.layers
                       if lyr.__class__.__name__ == "Labels" and self._owned.reusable(lyr, src, "labels")), None)
        if target is not None:
            target.data = result.labels
            target.metadata.update(meta)
            target.features = features
            apply_geometry(target, geometry)
        else:
            target = self._viewer.add_labels(result.labels, name=name, metadata=meta, features=features, **geometry)
            self._owned.add(target, src, "labels")  # under the name napari gave it (" [1]" when taken)
        keep_table_fresh(target).discard_pending()  # the plugin's own update is not a user's edit
        tag_run(target, new_run_id())
        self.output_layer = target
        self.outlines_layer = update_outlines(
            self._viewer, collect_outlines(result) if self._want_outlines else None, src, model_name,
            result.thresholds, target, result.labels.ndim, self._owned)
        self.status.value = f"{result.n_objects} objects ({model_name})"
        self.status.tooltip = None  # (an out-of-core result's said where its store was)
        self.diameter_used.value = describe_run(result)
        show_info(f"seglab: {result.n_objects} objects in '{src.name}'")
