"""Progress bars only on a terminal; on a pipe or in a CI log, a plain line every few seconds instead."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from polyp_live.train import progress as progress_module
from polyp_live.train.progress import LineProgress, progress
from tests.conftest import REPO
from tests.realtime_fakes import write_disc_video


def test_off_a_terminal_lines_replace_the_bar(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    bar = progress(range(7), desc="evaluate", unit="img")
    assert isinstance(bar, LineProgress)
    bar.every_s = 0.0  # every update is "a few seconds later"
    with caplog.at_level(logging.INFO, logger="polyp_live.progress"):
        assert list(bar) == list(range(7))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("evaluate: 1/7 (14%) img, ") and lines[-1].startswith("evaluate: 7/7 (100%) img, ")
    assert all("\r" not in line for line in lines) and len(lines) == 8  # 7 updates + the closing line


def test_lines_come_every_few_seconds_not_per_update(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    with caplog.at_level(logging.INFO, logger="polyp_live.progress"), progress(total=1000, desc="x") as bar:
        for _ in range(1000):
            bar.update(1)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["x: 1000/1000 (100%) it"]  # only at the end


def test_quiet_and_terminal_modes(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from tqdm import tqdm

    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    with caplog.at_level(logging.INFO, logger="polyp_live.progress"):
        list(progress(range(3), desc="epoch 1/2", lines=False))  # a loop that logs its own line per epoch
        list(progress(range(3), desc="off", enabled=False))
    assert caplog.records == []
    monkeypatch.setattr(progress_module, "on_terminal", lambda: True)
    bar = progress(range(3), desc="tty", disable=True)
    assert isinstance(bar, tqdm)
    bar.close()


@pytest.mark.slow
def test_polyp_live_on_a_pipe_writes_lines_not_carriage_returns(tmp_path: Path) -> None:
    clip = write_disc_video(tmp_path / "in.mp4", 20)
    script = ("import sys\n"
              "import polyp_live.engines.registry as r\n"
              "from tests.realtime_fakes import BrightSpotEngine\n"
              "r.open_engine = lambda *a, **k: BrightSpotEngine(64)\n"
              "from polyp_live.realtime.cli import entry\n"
              "sys.argv[0] = 'polyp-live'\n"
              "entry()\n")
    proc = subprocess.run([sys.executable, "-c", script, "--input", str(clip), "--jsonl", str(tmp_path / "o.jsonl"),
                           "--no-view"], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    assert "polyp-live: 20/20 (100%) frame" in proc.stderr
