"""The 30-second soak: live mode on a simulated 60 fps camera. Nothing may drift from the first windows to the
last, the thread count stays constant, and every thread the run started is gone after shutdown.

The engine is a stand-in with a fixed 15 ms inference (a GPU-class model) behind the real preprocessing, so
that what is measured is the pipeline itself, not how busy the shared CPU happens to be; the real-model live
path is smoke-tested in ``tests/test_benchmarks.py`` and soaked by ``benchmarks/soak.py`` itself."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import soak
from polyp_live.engines.base import Engine, EngineInfo
from polyp_live.realtime.core.pipeline import pipeline_threads
from polyp_live.train.contract import ModelContract


class FixedLatencyEngine(Engine):
    """Logits +8 where the preprocessed frame is bright, -8 elsewhere, after ``delay_s`` of "inference"."""

    name = "fixed-latency"

    def __init__(self, size: int = 64, delay_s: float = 0.015) -> None:
        super().__init__(EngineInfo("fixed-latency", "cpu", "fp32", "stand-in", ModelContract("atto", (size, size))))
        self.delay_s = delay_s

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", **options: Any) -> Engine:
        return cls()

    def infer(self, batch: Any) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        self.check_input_shape(x.shape)
        time.sleep(self.delay_s)
        return np.where(x.mean(axis=1, keepdims=True) > 0.6, 8.0, -8.0).astype(np.float32)


@pytest.mark.slow
def test_soak_30_seconds_no_drift_no_leftover_threads(tmp_path: Path) -> None:
    threads_before = threading.active_count()
    out = tmp_path / "soak.json"
    code = soak.main(["--minutes", "0.5", "--window-seconds", "5", "--warmup-seconds", "1", "--fps", "60",
                      "--resolution", "320x240", "--json", str(out)], engine=FixedLatencyEngine())
    report = json.loads(out.read_text())
    session = report["session"]
    assert code == 0 and report["passed"], "\n".join(report["verdict"])
    assert not session["drift"]["any"]
    windows = session["windows"]
    assert len(windows) == 6
    assert all(w["shown"] > 0 and w["display_p95_ms"] > 0 and w["mask_age_p50_ms"] >= 15.0 for w in windows)
    assert len({w["python_threads"] for w in windows}) == 1  # the pipeline's threads, constant
    assert len({w["os_threads"] for w in windows}) == 1
    assert windows[0]["python_threads"] >= threads_before + 6  # six stage threads were running
    # the camera ran at 60 fps: about 300 ticks per 5-s window, most of them shown
    assert all(250 <= w["shown"] + w["dropped"] <= 320 for w in windows)
    assert session["overall"]["drop_rate"] < 0.2
    assert session["overall"]["pass_display"]
    assert session["leftover_pipeline_threads"] == [] and not pipeline_threads()
    assert threading.active_count() == threads_before


def test_file_soak_writes_rss_windows_and_flags_growth(tmp_path: Path) -> None:
    """``benchmarks/soak_file.py`` on a short generated clip: every window measured, the run whole, and its
    verdict flags steady RSS growth but not a flat line."""
    from benchmarks import soak_file

    out = tmp_path / "soak_file.json"
    code = soak_file.main(["--frames", "600", "--window-frames", "100", "--resolution", "96x64", "--json", str(out)])
    report = json.loads(out.read_text())
    session = report["session"]
    assert code == 0 and report["passed"]
    assert session["frames"] == 600 and [w["frames"] for w in session["windows"]] == list(range(100, 700, 100))
    assert session["episodes"] == 3 and session["frames_with_polyp"] == 360  # 120 of every 200 frames
    assert not pipeline_threads()
    flat = [{"frames": 10_000 * i, "rss_mb": 350.0 + (i % 2)} for i in range(1, 10)]
    growing = [{"frames": 10_000 * i, "rss_mb": 353.0 + 4.3 * i} for i in range(1, 10)]  # the old 0.43 KB/frame
    assert not soak_file.rss_verdict(flat)["drift"]
    assert soak_file.rss_verdict(growing)["drift"] and soak_file.rss_verdict(growing)["growth_mb_per_10k_frames"] > 4
