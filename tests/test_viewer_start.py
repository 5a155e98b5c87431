"""The viewer starts or says why: a Qt platform plugin that cannot load means one warning line and a headless
run that writes every output (not Qt's SIGABRT); files play at their own frame rate in the viewer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from polyp_live.realtime.sources.pacing import PacedSource
from polyp_live.realtime.viewer.qt_probe import (
    XCB_PACKAGES,
    debian_package,
    missing_libraries,
    plugin_file,
    viewer_problem,
)
from tests.conftest import REPO
from tests.fault_helpers import decode_all, onnx_cache, read_jsonl  # noqa: F401 - fixture
from tests.realtime_fakes import write_disc_video

pytest.importorskip("PyQt6")
NO_DISPLAY = ":4217"  # an X display number nobody serves


def broken_xcb_env(**extra: str) -> dict[str, str]:
    """A desktop-like environment whose xcb plugin cannot start: missing libraries or no X server behind
    ``DISPLAY`` (either one makes Qt abort)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY",)}
    return {**env, "QT_QPA_PLATFORM": "xcb", "DISPLAY": NO_DISPLAY, **extra}


@pytest.mark.parametrize(("soname", "package"), [("libxcb-icccm.so.4", "libxcb-icccm4"),
                                                 ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
                                                 ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
                                                 ("libdbus-1.so.3", "libdbus-1-3"), ("libEGL.so.1", "libegl1")])
def test_sonames_map_to_debian_packages(soname: str, package: str) -> None:
    assert debian_package(soname) == package


def test_the_probe_names_what_is_missing_and_how_to_install_it() -> None:
    problem = viewer_problem(broken_xcb_env())
    assert problem is not None and "\n" not in problem and "'xcb'" in problem
    plugin = plugin_file("xcb")
    missing = missing_libraries(plugin) if plugin else []
    if missing:  # this machine lacks some of the plugin's libraries: they are named, with the apt-get line
        packages = [debian_package(name) for name in missing]
        assert f"missing {', '.join(missing)}" in problem
        assert problem.endswith("sudo apt-get install " + " ".join(dict.fromkeys(packages)))
        assert set(packages) <= set(XCB_PACKAGES)  # the README's list covers them
    else:  # every library is there: Qt's own reason (no X server at NO_DISPLAY)
        assert "cannot start" in problem and NO_DISPLAY in problem
    assert viewer_problem({**os.environ, "QT_QPA_PLATFORM": "offscreen"}) is None


@pytest.mark.slow
@pytest.mark.usefixtures("onnx_cache")  # the child reuses this session's ONNX export ($POLYP_LIVE_CACHE)
def test_unloadable_plugin_falls_back_to_headless_and_writes_everything(atto_checkpoint: Path, tmp_path: Path) -> None:
    clip = write_disc_video(tmp_path / "in.mp4", 12)
    out, jsonl, stats = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "s.json"
    env = broken_xcb_env(PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "polyp_live.realtime.cli", "--input", str(clip), "--engine",
                           str(atto_checkpoint), "--output", str(out), "--jsonl", str(jsonl), "--stats", str(stats)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("polyp-live: warning:")]
    assert len(warnings) == 1 and "no viewer, running headless" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr and "polyp-live: error" not in proc.stderr
    assert "qt.qpa" not in proc.stderr  # Qt's own lines stay in the probe's child
    assert decode_all(out) == 12 and len(read_jsonl(jsonl)) == 12
    assert json.loads(stats.read_text())["frames_out"] == 12


def frames(*times: float) -> list[SimpleNamespace]:
    return [SimpleNamespace(source_ts=t) for t in times]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


class ListSource:
    def __init__(self, items: list[SimpleNamespace], clock: FakeClock, work_s: float = 0.0) -> None:
        self.items, self.clock, self.work_s = list(items), clock, work_s
        self.opened, self.info, self.decode_errors = True, None, 0

    def read(self) -> SimpleNamespace | None:
        self.clock.now += self.work_s  # decoding takes time
        return self.items.pop(0) if self.items else None


@pytest.mark.parametrize(("speed", "expected"), [(1.0, [0.04, 0.04, 0.04]), (2.0, [0.02, 0.02, 0.02])])
def test_frames_are_handed_out_at_their_timestamps(speed: float, expected: list[float]) -> None:
    clock = FakeClock()
    paced = PacedSource(ListSource(frames(0.0, 0.04, 0.08, 0.12), clock), speed, clock=clock, sleep=clock.sleep)
    assert [paced.read().source_ts for _ in range(4)] == [0.0, 0.04, 0.08, 0.12] and paced.read() is None
    assert clock.sleeps == expected


def test_after_a_pause_the_clock_restarts_instead_of_rushing() -> None:
    clock = FakeClock()
    paced = PacedSource(ListSource(frames(0.0, 0.04, 0.08, 0.12), clock), clock=clock, sleep=clock.sleep)
    paced.read()
    paced.read()
    clock.now += 5.0  # paused for 5 s
    paced.read()  # late: no sleep, the clock restarts at this frame
    paced.read()
    assert clock.sleeps == [0.04, 0.04]


@pytest.mark.slow
def test_viewer_plays_a_file_at_its_rate_and_fast_does_not_wait(tmp_path: Path, monkeypatch, capsys) -> None:
    from polyp_live.realtime import cli
    from tests.realtime_fakes import BrightSpotEngine

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr("polyp_live.engines.registry.open_engine", lambda *a, **k: BrightSpotEngine(64))
    clip = write_disc_video(tmp_path / "in.mp4", 25, fps=25)  # one second
    took = {}
    for mode in ("--speed=1", "--fast"):
        start = time.monotonic()
        assert cli.main(["--input", str(clip), "--jsonl", str(tmp_path / "o.jsonl"), mode]) == 0
        took[mode] = time.monotonic() - start
        assert len(read_jsonl(tmp_path / "o.jsonl")) == 25
    assert took["--speed=1"] >= 0.9  # 24 frame periods after the first frame
    assert took["--fast"] < took["--speed=1"]
