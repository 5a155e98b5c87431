"""File soak: one long file run (default 90,000 frames = 60 min at 25 fps) with MP4 + JSONL output, RSS per window.

    python benchmarks/soak_file.py                                   # 90k generated frames, stand-in engine
    python benchmarks/soak_file.py --input case.mp4 --engine default # a real recording and the default model

A 90,000-frame run used to grow RSS from 353 to 392 MB (~0.43 KB per frame: the run statistics kept every
frame's stage times in lists; they are histograms now). Without ``--input`` a clip of ``--frames`` frames is
generated (a moving disc, H.264); the stand-in engine thresholds brightness behind the real preprocessing, so
the run measures the pipeline, decoder and writers rather than the model (whose memory does not depend on
the number of frames). Verdict: RSS of the last third of the windows vs the first third, drift above
:data:`RSS_FLOOR_MB`. Exit code 1 on drift.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/soak_file.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks import common
from polyp_live.engines.base import Engine, EngineInfo
from polyp_live.train.contract import ModelContract

logger = logging.getLogger("benchmarks.soak_file")

SCRIPT = "soak_file"
RSS_FLOOR_MB = 8.0  # the old growth was 26 MB between the first and last third of a 90k-frame run


class StandInEngine(Engine):
    """Logits +8 where the preprocessed frame is bright, -8 elsewhere; no model, no wait."""

    name = "stand-in"

    def __init__(self, size: int = 64) -> None:
        super().__init__(EngineInfo("stand-in", "cpu", "fp32", "stand-in", ModelContract("atto", (size, size)), 4, 4))

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", **options: Any) -> Engine:
        return cls()

    def infer(self, batch: Any) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        return np.where(x.mean(axis=1, keepdims=True) > 0.6, 8.0, -8.0).astype(np.float32)


def make_clip(path: Path, frames: int, width: int, height: int, fps: int = 25) -> Path:
    """A moving bright disc on dark red, H.264 (ultrafast), index first."""
    import av
    import cv2

    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "30"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = (90, 30, 25)
            if i % 200 < 120:  # a polyp for 120 frames of every 200: episodes open and close all run long
                cx = width // 4 + (i * 3) % (width // 2)
                cv2.circle(image, (cx, height // 2), height // 6, (250, 240, 220), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def file_session(engine: Any, clip: Path, outdir: Path, window_frames: int,
                 max_frames: int | None = None) -> dict[str, Any]:
    """Run ``clip`` through the pipeline into an MP4 and a JSONL in ``outdir``; RSS every ``window_frames``."""
    from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig
    from polyp_live.realtime.sinks.writers import JsonlSink, VideoWriterSink
    from polyp_live.realtime.sources.files import VideoFileSource

    source = VideoFileSource(clip)
    info = source.open()
    sinks = [VideoWriterSink(outdir / "soak.mp4", info), JsonlSink(outdir / "soak.jsonl")]
    windows: list[dict[str, Any]] = []
    started = last = time.monotonic()
    frames = 0
    with Pipeline(source, engine, PipelineConfig(max_frames=max_frames), sinks) as run:
        for _ in run:
            frames += 1
            if frames % window_frames == 0:
                now = time.monotonic()
                windows.append({"frames": frames, "rss_mb": round(common.rss_mb(), 1),
                                "fps": round(window_frames / max(now - last, 1e-9), 1),
                                "threads": common.thread_count()})
                logger.info("%s", windows[-1])
                last = now
        summary = run.summary()
    return {"input": str(clip), "frames": frames, "window_frames": window_frames, "windows": windows,
            "wall_s": round(time.monotonic() - started, 1), "episodes": len(summary.episodes),
            "frames_with_polyp": summary.frames_with_polyp}


def rss_verdict(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median RSS of the first third of the windows vs the last third; drift above :data:`RSS_FLOOR_MB`."""
    values = [w["rss_mb"] for w in windows]
    if len(values) < 3:
        return {"status": "not enough windows", "drift": False}
    k = len(values) // 3
    first, last = float(np.median(values[:k])), float(np.median(values[-k:]))
    per_10k = (last - first) / max(1, windows[-k]["frames"] - windows[k - 1]["frames"]) * 10_000
    return {"first_mb": round(first, 1), "last_mb": round(last, 1), "growth_mb": round(last - first, 1),
            "growth_mb_per_10k_frames": round(per_10k, 2), "floor_mb": RSS_FLOOR_MB,
            "drift": last - first > RSS_FLOOR_MB}


def to_markdown(report: dict[str, Any]) -> str:
    session, verdict = report["session"], report["verdict"]
    lines = [f"# File soak ({report['machine']['tag']})", "", common.machine_line(report["machine"]), "",
             f"Engine: {report['engine']}. Input {session['input']}: {session['frames']} frames in "
             f"{session['wall_s']} s, MP4 + JSONL written; {session['episodes']} episodes. RSS per "
             f"{session['window_frames']} frames:", ""]
    lines.append(common.markdown_table(["frames", "rss_mb", "fps", "threads"],
                                       [[w[k] for k in ("frames", "rss_mb", "fps", "threads")]
                                        for w in session["windows"]]))
    lines += ["", f"- RSS first third {verdict.get('first_mb')} MB, last third {verdict.get('last_mb')} MB "
              f"(growth {verdict.get('growth_mb')} MB, {verdict.get('growth_mb_per_10k_frames')} MB per 10k "
              f"frames; floor {RSS_FLOOR_MB} MB): {'DRIFT' if verdict['drift'] else 'flat'}",
              f"- soak {common.pass_fail(not verdict['drift'])}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/soak_file.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="a video file (default: generate --frames frames)")
    parser.add_argument("--frames", type=int, default=90_000, help="frames to generate / at most to run (90000)")
    parser.add_argument("--window-frames", type=int, default=10_000, help="frames per RSS window (10000)")
    parser.add_argument("--resolution", default="160x120", help="generated clip WxH (160x120)")
    common.add_engine_args(parser)
    parser.set_defaults(engine="stand-in")
    common.add_output_args(parser, SCRIPT)
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_live import parse_resolution
    from benchmarks.bench_pipeline import open_bench_engine
    from polyp_live.train.errors import PolypLiveError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.frames < 1 or args.window_frames < 1:
        raise PolypLiveError("--frames and --window-frames must be positive")
    if args.engine == "stand-in":
        engine, note = StandInEngine(), "stand-in (no model)"
    else:
        engine, note = open_bench_engine(args.engine, args.size, args.backend, args.precision, args.device,
                                         args.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="soak-file-") as tmp:
            clip = args.input
            if clip is None:
                width, height = parse_resolution(args.resolution)
                clip = make_clip(Path(tmp) / "long.mp4", args.frames, width, height)
            session = file_session(engine, clip, Path(tmp), args.window_frames, args.frames)
    finally:
        engine.close()
    verdict = rss_verdict(session["windows"])
    report = {"kind": SCRIPT, "machine": common.machine_info(engine.info.device), "engine": note,
              "session": session, "verdict": verdict, "passed": not verdict["drift"]}
    common.write_report(SCRIPT, args, report, to_markdown(report))
    return 1 if verdict["drift"] else 0


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
