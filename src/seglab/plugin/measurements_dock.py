"""The *Measurements* dock: the selected labels layer's features as a sortable table.

Clicking a row selects the object (``layer.selected_label``), moves to its plane in stacks and
centres the view on it; picking a label in the layer selects its row. *Measure* recomputes
every measurement of the current labels (after edits: edited objects show empty cells until
then) with the intensities of the chosen image layer, in a background thread. *Save
measurements...* writes the table as CSV (the file dialog asks before replacing a file; the
write is atomic).

napari's own *Features table widget* (napari_builtins, napari >= 0.6) is not used: for labels
it treats a row's position as the label id (seglab's features hold the id in ``index``), does
not centre or change plane, and is not public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from seglab.errors import SeglabError
from seglab.plugin.layers import OWNER_KEY, checksum
from seglab.plugin.object_table import remeasured, set_features

if TYPE_CHECKING:
    import napari

NO_IMAGE = "(no intensities)"
SORT_ROLE = Qt.ItemDataRole.UserRole


def _exact_integers(values: np.ndarray) -> np.ndarray:
    """Whole numbers stored as floats (integer columns of unchanged objects after an edit, next
    to NaN for edited ones) as Python ints, so the CSV keeps every digit (floats get 6)."""
    if values.dtype.kind != "f":
        return values
    finite = np.isfinite(values)
    if not finite.any() or np.any(values[finite] != np.round(values[finite])) or np.abs(values[finite]).max() >= 2**53:
        return values
    return np.array([int(v) if ok else np.nan for v, ok in zip(values, finite)], dtype=object)


class FeaturesModel(QAbstractTableModel):
    """A read-only view of a DataFrame; numbers sort as numbers (``SORT_ROLE``), NaN last."""

    def __init__(self) -> None:
        super().__init__()
        self.df = pd.DataFrame()

    def set_frame(self, df: pd.DataFrame) -> None:
        self.beginResetModel()
        self.df = df.reset_index(drop=True)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else len(self.df)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.df.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            name = str(self.df.columns[section])
            return "label" if name == "index" else name
        return str(section + 1)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        value = self.df.iat[index.row(), index.column()]
        if role == SORT_ROLE:
            if isinstance(value, (bool, np.bool_)):
                return int(value)
            if isinstance(value, (int, float, np.integer, np.floating)):
                v = float(value)
                return np.inf if np.isnan(v) else v
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.DisplayRole:
            if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
                return ""
            if isinstance(value, (float, np.floating)):
                return f"{float(value):.4g}"
            return str(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(value, (int, float, np.number)):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class MeasurementsDock(QWidget):
    """Measurements of the active labels layer: table, Measure, Save."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.layer = None
        self._worker = None
        self._selecting = False
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.image = QComboBox()
        self.image.setToolTip("image layer whose intensities are measured (every channel, as shown: not normalised)")
        self.measure_button = QPushButton("Measure")
        self.measure_button.setToolTip("measure every object of the labels now (after edits: fills the empty cells)")
        self.save_button = QPushButton("Save measurements...")
        self.save_button.setToolTip("write the table as CSV (one row per object)")
        self.model = FeaturesModel()
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        row = QHBoxLayout()
        row.addWidget(QLabel("Image"))
        row.addWidget(self.image, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.info)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        self.table.selectionModel().selectionChanged.connect(self._on_row_selected)
        self.measure_button.clicked.connect(self.measure)
        self.save_button.clicked.connect(self._on_save_clicked)
        viewer.layers.selection.events.active.connect(self._on_active_layer)
        viewer.layers.events.inserted.connect(self._fill_images)
        viewer.layers.events.removed.connect(self._on_layers_removed)
        self._on_active_layer()

    # ---- which layer ---------------------------------------------------------
    def _on_active_layer(self, *_: Any) -> None:
        active = self._viewer.layers.selection.active
        if active is not None and active.__class__.__name__ == "Labels":
            self.set_layer(active)
        elif self.layer is None:
            self._show()

    def _on_layers_removed(self, *_: Any) -> None:
        if self.layer is not None and self.layer not in self._viewer.layers:
            self.set_layer(None)
        self._fill_images()

    def set_layer(self, layer: Any) -> None:
        """Show ``layer``'s features (None: nothing)."""
        if self.layer is not None:
            for ev, cb in self._connections():
                ev.disconnect(cb)
        self.layer = layer
        if layer is not None:
            for ev, cb in self._connections():
                ev.connect(cb)
        self._fill_images()
        self._show()

    def _connections(self) -> list:
        return [(self.layer.events.features, self._show), (self.layer.events.selected_label, self._on_label_picked),
                (self.layer.events.name, self._show)]

    def _fill_images(self, *_: Any) -> None:
        """Image layers with the labels' spatial shape; default: the layer the labels came from."""
        current = self.image.currentText()
        names = [NO_IMAGE] + [lyr.name for lyr in self._viewer.layers if lyr.__class__.__name__ == "Image"]
        self.image.blockSignals(True)
        self.image.clear()
        self.image.addItems(names)
        source = None
        if self.layer is not None:
            meta = self.layer.metadata.get(OWNER_KEY)
            source = meta.get("source") if isinstance(meta, dict) else None
        pick = current if current in names and current != NO_IMAGE else (source if source in names else None)
        self.image.setCurrentText(pick or (names[1] if len(names) == 2 else NO_IMAGE))
        self.image.blockSignals(False)

    def _fit_headers(self) -> None:
        """Columns at least as wide as their names (cheap for 10,000 rows: the header text only)."""
        header = self.table.horizontalHeader()
        metrics = header.fontMetrics()
        for col in range(self.model.columnCount()):
            name = str(self.model.headerData(col, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole))
            header.resizeSection(col, max(header.sectionSize(col), metrics.horizontalAdvance(name) + 24))

    def _show(self, *_: Any) -> None:
        layer = self.layer
        if layer is None:
            self.model.set_frame(pd.DataFrame())
            self.info.setText("Select a labels layer to see its objects' measurements.")
            return
        df = pd.DataFrame(layer.features)
        self.model.set_frame(df)
        self._fit_headers()
        stale = int(df["edited"].sum()) if "edited" in df.columns and "perimeter" in df.columns else 0
        text = f"'{layer.name}': {len(df)} objects"
        if "perimeter" not in df.columns:
            text += " (click Measure for shape and intensity measurements)"
        elif stale:
            text += f" ({stale} edited: click Measure to measure them again)"
        self.info.setText(text)
        self._on_label_picked()

    # ---- rows and objects ----------------------------------------------------
    def row_of(self, label: int) -> int | None:
        """The table row (as sorted now) of object ``label``."""
        df = self.model.df
        if "index" not in df.columns:
            return None
        hits = np.flatnonzero(df["index"].to_numpy() == label)
        if not hits.size:
            return None
        return self.proxy.mapFromSource(self.model.index(int(hits[0]), 0)).row()

    def select_row(self, row: int) -> None:
        """Select row ``row`` of the table as shown (what a click does)."""
        self.table.selectRow(row)

    def _on_row_selected(self, *_: Any) -> None:
        if self._selecting or self.layer is None:
            return
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        source_row = self.proxy.mapToSource(rows[0]).row()
        record = self.model.df.iloc[source_row]
        if "index" in record:
            self.go_to(record)

    def go_to(self, record: pd.Series) -> None:
        """Select the object of ``record`` in the layer, show its plane and centre the view on it."""
        layer = self.layer
        label = int(record["index"])
        self._selecting = True
        try:
            layer.selected_label = label
        finally:
            self._selecting = False
        if "centroid_y" not in record or not np.isfinite(record["centroid_y"]):
            return
        lead = tuple(layer.data.shape[:-2]) if not getattr(layer, "multiscale", False) else tuple(layer.data[0].shape[:-2])
        plane = int(record["plane"]) if "plane" in record and np.isfinite(record["plane"]) else 0
        idx = np.unravel_index(plane, lead) if lead else ()
        world = np.asarray(layer.data_to_world([*idx, float(record["centroid_y"]), float(record["centroid_x"])]))
        offset = self._viewer.dims.ndim - len(world)
        for i in range(len(lead)):
            self._viewer.dims.set_point(offset + i, float(world[i]))
        camera = getattr(self._viewer, "scene", self._viewer).camera  # napari 0.9: viewer.scene.camera
        camera.center = tuple(float(v) for v in world[-2:])

    def _on_label_picked(self, *_: Any) -> None:
        """The user picked a label in the layer: select its row (no moving)."""
        if self._selecting or self.layer is None:
            return
        row = self.row_of(int(self.layer.selected_label))
        self._selecting = True
        try:
            if row is None:
                self.table.clearSelection()
            else:
                self.table.selectRow(row)
        finally:
            self._selecting = False

    # ---- measuring and saving --------------------------------------------------
    def image_layer(self) -> Any:
        name = self.image.currentText()
        return None if name in ("", NO_IMAGE) or name not in self._viewer.layers else self._viewer.layers[name]

    def measure(self, *_: Any):
        """Measure the layer's objects again in a worker; returns the worker (None when nothing to do)."""
        from seglab.plugin.jobs import new_worker

        if self.layer is None or self._worker is not None:
            return None
        layer, image_layer = self.layer, self.image_layer()
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        snapshot = checksum(np.asarray(data))

        def done(features: pd.DataFrame) -> None:
            now = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
            if checksum(np.asarray(now)) != snapshot:
                show_info("seglab: the labels changed while measuring; click Measure again")
                return
            set_features(layer, features)

        def failed(e: Exception) -> None:
            show_error(f"seglab: {e}" if isinstance(e, SeglabError) else f"seglab: measuring failed: {e}")

        def finished() -> None:
            self._worker = None
            self.measure_button.setEnabled(True)

        worker = new_worker(remeasured, layer, image_layer,
                            connect={"returned": done, "errored": failed, "finished": finished})
        self._worker = worker
        self.measure_button.setEnabled(False)
        self.info.setText(f"measuring '{layer.name}'…")
        worker.start()
        return worker

    def save(self, path: str | Path) -> Path:
        """Write the table (the layer's features; ``index`` as ``label``) to ``path`` as CSV, atomically."""
        from seglab.io import write_table_csv

        if self.layer is None:
            raise SeglabError("select a labels layer first")
        df = pd.DataFrame(self.layer.features).rename(columns={"index": "label"})
        if "label" not in df.columns:
            raise SeglabError(f"'{self.layer.name}' has no object table; click Measure first")
        table = {c: _exact_integers(df[c].to_numpy()) for c in df.columns}
        return write_table_csv(Path(path), table)

    def _on_save_clicked(self, *_: Any) -> None:
        if self.layer is None:
            show_error("seglab: select a labels layer first")
            return
        suggested = "".join(ch for ch in self.layer.name if ch.isalnum() or ch in " ._-").strip() or "labels"
        path, _ = QFileDialog.getSaveFileName(self, "Save measurements", f"{suggested}_measurements.csv",
                                              "CSV files (*.csv)")
        if not path:
            return
        try:
            saved = self.save(path)
        except SeglabError as e:
            show_error(f"seglab: {e}")
            return
        show_info(f"seglab: measurements saved to {saved}")
