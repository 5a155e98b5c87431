"""``polyp-batch``: which videos, outputs renamed into place, skip on rerun, the tables, and real Ray clusters.

The Ray tests run the command as a child process against a real cluster: a two-node cluster on the loopback
(``ray start --head`` + ``ray start --address``, one CPU each, as separate processes) and the local Ray
instance the command starts itself. One worker process is killed mid-run (its video is retried on the
restarted worker and the table is still complete), and the rerun skips every video without starting Ray.
The clusters are stopped by the ids of their own processes (``ray stop --force`` would stop every Ray on
the machine, other users' too).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest

from polyp_live.realtime.batch import cli as batch_cli
from polyp_live.realtime.batch.archive import (
    PARTIAL,
    TaskOptions,
    VideoJob,
    VideoStatus,
    annotate_video,
    collect_jobs,
    model_bundle,
    read_done,
)
from polyp_live.realtime.errors import OptionError
from polyp_live.train.cli_utils import run_cli
from tests.realtime_fakes import BrightSpotEngine

REPO = Path(__file__).resolve().parents[1]
RAY_BIN = Path(sys.executable).with_name("ray")
RUN_TIMEOUT_S = 420


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def check_tables_agree(out_dir: Path) -> None:
    """Every ok/skipped row of archive.csv and every episodes.csv row say what the video's summary.json says."""
    episodes = read_csv(out_dir / "episodes.csv")
    for row in read_csv(out_dir / "archive.csv"):
        if row["status"] == "failed":
            assert not (out_dir / row["output"]).exists() and row["error"]
            continue
        summary = json.loads((out_dir / row["output"] / "summary.json").read_text())
        assert int(row["frames"]) == summary["frames_out"]
        assert int(row["frames_with_polyp"]) == summary["frames_with_polyp"]
        assert int(row["episodes"]) == len(summary["episodes"])
        assert row["model_sha256"] == summary["batch"]["model_sha256"] and row["path"] == summary["batch"]["input"]
        assert float(row["duration_s"]) == pytest.approx(summary["frames_out"] / summary["batch"]["fps"], abs=1e-3)
        mine = [ep for ep in episodes if ep["path"] == row["path"]]
        assert [(int(e["start_index"]), int(e["end_index"]), int(e["frames_with_polyp"])) for e in mine] == [
            (e["start_index"], e["end_index"], e["frames_with_polyp"]) for e in summary["episodes"]]
        if mine:
            assert float(row["first_episode_s"]) == pytest.approx(summary["episodes"][0]["start_time"], abs=1e-3)
            assert float(row["longest_episode_s"]) == max(float(e["duration_s"]) for e in mine)


# ------------------------------------------------------------------------------------------ without Ray
def test_inputs_folders_lists_and_missing_videos(tmp_path: Path) -> None:
    (tmp_path / "arch" / "2024" / ".hidden").mkdir(parents=True)
    for name in ("arch/a.mp4", "arch/2024/b.MOV", "arch/2024/notes.txt", "arch/2024/.hidden/c.mp4", "solo.mkv"):
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# archive\nsolo.mkv\n\nmissing.mp4\n")
    jobs = collect_jobs([str(tmp_path / "arch"), str(listing), str(tmp_path / "solo.mkv")])
    assert [(j.path.name, j.rel) for j in jobs] == [
        ("b.MOV", "2024/b.MOV"), ("a.mp4", "a.mp4"), ("solo.mkv", "solo.mkv"), ("missing.mp4", "missing.mp4")]
    with pytest.raises(OptionError, match=r"would both write a\.mp4/"):
        collect_jobs([str(tmp_path / "arch"), str(tmp_path / "other" / "a.mp4")])
    with pytest.raises(OptionError, match="does not exist"):
        collect_jobs([str(tmp_path / "nope")])


def test_without_ray_one_line_how_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = run_cli(batch_cli.main, [str(tmp_path), "--out-dir", str(tmp_path / "out")], prog="polyp-batch")
    err = capsys.readouterr().err
    assert code == 2 and err == "polyp-batch: error: polyp-batch needs Ray: pip install 'polyp-live[cluster]'\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["nothing-here", "--out-dir", "OUT"], "input nothing-here does not exist"),
    (["EMPTY", "--out-dir", "OUT"], "no videos"),
    (["EMPTY", "--out-dir", "OUT", "--workers", "0"], "expected a positive integer"),
])
def test_usage_errors_are_one_line_exit_2(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray")
    (tmp_path / "EMPTY").mkdir()
    argv = [str(tmp_path / a) if a in ("EMPTY", "OUT") else a for a in argv]
    try:
        code = run_cli(batch_cli.main, argv, prog="polyp-batch")
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and "Traceback" not in "\n".join(err)


def test_one_video_renamed_into_place_skipped_until_input_or_model_changes(cvc_clip, tmp_path: Path) -> None:
    clip = tmp_path / "in" / "case.mp4"
    clip.parent.mkdir()
    shutil.copy(cvc_clip("seq01"), clip)
    bad = tmp_path / "in" / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    out = tmp_path / "out"
    options = TaskOptions(model="fake", model_sha256="s1")
    engine = BrightSpotEngine(64)
    done = annotate_video(VideoJob(clip, "case.mp4"), engine, options, out)
    assert done.status is VideoStatus.OK and done.row["frames"] == frame_count(clip)
    assert sorted(p.name for p in (out / "case.mp4").iterdir()) == ["annotated.mp4", "frames.jsonl", "report.html",
                                                                    "report.json", "summary.json"]
    report = json.loads((out / "case.mp4" / "report.json").read_text())
    assert report["complete"] and report["summary"]["counts"]["out"] == frame_count(clip)
    assert frame_count(out / "case.mp4" / "annotated.mp4") == frame_count(clip)
    assert not [p for p in out.iterdir() if PARTIAL in p.name]
    job = VideoJob(clip, "case.mp4")
    assert read_done(job, out, "s1", video=True) is not None
    assert read_done(job, out, "s2", video=True) is None  # another model
    os.utime(clip, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert read_done(job, out, "s1", video=True) is None  # the input changed
    for path, why in ((bad, "cannot open"), (tmp_path / "in" / "gone.mp4", "input not found")):
        failed = annotate_video(VideoJob(path, path.name), engine, options, out)
        assert failed.status is VideoStatus.FAILED and why in failed.row["error"] and "\n" not in failed.row["error"]
        assert not (out / path.name).exists() and not [p for p in out.iterdir() if PARTIAL in p.name]


def test_model_bundle_carries_sidecar_and_companion() -> None:
    bundle = model_bundle("default")
    assert bundle.name == "default.safetensors"
    assert {name for name, _ in bundle.files} == {"default.safetensors", "default.json", "default.int8.onnx"}
    assert len(bundle.sha256) == 64


# ------------------------------------------------------------------------------------------ real Ray
@pytest.fixture(scope="module")
def batch_inputs(cvc_clip, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A folder of 4 short clips (real CVC-ClinicDB ones when present) and one corrupt file; frames per clip."""
    folder = tmp_path_factory.mktemp("archive")
    counts = {}
    for i, seq in enumerate(("seq01", "seq02", "seq03", "seq05")):
        rel = f"{'day2/' if i % 2 else ''}{seq}.mp4"
        (folder / rel).parent.mkdir(exist_ok=True)
        shutil.copy(cvc_clip(seq), folder / rel)
        counts[rel] = frame_count(folder / rel)
    (folder / "corrupt.mp4").write_bytes(os.urandom(20_000))
    return folder, counts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RAY_TOKEN = os.urandom(16).hex()  # this session's clusters only accept drivers and nodes that know it


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": RAY_TOKEN,
            "RAY_agent_register_timeout_ms": "180000"}  # a loaded 2-core machine starts Ray's agents slowly


def stop_ray_processes(marker: str) -> None:
    """Kill the Ray processes whose command line names ``marker`` (this cluster's temp folder) and theirs."""
    import psutil

    mine = [p for p in psutil.process_iter(["cmdline"])
            if marker in " ".join(p.info["cmdline"] or ()) and p.pid != os.getpid()]
    family = {p.pid: p for p in mine}
    for proc in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            family.update({c.pid: c for c in proc.children(recursive=True)})
    for proc in family.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(list(family.values()), timeout=20)


def start_node(argv: list[str]) -> None:
    """``ray start ARGV`` with one CPU on the loopback; a second node on this machine needs its own dashboard agent
    port (the default one is the head's), the other ports are picked free by Ray."""
    done = subprocess.run([str(RAY_BIN), "start", *argv, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                           "--disable-usage-stats", "--object-store-memory", str(100 * 2**20)],
                          env=child_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"ray start {' '.join(argv)} failed:\n{done.stderr[-3000:]}"


@pytest.fixture
def two_node_cluster() -> Iterator[str]:
    """A head node and a second node on the loopback, one CPU each, each started by ``ray start``."""
    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="rb15", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        start_node(["--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "false"])
        start_node(["--address", address, "--dashboard-agent-listen-port", str(free_port())])
        yield address
    finally:
        stop_ray_processes(temp)
        shutil.rmtree(temp, ignore_errors=True)


def run_batch_cli(argv: list[str], on_line: Callable[[str, subprocess.Popen], None] | None = None,
                  ) -> tuple[int, str, str]:
    """``python -m polyp_live.realtime.batch.cli ARGV`` as a child process; ``on_line`` sees each stderr line as it
    comes."""
    proc = subprocess.Popen([sys.executable, "-m", "polyp_live.realtime.batch.cli", *argv], env=child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    err_lines: list[str] = []
    out_parts: list[str] = []

    def pump() -> None:  # stderr line by line (communicate() would read it too, in competition)
        for line in proc.stderr:
            err_lines.append(line)
            if on_line is not None:
                on_line(line, proc)

    readers = [threading.Thread(target=pump, daemon=True),
               threading.Thread(target=lambda: out_parts.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for reader in readers:
        reader.join(10)
    out = "".join(out_parts)
    return proc.returncode, out, "".join(err_lines)


def killer(out_dir: Path) -> tuple[Callable[[str, subprocess.Popen], None], dict[str, int]]:
    """An ``on_line`` that SIGKILLs the first worker once a video is in progress (a partial folder exists)."""
    state: dict[str, int] = {}

    def on_line(line: str, _proc: subprocess.Popen) -> None:
        found = re.search(r"workers ready \(pids ([\d, ]+)\)", line)
        if not found:
            return
        pids = [int(p) for p in found.group(1).split(",")]
        state["pids"] = len(pids)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out_dir.rglob(f".*{PARTIAL}*")):
            time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)
        state["killed"] = pids[0]

    return on_line, state


def check_batch(folder: Path, counts: dict[str, int], out_dir: Path, argv: list[str]) -> None:
    """First run with a worker killed mid-run, then the rerun that skips everything."""
    on_line, state = killer(out_dir)
    code, out, err = run_batch_cli([str(folder), "--out-dir", str(out_dir), *argv], on_line)
    assert code == 1, err
    assert state.get("killed") and state["pids"] == 2, err
    rows = {row["output"]: row for row in read_csv(out_dir / "archive.csv")}
    assert {k: (r["status"], int(r["frames"] or 0)) for k, r in rows.items()} == {
        **{rel: ("ok", n) for rel, n in counts.items()}, "corrupt.mp4": ("failed", 0)}
    assert rows["corrupt.mp4"]["error"] and "Traceback" not in err
    pids = {json.loads((out_dir / rel / "summary.json").read_text())["batch"]["pid"] for rel in counts}
    assert pids - {state["killed"]}, "no video was done by the restarted worker"
    assert not list(out_dir.rglob(f".*{PARTIAL}*")), "a partial folder was left"
    check_tables_agree(out_dir)
    assert "4 ok, 1 failed, 0 skipped of 5 video(s)" in out

    listing = folder / "good.txt"  # the good clips only (a failed video is tried again), paths below the list's folder
    listing.write_text("".join(f"{rel}\n" for rel in counts))
    start = time.monotonic()
    code, out, err = run_batch_cli([str(listing), "--out-dir", str(out_dir), *argv])
    assert code == 0, err
    assert time.monotonic() - start < 60 and "workers ready" not in err  # no Ray started
    assert {row["status"] for row in read_csv(out_dir / "archive.csv")} == {"skipped"}
    check_tables_agree(out_dir)


@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_TIMEOUT_S + 120)
def test_two_node_cluster_on_the_loopback(two_node_cluster: str, batch_inputs, tmp_path: Path) -> None:
    folder, counts = batch_inputs
    check_batch(folder, counts, tmp_path / "out", ["--cluster", two_node_cluster, "--max-retries", "2"])


@pytest.mark.slow
@pytest.mark.timeout(3 * RUN_TIMEOUT_S + 120)
def test_local_cluster(batch_inputs, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    folder, counts = batch_inputs
    check_batch(folder, counts, tmp_path / "out", ["--cluster", "local", "--workers", "2", "--max-retries", "2"])
    check_interrupt(folder, tmp_path / "stopped")


def check_interrupt(folder: Path, out_dir: Path) -> None:
    """SIGINT once the first video is done: exit 130, and archive.csv lists exactly the complete folders."""
    def on_line(line: str, proc: subprocess.Popen) -> None:
        if "workers ready" in line:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not list(out_dir.rglob("summary.json")):
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)

    code, out, err = run_batch_cli([str(folder), "--out-dir", str(out_dir), "--cluster", "local", "--workers", "1"],
                                   on_line)
    assert code == 130 and "interrupted" in out, err
    rows = read_csv(out_dir / "archive.csv")
    done = {p.parent.relative_to(out_dir).as_posix() for p in out_dir.rglob("summary.json")}
    assert 1 <= len(done) < 5 and {r["output"] for r in rows if r["status"] == "ok"} == done
    assert not list(out_dir.rglob(f".*{PARTIAL}*"))
    check_tables_agree(out_dir)
