"""The PyQt6 viewer: annotated video scaled to fit, status bar, and controls with keyboard shortcuts.

The only module that imports PyQt6 (``polyp-live`` imports it lazily), so everything else runs headless.

How frames reach the window: :class:`QtDisplaySink` is a pipeline sink and a ``QObject`` created in the GUI
thread. The pipeline's output thread calls its ``write``, which emits ``result_ready(Result)``; the
window's slot is connected with ``Qt.ConnectionType.QueuedConnection``, so it runs in the GUI thread.
At most one result is in flight: while the GUI has not painted the previous one, newer results are
dropped and counted (``dropped``), so a slow GUI never blocks or backs up the pipeline. The viewer owns
neither the capture nor the engine; overlay controls act through the pipeline's :class:`SettingsBox`,
pause through :meth:`Pipeline.pause`, recording through a :class:`ToggleRecorder` sink, and closing the
window calls :meth:`Pipeline.stop`. Verified under ``QT_QPA_PLATFORM=offscreen`` in ``tests/test_viewer.py``.

Shortcuts: O overlay on/off, [ and ] opacity, - and = threshold, S snapshot, R record, Space pause (files),
F fullscreen, Q / Esc quit.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PyQt6.QtCore import QEventLoop, QObject, Qt, QTimer, pyqtSignal, pyqtSlot
from PyQt6.QtGui import QCloseEvent, QImage, QKeySequence, QPixmap, QResizeEvent, QShortcut
from PyQt6.QtWidgets import (
    QApplication,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from polyp_live.realtime.core.pipeline import Pipeline
from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.settings import SettingsBox
from polyp_live.realtime.sinks.writers import ToggleRecorder
from polyp_live.realtime.types import Result, RunMode, RunSummary

logger = logging.getLogger(__name__)


class QtDisplaySink(QObject, SinkBase):
    """Pipeline sink -> Qt signal, with at most one result in flight (newer ones dropped and counted)."""

    result_ready = pyqtSignal(object)
    run_finished = pyqtSignal()
    name = "display"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._in_flight = False
        self.dropped = 0
        self.shown = 0

    def write(self, result: Result) -> None:  # pipeline output thread
        with self._lock:
            if self._in_flight:
                self.dropped += 1
                return
            self._in_flight = True
        self.result_ready.emit(result)

    def done(self) -> None:  # GUI thread, after painting
        with self._lock:
            self._in_flight = False
            self.shown += 1

    def close(self) -> None:  # pipeline output thread, once
        self.run_finished.emit()


def to_pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class ViewerWindow(QMainWindow):
    """Main window; see the module docstring for what it may touch."""

    def __init__(
        self, pipeline: Pipeline, settings: SettingsBox, display: QtDisplaySink, recorder: ToggleRecorder | None = None,
        output_dir: str | Path = ".",
    ) -> None:
        super().__init__()
        self.pipeline, self.settings, self.display, self.recorder = pipeline, settings, display, recorder
        self.output_dir = Path(output_dir).resolve()  # snapshots and recordings are logged by full path
        self.last_result: Result | None = None
        self.beep = False  # a sound when the POLYP alarm turns on (--beep; off by default)
        self.alarm_sounds = 0
        self.finished = False
        # At the end of a file the window stays open (last frame, "press Q") on a real display; with no
        # screen to look at (the offscreen platform of tests and CI) it closes so the command returns.
        self.close_when_finished = QApplication.platformName() == "offscreen"
        self.snapshots: list[Path] = []
        self.setWindowTitle("polyp-live")
        self.video = QLabel("waiting for frames...")
        self.video.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.video.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.video.setMinimumSize(320, 180)
        self.video.setStyleSheet("background: black; color: white;")
        self._pixmap: QPixmap | None = None
        self._build_controls()
        self._build_shortcuts()
        display.result_ready.connect(self.show_result, Qt.ConnectionType.QueuedConnection)
        display.run_finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._timer = QTimer(self)  # status bar refresh; also lets Python run signal handlers (Ctrl+C)
        self._timer.timeout.connect(self._tick)
        self._timer.start(200)
        self.resize(1024, 640)

    # ------------------------------------------------------------------ widgets
    def _build_controls(self) -> None:
        current = self.settings.get()
        self.overlay_box = QCheckBox("Overlay (O)")
        self.overlay_box.setChecked(current.show_overlay)
        self.overlay_box.toggled.connect(lambda on: self.settings.update(show_overlay=bool(on)))
        self.opacity_slider = self._slider(0, 100, round(current.opacity * 100), self._on_opacity)
        threshold = current.threshold if current.threshold is not None else self.pipeline.engine.contract.threshold
        self.threshold_slider = self._slider(1, 99, round(threshold * 100), self._on_threshold)
        self.snapshot_button = QPushButton("Snapshot (S)")
        self.snapshot_button.clicked.connect(self.snapshot)
        self.record_button = QPushButton("Record (R)")
        self.record_button.setCheckable(True)
        self.record_button.setEnabled(self.recorder is not None)
        self.record_button.toggled.connect(self._on_record)
        self.pause_button = QPushButton("Pause (Space)")
        self.pause_button.setCheckable(True)
        # pausing a live source would only show stale frames
        self.pause_button.setEnabled(self.pipeline.mode is RunMode.FILE)
        self.pause_button.toggled.connect(lambda on: self.pipeline.pause(bool(on)))
        self.fullscreen_button = QPushButton("Fullscreen (F)")
        self.fullscreen_button.clicked.connect(self.toggle_fullscreen)
        self.quit_button = QPushButton("Quit (Q)")
        self.quit_button.clicked.connect(self.close)
        row = QHBoxLayout()
        for widget in (self.overlay_box, QLabel("Opacity"), self.opacity_slider, QLabel("Threshold"),
                       self.threshold_slider, self.snapshot_button, self.record_button, self.pause_button,
                       self.fullscreen_button, self.quit_button):
            widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys always reach the window's shortcuts
            row.addWidget(widget)
        column = QVBoxLayout()
        column.addWidget(self.video, 1)
        column.addLayout(row)
        central = QWidget()
        central.setLayout(column)
        self.setCentralWidget(central)
        self.statusBar().showMessage("starting...")

    def _slider(self, low: int, high: int, value: int, slot: object) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(low, high)
        slider.setValue(value)
        slider.setMaximumWidth(140)
        slider.valueChanged.connect(slot)
        return slider

    def _build_shortcuts(self) -> None:
        keys = {
            "O": self.overlay_box.toggle, "[": lambda: self._step(self.opacity_slider, -10),
            "]": lambda: self._step(self.opacity_slider, 10), "-": lambda: self._step(self.threshold_slider, -5),
            "=": lambda: self._step(self.threshold_slider, 5), "S": self.snapshot, "R": self.record_button.toggle,
            "Space": self.pause_button.toggle, "F": self.toggle_fullscreen, "Q": self.close, "Esc": self.close,
        }
        self._shortcuts = []
        for key, action in keys.items():
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.activated.connect(action)
            self._shortcuts.append(shortcut)

    @staticmethod
    def _step(slider: QSlider, delta: int) -> None:
        slider.setValue(slider.value() + delta)

    # ------------------------------------------------------------------ slots
    def _on_opacity(self, value: int) -> None:
        self.settings.update(opacity=value / 100.0)

    def _on_threshold(self, value: int) -> None:
        self.settings.update(threshold=value / 100.0)

    def _on_record(self, on: bool) -> None:
        if self.recorder is None:
            return
        if on:
            path = self.output_dir / time.strftime("polyp-live-recording-%Y%m%d-%H%M%S.mp4")
            self.recorder.start(path)
            self.statusBar().showMessage(f"recording to {path}")
            logger.info("recording to %s", path)
        else:
            self.recorder.stop()  # the recorder logs the saved file's path once it is finished

    @pyqtSlot(object)
    def show_result(self, result: Result) -> None:
        """GUI thread: paint one result, then tell the sink it may send the next."""
        try:
            was_on = self.last_result is not None and self.last_result.shows_polyp
            self.last_result = result
            if self.beep and result.shows_polyp and not was_on:
                QApplication.beep()
                self.alarm_sounds += 1
            self._pixmap = to_pixmap(result.annotated_rgb)
            self._rescale()
        finally:
            self.display.done()

    def _rescale(self) -> None:
        if self._pixmap is not None:
            self.video.setPixmap(self._pixmap.scaled(self.video.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                                     Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _on_finished(self) -> None:
        self.finished = True
        self._tick()
        if self.close_when_finished:
            self.close()

    def _tick(self) -> None:
        if self.pipeline.stop_requested and not self.isHidden():
            self.close()  # Ctrl+C / SIGTERM in the terminal
            return
        stats = self.pipeline.stats
        info = self.pipeline.engine.info
        dropped = max(0, self.pipeline.frames_in - stats.frames_out) + self.display.dropped
        parts = [f"{stats.recent_fps():.1f} fps", f"latency {stats.last_latency_s * 1000:.0f} ms",
                 f"dropped {dropped}", f"{info.backend} {info.precision} {info.device}"]
        if self.last_result is not None and self.last_result.shows_polyp:
            parts.append("POLYP")
        polyps = self.pipeline.procedure.distinct_polyps
        if polyps:
            parts.append(f"polyps {polyps}")
        if self.pipeline.paused:
            parts.append("paused")
        if self.finished:
            parts.append("finished - press Q to quit")
        self.statusBar().showMessage("  |  ".join(parts))

    def snapshot(self) -> Path | None:
        """Save the frame on screen (annotated) as a PNG; returns its path."""
        if self.last_result is None:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.output_dir / f"polyp-live-snapshot-{stamp}-{self.last_result.index:06d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(self.last_result.annotated_rgb, cv2.COLOR_RGB2BGR)):
            self.statusBar().showMessage(f"cannot write {path}")
            return None
        self.snapshots.append(path)
        self.statusBar().showMessage(f"saved {path}")
        logger.info("snapshot saved: %s", path)
        return path

    def toggle_fullscreen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.pipeline.stop()
        self._timer.stop()
        event.accept()


def attach_viewer(
    pipeline: Pipeline, settings: SettingsBox, output_dir: str | Path = ".", beep: bool = False
) -> ViewerWindow:
    """Create the display sink, recorder and window for ``pipeline`` (call before ``pipeline.start()``)."""
    display = QtDisplaySink()
    recorder = ToggleRecorder(pipeline.open_source())
    pipeline.add_sinks(display, recorder)
    window = ViewerWindow(pipeline, settings, display, recorder, output_dir)
    window.beep = beep
    return window


def application() -> QApplication:
    """The process's QApplication, made on first use."""
    app = QApplication.instance()
    return app if isinstance(app, QApplication) else QApplication(["polyp-live"])


def run_events_for(seconds: float) -> None:
    """Run the Qt event loop on this (the GUI) thread for ``seconds``: for code that drives a window itself, such
    as ``benchmarks/bench_viewer.py``."""
    loop = QEventLoop()
    QTimer.singleShot(max(1, int(seconds * 1000)), loop.quit)
    loop.exec()


def run_viewer(pipeline: Pipeline, settings: SettingsBox, output_dir: str | Path = ".",
               beep: bool = False) -> RunSummary:
    """Open the window, run the pipeline until the window closes, shut down cleanly, return the summary."""
    app = application()
    window = attach_viewer(pipeline, settings, output_dir, beep)
    window.show()
    try:
        pipeline.start()
        app.exec()
    finally:
        pipeline.stop()
        pipeline.close()
    pipeline.raise_if_failed()
    return pipeline.summary()
