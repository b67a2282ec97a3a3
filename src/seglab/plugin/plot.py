"""A small live plot of the training loss (and validation AP@0.5), drawn with QPainter."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOUR = QColor(80, 160, 255)
VAL_COLOUR = QColor(255, 170, 40)


class TrainPlot(QWidget):
    """Loss per step (left scale, blue) and validation AP@0.5 (0..1, orange dots)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("training loss (blue) and validation AP@0.5 (orange, 0 to 1)")

    def clear(self) -> None:
        self.loss.clear()
        self.val.clear()
        self.update()

    def add(self, step: int, loss: float | None = None, val: float | None = None) -> None:
        if loss is not None and math.isfinite(loss):
            self.loss.append((step, loss))
        if val is not None:
            self.val.append((step, val))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        area = QRectF(36, 6, max(1, w - 44), max(1, h - 24))
        p.setPen(QPen(QColor(128, 128, 128), 1))
        p.drawRect(area)
        if not self.loss and not self.val:
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, "loss appears here during training")
            p.end()
            return
        steps = [s for s, _ in self.loss + self.val]
        s0, s1 = min(steps), max(max(steps), min(steps) + 1)
        hi = max((v for _, v in self.loss), default=1.0) * 1.05 or 1.0

        def point(step: float, value: float, top: float) -> QPointF:
            x = area.left() + (step - s0) / (s1 - s0) * area.width()
            y = area.bottom() - min(max(value / top, 0.0), 1.0) * area.height()
            return QPointF(x, y)

        p.drawText(QRectF(0, area.top() - 4, 34, 14), Qt.AlignmentFlag.AlignRight, f"{hi:.2g}")
        p.drawText(QRectF(0, area.bottom() - 10, 34, 14), Qt.AlignmentFlag.AlignRight, "0")
        p.drawText(QRectF(area.left(), area.bottom() + 2, area.width(), 14), Qt.AlignmentFlag.AlignRight,
                   f"step {s1}")
        if len(self.loss) > 1:
            p.setPen(QPen(LOSS_COLOUR, 1.5))
            p.drawPolyline(QPolygonF([point(s, v, hi) for s, v in self.loss]))
        p.setPen(QPen(VAL_COLOUR, 1))
        p.setBrush(VAL_COLOUR)
        for s, v in self.val:
            p.drawEllipse(point(s, v, 1.0), 3, 3)
        if self.val:
            p.drawText(QRectF(area.left() + 4, area.top() + 2, area.width() - 8, 14), Qt.AlignmentFlag.AlignLeft,
                       f"val AP@0.5 {self.val[-1][1]:.3f}")
        p.end()
