"""``polyp-batch`` throughput: video-hours per wall-hour with 1 and 2 workers, and the Ray path's per-video overhead.

    python benchmarks/bench_batch.py                         # 4 copies of the bundled 8 s clip, 1 and 2 workers
    python benchmarks/bench_batch.py --videos 2 --workers 1  # a quick look

Every run is the real command (``python -m polyp_live.realtime.batch.cli``, a local Ray instance, 1 CPU thread per
worker,
annotated MP4 + JSONL + summary per video) on copies of one clip, into a fresh folder. *start* is the time until
every worker has opened its engine (Ray start + actors); *steady* rates count from then to the end. The overhead
compares the 1-worker steady time per video with ``polyp-live --input`` (same outputs, same 1 engine thread)
on the same clip: its pipeline wall time (``summary.json``) and its whole command (interpreter, engine open).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_batch.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

SCRIPT = "bench_batch"
DEFAULT_CLIP = common.REPO / "samples" / "cvc_clinicdb_seq01-09.mp4"
TARGET_SCALING = 1.7
TARGET_OVERHEAD = 0.10


def child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(common.REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}


def run_batch(videos: list[Path], workers: int, out_dir: Path, engine: str, threads: int = 1) -> dict[str, Any]:
    """One ``polyp-batch`` run; the times of its start (workers ready) and end, and its archive rows."""
    cmd = [sys.executable, "-m", "polyp_live.realtime.batch.cli", *map(str, videos), "--out-dir", str(out_dir),
           "--cluster",
           "local", "--workers", str(workers), "--threads-per-task", str(threads), "--engine", engine]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready: list[float] = []

    def watch() -> None:
        for line in proc.stderr:
            if "workers ready" in line and not ready:
                ready.append(time.monotonic())

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    proc.stdout.read()
    code = proc.wait()
    end = time.monotonic()
    reader.join(10)
    if code != 0 or not ready:
        raise RuntimeError(f"polyp-batch exited {code} (workers ready: {bool(ready)})")
    with open(out_dir / "archive.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    video_s = sum(float(r["duration_s"]) for r in rows)
    steady = end - ready[0]
    return {"workers": workers, "threads": threads, "videos": len(rows), "frames": sum(int(r["frames"]) for r in rows),
            "video_s": round(video_s, 3), "wall_s": round(end - start, 2), "start_s": round(ready[0] - start, 2),
            "steady_s": round(steady, 2), "steady_per_video_s": round(steady / len(rows), 3),
            "video_h_per_wall_h": round(video_s / (end - start), 3),
            "steady_video_h_per_wall_h": round(video_s / steady, 3),
            "pipeline_wall_s_per_video": round(sum(float(r["wall_s"]) for r in rows) / len(rows), 3)}


def run_single(clip: Path, work: Path, engine: str) -> dict[str, Any]:
    """``polyp-live --input`` with the same outputs and the engine's default threads (one per core)."""
    stats = work / "single.json"
    cmd = [sys.executable, "-m", "polyp_live.realtime.cli", "--input", str(clip), "--output", str(work / "single.mp4"),
           "--jsonl", str(work / "single.jsonl"), "--stats", str(stats), "--no-view", "--engine", engine]
    start = time.monotonic()
    subprocess.run(cmd, env=child_env(), check=True, capture_output=True)
    wall = time.monotonic() - start
    summary = json.loads(stats.read_text())
    return {"command_wall_s": round(wall, 3), "pipeline_wall_s": summary["wall_s"], "frames": summary["frames_out"],
            "engine": summary["engine"]}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench_batch-"))
    try:
        videos = []
        for i in range(args.videos):
            videos.append(work / "in" / f"case{i:02d}.mp4")
            videos[-1].parent.mkdir(exist_ok=True)
            shutil.copy(args.clip, videos[-1])
        single = run_single(args.clip, work, args.engine)
        runs = [run_batch(videos, n, work / f"out{n}", args.engine) for n in args.workers]
        # the overhead: one worker with polyp-live's engine threads (one per core), the same videos
        same = run_batch(videos, 1, work / "out-same", args.engine, threads=common.cpu_cores())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"single": single, "runs": runs, "overhead_run": same}


def verdict(result: dict[str, Any]) -> list[str]:
    runs = {r["workers"]: r for r in result["runs"]}
    same = result["overhead_run"]
    over = same["steady_per_video_s"] / result["single"]["pipeline_wall_s"] - 1
    result["overhead_vs_polyp_live"] = round(over, 3)
    lines = [f"Per-video overhead of the Ray path (1 worker with {same['threads']} threads like polyp-live, steady: "
             f"{same['steady_per_video_s']} s/video, start {same['start_s']} s once) vs polyp-live's pipeline "
             f"({result['single']['pipeline_wall_s']} s): {over:+.1%} (target <= {TARGET_OVERHEAD:.0%}): "
             f"{common.pass_fail(over <= TARGET_OVERHEAD)}"]
    if 1 in runs and 2 in runs:
        scale = runs[2]["steady_video_h_per_wall_h"] / runs[1]["steady_video_h_per_wall_h"]
        result["scaling_2_vs_1"] = round(scale, 3)
        ok = common.pass_fail(scale >= TARGET_SCALING)
        lines.append(f"2 workers vs 1 (steady video-hours per wall-hour): {scale:.2f}x "
                     f"(target >= {TARGET_SCALING}x when inference dominates): {ok}")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    single = report["result"]["single"]
    keys = ("workers", "threads", "videos", "frames", "video_s", "wall_s", "start_s", "steady_s", "steady_per_video_s",
            "pipeline_wall_s_per_video", "video_h_per_wall_h", "steady_video_h_per_wall_h")
    runs = [*report["result"]["runs"], report["result"]["overhead_run"]]
    table = common.markdown_table(("workers", "threads each", "videos", "frames", "video s", "wall s", "start s",
                                   "steady s", "steady s/video", "pipeline s/video", "video-h/wall-h",
                                   "steady video-h/wall-h"), [tuple(r[k] for k in keys) for r in runs])
    return "\n".join([
        f"# polyp-batch benchmark ({report['machine']['tag']})", "", common.machine_line(report["machine"]), "",
        f"Clip: {report['clip']} x {report['videos']} copies; engine (polyp-live's run): {single['engine']}; local "
        "Ray, annotated MP4 + JSONL + summary per video. Last row: the overhead run.", "", table, "",
        f"polyp-live --input on the same clip: pipeline {single['pipeline_wall_s']} s, whole command "
        f"{single['command_wall_s']} s ({single['frames']} frames).", "", *report["verdict"], "",
        f"Load average at the end: {report['machine'].get('load_average_end')}. {report.get('note', '')}"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="the clip copied --videos times")
    parser.add_argument("--videos", type=int, default=4, help="videos per run")
    parser.add_argument("--workers", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2],
                        help="comma-separated worker counts, one run each")
    parser.add_argument("--engine", default="default")
    parser.add_argument("--note", default="", help="a line for the report (e.g. the machine's other load)")
    common.add_output_args(parser, SCRIPT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    if not args.clip.is_file():
        raise FileNotFoundError(2, "no such clip", str(args.clip))
    report: dict[str, Any] = {"kind": SCRIPT, "machine": common.machine_info("cpu"), "clip": args.clip.name,
                              "videos": args.videos, "note": args.note}
    report["result"] = measure(args)
    report["verdict"] = verdict(report["result"])
    report["machine"]["load_average_end"] = common.load_average()
    common.write_report(SCRIPT, args, report, to_markdown(report))
    return 0


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
