"""The PyQt6 viewer under QT_QPA_PLATFORM=offscreen: frames arrive through the signal, controls change the
overlay through the settings box, snapshots are written, closing the window stops the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import Qt

from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig, pipeline_threads
from polyp_live.realtime.settings import SettingsBox
from polyp_live.realtime.sources.files import VideoFileSource
from polyp_live.realtime.sources.simulated import SimulatedCamera
from polyp_live.realtime.viewer.window import attach_viewer
from tests.realtime_fakes import BrightSpotEngine, probe, write_disc_video


@pytest.fixture
def live_viewer(qtbot, tmp_path: Path):
    camera = SimulatedCamera(30.0, 160, 120)  # endless until the window closes
    settings = SettingsBox()
    pipeline = Pipeline(camera, BrightSpotEngine(64, delay_s=0.01), PipelineConfig(deliver=False), settings=settings)
    window = attach_viewer(pipeline, settings, tmp_path)
    qtbot.addWidget(window)
    window.show()
    pipeline.start()
    yield window, pipeline, settings
    pipeline.stop()
    pipeline.close()


def test_frames_arrive_and_controls_change_the_overlay(live_viewer, qtbot) -> None:
    window, _, settings = live_viewer
    qtbot.waitUntil(lambda: window.display.shown >= 5 and window.last_result.prediction is not None, timeout=5000)
    result = window.last_result
    assert window.video.pixmap() is not None and not window.video.pixmap().isNull()
    assert not np.array_equal(result.annotated, result.frame.rgb)  # the disc is tinted

    qtbot.keyClick(window, Qt.Key.Key_O)  # overlay off
    assert settings.get().show_overlay is False and not window.overlay_box.isChecked()
    shown = window.display.shown
    qtbot.waitUntil(lambda: window.display.shown >= shown + 3, timeout=5000)
    latest = window.last_result
    ys, xs = np.nonzero(latest.mask)
    assert len(ys) and np.array_equal(latest.annotated[ys, xs], latest.frame.rgb[ys, xs])  # mask no longer drawn

    window.overlay_box.setChecked(True)
    window.opacity_slider.setValue(90)
    qtbot.keyClick(window, Qt.Key.Key_Minus)  # threshold down one step
    assert settings.get().opacity == pytest.approx(0.9) and settings.get().threshold == pytest.approx(0.45)
    assert "fps" in window.statusBar().currentMessage()


def test_snapshot_writes_the_frame_on_screen(live_viewer, qtbot, caplog) -> None:
    window, _, _ = live_viewer
    qtbot.waitUntil(lambda: window.last_result is not None, timeout=5000)
    with caplog.at_level("INFO", logger="polyp_live.realtime.viewer.window"):
        qtbot.keyClick(window, Qt.Key.Key_S)
    assert len(window.snapshots) == 1 and window.snapshots[0].is_absolute()
    assert f"snapshot saved: {window.snapshots[0]}" in caplog.text  # the full path, not a bare file name
    image = cv2.imread(str(window.snapshots[0]))
    assert image is not None and image.shape == (120, 160, 3)


def test_closing_the_window_stops_the_pipeline(live_viewer, qtbot) -> None:
    window, pipeline, _ = live_viewer
    qtbot.waitUntil(lambda: window.display.shown >= 2, timeout=5000)
    window.close()
    assert pipeline.stop_requested
    qtbot.waitUntil(lambda: pipeline.finished.is_set(), timeout=5000)
    pipeline.close()
    assert not pipeline_threads()
    assert pipeline.summary().stopped == "stopped"


def test_pause_and_record_a_file(qtbot, tmp_path: Path, caplog) -> None:
    clip = write_disc_video(tmp_path / "in.mp4", 40)
    settings = SettingsBox()
    caplog.set_level("INFO")
    pipeline = Pipeline(VideoFileSource(clip), BrightSpotEngine(64, delay_s=0.01), PipelineConfig(deliver=False),
                        settings=settings)
    pipeline.source.open()
    window = attach_viewer(pipeline, settings, tmp_path)
    qtbot.addWidget(window)
    window.show()
    window.record_button.setChecked(True)
    window.pause_button.setChecked(True)  # paused before the first frame
    pipeline.start()
    qtbot.wait(300)
    assert pipeline.frames_in == 0 and pipeline.paused
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.finished, timeout=10000)
    pipeline.close()
    assert pipeline.summary().frames_out == 40
    recordings = list(tmp_path.glob("polyp-live-recording-*.mp4"))
    assert len(recordings) == 1 and window.recorder.finished == recordings
    assert f"recording to {recordings[0]}" in caplog.text and f"recording saved: {recordings[0]}" in caplog.text
    assert probe(recordings[0])["frames"] == 40
    assert not pipeline_threads()


def test_cli_opens_the_viewer_when_a_display_exists(qtbot, tmp_path: Path, monkeypatch, capsys) -> None:
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from polyp_live.realtime import cli
    from polyp_live.realtime.viewer.window import ViewerWindow

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr("polyp_live.engines.registry.open_engine", lambda *a, **k: BrightSpotEngine(64))
    clip = write_disc_video(tmp_path / "in.mp4", 30)
    seen: list[ViewerWindow] = []

    def close_when_done() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, ViewerWindow) and widget.isVisible():
                seen.append(widget)
                if widget.finished:
                    widget.close()

    timer = QTimer()
    timer.timeout.connect(close_when_done)
    timer.start(50)
    code = cli.main(["--input", str(clip), "--output", str(tmp_path / "out.mp4")])
    timer.stop()
    assert code == 0 and seen and seen[-1].display.shown >= 1
    assert probe(tmp_path / "out.mp4")["frames"] == 30  # the file output loses nothing while the viewer shows
    assert "in 30, out 30" in capsys.readouterr().out
    assert not pipeline_threads()


def test_cli_viewer_on_offscreen_platform_returns_at_end_of_file(tmp_path: Path, monkeypatch, capsys) -> None:
    from polyp_live.realtime import cli

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr("polyp_live.engines.registry.open_engine", lambda *a, **k: BrightSpotEngine(64))
    clip = write_disc_video(tmp_path / "in.mp4", 12)
    assert cli.main(["--input", str(clip), "--stats", str(tmp_path / "s.json")]) == 0
    import json

    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_out"] == 12 and summary["stopped"] == "end of input"
