"""Resource bounds: a model contract asks for no more than PEFNet can run, and an ONNX export killed half-way
(SIGKILL, the OOM killer) does not leave its partial file in the cache for ever."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyp_live.engines.cache import PARTIAL_SUFFIX, cached_onnx, remove_stale_partials
from tests.fault_helpers import check_message, documented_rows, onnx_cache  # noqa: F401 - fixture
from tests.realtime_fakes import polyp_live, write_disc_video

ROWS = {"checkpoint whose contract asks for 4096x4096": 2, "export killed half-way": 0}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_huge_contract_is_refused_before_any_export(atto_checkpoint: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """It was OOM-killed at 24 GB exporting, and left a 657 MB partial file in the cache."""
    monkeypatch.setenv("POLYP_LIVE_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "big.safetensors"
    weights.write_bytes(atto_checkpoint.read_bytes())
    sidecar = json.loads(atto_checkpoint.with_suffix(".json").read_text())
    sidecar["contract"]["input_size"] = [4096, 4096]
    weights.with_suffix(".json").write_text(json.dumps(sidecar))
    clip = write_disc_video(tmp_path / "clip.mp4", 5, faststart=True)
    code, _, err = polyp_live(["--input", str(clip), "--engine", str(weights), "--jsonl", str(tmp_path / "o.jsonl")],
                              capsys)
    assert code == 2
    check_message(err, code, "input height 4096 is larger than PEFNet models are run at (at most 1024")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o.jsonl").exists()


def test_partial_exports_of_dead_processes_are_removed(tmp_path: Path) -> None:
    gone = tmp_path / f"abc-64x64-fp32.{dead_pid()}{PARTIAL_SUFFIX}"
    running = tmp_path / f"abc-64x64-fp32.{os.getpid()}{PARTIAL_SUFFIX}"  # an export in progress right now
    for path in (gone, running):
        path.write_bytes(b"\x08\x07half an ONNX file")
    assert remove_stale_partials(tmp_path) == [gone]
    assert not gone.exists() and running.exists()


@pytest.mark.usefixtures("onnx_cache")
def test_the_next_export_cleans_up_after_a_killed_one(atto_checkpoint: Path) -> None:
    from polyp_live.engines.cache import cache_dir

    folder = cache_dir() / "onnx"
    stale = folder / f"killed-96x96-fp32.{dead_pid()}{PARTIAL_SUFFIX}"
    stale.write_bytes(os.urandom(10_000))
    exported = cached_onnx(atto_checkpoint, size=96)
    assert exported.is_file() and not stale.exists()
    assert list(folder.glob(f"*{PARTIAL_SUFFIX}")) == []


def test_rows_are_in_the_fault_table() -> None:
    rows = documented_rows()
    assert {name: rows.get(name) for name in ROWS} == {name: str(code) for name, code in ROWS.items()}
