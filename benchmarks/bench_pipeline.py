"""End-to-end throughput on real video: threaded pipeline vs a naive loop vs each stage alone, in one run.

    python benchmarks/bench_pipeline.py                                  # CVC-ClinicDB clips + 1080p sample
    python benchmarks/bench_pipeline.py --input clip.mp4 --max-frames 200 --engine default --json out.json
    python benchmarks/bench_pipeline.py --input ../shared/data/cvc-clinicdb/seq01/seq01.mp4 --upscale-1080p

For every input, with one engine (same model, backend and the same stage functions of
:mod:`polyp_live.realtime.core.stages` everywhere):

(a) the threaded pipeline (:class:`polyp_live.realtime.core.pipeline.Pipeline`, file mode) writing an MP4 to a temp dir;
(b) a naive loop: read -> preprocess -> infer -> postprocess -> overlay -> encode, one frame at a time;
(c) each stage alone on frames held in memory: decode, preprocess, infer, postprocess, overlay, encode -- wall
    time and the process's CPU time (all its threads). The CPU ceiling, cores x 1000 / the stages' CPU ms per
    frame, is the machine's limit for the work: on 2 cores, where inference alone keeps both cores busy, the
    pipeline can approach it but not the slowest stage's own rate.

Throughput of (a) and (b) is the steady state: frames per second from the completion of the first tenth
of the frames to the end of the run, sinks closed (after an untimed 8-frame warm-up run; start-up such as
thread creation and per-thread CUDA handles is excluded, the encoder's final flush is not);
``wall_fps`` (frames / whole wall time) is reported next to it.
Targets (printed PASS/FAIL): pipeline fps >= 0.9 x the slowest stage's fps (the pipeline hides every
other stage behind the slowest), and pipeline fps >= 1.5 x naive fps (on 2 CPU cores). Without PyAV
(``--decoder opencv``, automatic when ``av`` is missing or ``POLYP_BENCH_NO_AV=1``) the clip is decoded
with OpenCV into memory, (a) and (b) read from memory and write JSON Lines instead of an MP4.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_pipeline.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks import common
from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.settings import RenderSettings

logger = logging.getLogger("benchmarks.bench_pipeline")

SCRIPT = "bench_pipeline"
STAGE_NAMES = ("decode", "preprocess", "infer", "postprocess", "overlay", "encode")
TARGET_VS_SLOWEST = 0.9
TARGET_VS_NAIVE = 1.5
UPSCALE_SIZE = (1920, 1080)
WARMUP_FRAMES = 8
FILE_SETTINGS = RenderSettings(show_hud=False)  # polyp-live's file mode: no status text on recorded frames


class NullSink(SinkBase):
    """Discards results (measures the pipeline without any output cost)."""

    name = "null"

    def write(self, result: Any) -> None:
        pass

    def close(self) -> None:
        pass


def make_sink(kind: str, info: Any, folder: Path) -> Any:
    """``mp4`` (H.264 via PyAV), ``jsonl`` or ``null``; a fresh file per call."""
    from polyp_live.realtime.sinks.writers import JsonlSink, VideoWriterSink

    stamp = f"{time.monotonic_ns()}"
    factories: dict[str, Callable[[], Any]] = {
        "mp4": lambda: VideoWriterSink(folder / f"out-{stamp}.mp4", info),
        "jsonl": lambda: JsonlSink(folder / f"out-{stamp}.jsonl"),
        "null": NullSink,
    }
    return factories[kind]()


def upscaled(source: Any, size: tuple[int, int] = UPSCALE_SIZE) -> Any:
    """Wrap a source so that every frame is resized to ``size`` (W, H) as part of capture."""
    import cv2

    from polyp_live.realtime.sources.base import Source

    class UpscaledSource(Source):
        def open(self) -> Any:
            info = source.open() if source._info is None else source.info
            self._info = replace(info, width=size[0], height=size[1], description=f"{info.description} -> 1080p")
            return self._info

        def read(self) -> Any:
            start = time.perf_counter()
            frame = source.read()
            if frame is None:
                return None
            rgb = cv2.resize(frame.rgb, size, interpolation=cv2.INTER_LINEAR)
            return replace(frame, image=rgb, capture_s=frame.capture_s + time.perf_counter() - start)

        def close(self) -> None:
            source.close()

    return UpscaledSource()


class Inputs:
    """Opens a fresh source over one input the same way for every measurement."""

    def __init__(self, path: Path, decoder: str, max_frames: int | None, upscale: bool, loops: int = 1,
                 yuv: bool = True) -> None:
        self.path, self.decoder, self.max_frames, self.upscale = path, decoder, max_frames, upscale
        self.yuv = yuv  # PyAV hands out 4:2:0 planes, as polyp-live's file mode does
        self.memory: list[np.ndarray] | None = None
        self.fps = 25.0
        if decoder == "opencv":
            start = time.perf_counter()
            clip, self.fps = common.decode_opencv(path, max_frames)
            self.opencv_decode_s = time.perf_counter() - start
            if not clip:
                from polyp_live.train.errors import PolypLiveError

                raise PolypLiveError(f"OpenCV decoded no frame from {path}")
            self.memory = clip * max(1, loops)  # the clip played `loops` times (a longer steady state)
            self.opencv_decode_s *= max(1, loops)
            self.max_frames = None if max_frames is None else max_frames * max(1, loops)

    def open(self, limit: int | None = None) -> Any:
        if self.memory is not None:
            frames = self.memory if limit is None else self.memory[:limit]
            source = common.make_memory_source(frames, self.fps, str(self.path))
        else:
            from polyp_live.realtime.sources.files import VideoFileSource

            source = VideoFileSource(self.path, yuv=self.yuv and not self.upscale)
        source = upscaled(source) if self.upscale else source
        source.open()
        return source


def read_all(inputs: Inputs) -> tuple[list[Any], Any, list[float], list[float]]:
    """Decode-only: every frame (up to max_frames) with per-frame decode times and the process's CPU time for
    them (ms)."""
    source = inputs.open()
    frames, times, cpu = [], [], []
    try:
        while inputs.max_frames is None or len(frames) < inputs.max_frames:
            start, start_cpu = time.perf_counter(), time.process_time()
            frame = source.read()
            if frame is None:
                break
            times.append((time.perf_counter() - start) * 1000.0)
            cpu.append((time.process_time() - start_cpu) * 1000.0)
            frames.append(frame)
        info = source.info
    finally:
        source.close()
    if inputs.memory is not None:  # the real decode happened in Inputs(): spread its cost over the frames
        scale = inputs.opencv_decode_s * 1000.0 / max(1, len(inputs.memory))
        times = [t + scale for t in times]
        cpu = [t + scale for t in cpu]
    return frames, info, times, cpu


def _timed(fn: Callable[[], Any], times: list[float], cpu: list[float]) -> Any:
    """``fn()``, its wall time appended to ``times`` and the process's CPU time (every thread: ONNX Runtime's,
    x264's, OpenCV's pool) to ``cpu`` (ms)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    value = fn()
    times.append((time.perf_counter() - start) * 1000.0)
    cpu.append((time.process_time() - start_cpu) * 1000.0)
    return value


def stages_alone(engine: Any, inputs: Inputs, sink_kind: str, folder: Path) -> tuple[dict[str, Any], int]:
    """(c): each stage alone over the same in-memory frames; per-stage fps and latency percentiles."""
    from polyp_live.realtime.core.postprocess import TemporalSmoother
    from polyp_live.realtime.core.stages import (
        inference_stage,
        overlay_stage,
        postprocess_stage,
        preprocess_stage,
    )
    from polyp_live.train.fov import FieldOfViewTracker

    settings, contract, fov = FILE_SETTINGS, engine.contract, FieldOfViewTracker()
    frames, info, decode_ms, decode_cpu = read_all(inputs)
    times: dict[str, list[float]] = {name: [] for name in STAGE_NAMES}
    cpu: dict[str, list[float]] = {name: [] for name in STAGE_NAMES}
    times["decode"], cpu["decode"] = decode_ms, decode_cpu
    batches = [_timed(lambda f=f: preprocess_stage(engine, [f], fov), times["preprocess"], cpu["preprocess"])
               for f in frames]
    inferences = [_timed(lambda b=b: inference_stage(engine, b), times["infer"], cpu["infer"])[0] for b in batches]
    smoother = TemporalSmoother()
    predictions = [_timed(lambda i=i: postprocess_stage(i, settings, contract, smoother), times["postprocess"],
                          cpu["postprocess"]) for i in inferences]
    results = [_timed(lambda p=p: overlay_stage(p.frame, p, settings), times["overlay"], cpu["overlay"])
               for p in predictions]
    if sink_kind != "null":
        sink = make_sink(sink_kind, info, folder)
        for result in results:
            _timed(lambda r=result: sink.write(r), times["encode"], cpu["encode"])
        close_ms: list[float] = []
        close_cpu: list[float] = []
        _timed(sink.close, close_ms, close_cpu)
        if times["encode"]:  # flushing the encoder is part of encoding: spread it over the frames
            times["encode"] = [t + close_ms[0] / len(times["encode"]) for t in times["encode"]]
            cpu["encode"] = [t + close_cpu[0] / len(cpu["encode"]) for t in cpu["encode"]]
    out: dict[str, Any] = {}
    for name in STAGE_NAMES:
        ms = times[name]
        if not ms:
            out[name] = {"status": "skipped", "reason": "null sink: nothing is encoded"}
            continue
        out[name] = {"status": "ok", "fps": round(1000.0 * len(ms) / sum(ms), 2), **common.percentiles(ms),
                     "cpu_ms": round(float(np.mean(cpu[name])), 4)}
    if inputs.memory is not None:  # decoded before the run: the pipeline and the naive loop read from memory
        out["decode"]["in_pipeline"] = False
    out["encode"]["what"] = {"mp4": "H.264 MP4 (PyAV)", "jsonl": "JSON Lines", "null": "nothing"}[sink_kind]
    return out, len(frames)


def naive_loop(engine: Any, inputs: Inputs, sink_kind: str, folder: Path) -> dict[str, Any]:
    """(b): one frame at a time through the same stage functions, in this thread."""
    from polyp_live.realtime.core.postprocess import TemporalSmoother
    from polyp_live.realtime.core.stages import (
        inference_stage,
        overlay_stage,
        postprocess_stage,
        preprocess_stage,
    )
    from polyp_live.train.fov import FieldOfViewTracker

    settings, contract, smoother, fov = FILE_SETTINGS, engine.contract, TemporalSmoother(), FieldOfViewTracker()
    start = time.perf_counter()
    source = inputs.open()
    sink = make_sink(sink_kind, source.info, folder)
    done: list[float] = []
    try:
        while inputs.max_frames is None or len(done) < inputs.max_frames:
            frame = source.read()
            if frame is None:
                break
            inference = inference_stage(engine, preprocess_stage(engine, [frame], fov))[0]
            prediction = postprocess_stage(inference, settings, contract, smoother)
            sink.write(overlay_stage(frame, prediction, settings))
            done.append(time.perf_counter())
    finally:
        sink.close()
        source.close()
    wall = time.perf_counter() - start
    return {"frames": len(done), "wall_s": round(wall, 4), "wall_fps": round(len(done) / wall, 2),
            "fps": steady_fps(done, start, start + wall)}


def steady_fps(done: Sequence[float], start: float, end: float) -> float:
    """Frames per second after the first tenth of the frames (start-up excluded: threads, per-thread CUDA
    handles), up to ``end`` (the sink closed: an encoder's final flush is included); the whole wall time
    when there are fewer than 10 frames."""
    skip = len(done) // 10
    if skip == 0:
        return round(len(done) / max(1e-9, end - start), 2)
    return round((len(done) - skip) / max(1e-9, end - done[skip - 1]), 2)


def threaded_pipeline(engine: Any, inputs: Inputs, sink_kind: str, folder: Path,
                      limit: int | None = None) -> dict[str, Any]:
    """(a): the threaded pipeline in file mode (every frame processed and written, in order);
    ``limit``: only the first frames (the untimed warm-up run)."""
    from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig

    start = time.perf_counter()
    source = inputs.open(limit)
    sink = make_sink(sink_kind, source.info, folder)
    max_frames = limit if limit is not None else inputs.max_frames
    pipeline = Pipeline(source, engine, PipelineConfig(live=False, max_frames=max_frames, settings=FILE_SETTINGS),
                        [sink])
    done: list[float] = []
    with pipeline:
        for _ in pipeline:
            done.append(time.perf_counter())
    wall = time.perf_counter() - start
    summary = pipeline.summary()
    latency = {item.stage: {"p50_ms": item.p50_ms, "p95_ms": item.p95_ms} for item in summary.latency if item.count}
    return {"frames": len(done), "wall_s": round(wall, 4), "wall_fps": round(len(done) / wall, 2),
            "fps": steady_fps(done, start, start + wall), "batch": pipeline.batch,
            "summary_throughput_fps": summary.throughput_fps, "stage_latency_in_pipeline": latency}


def bench_input(engine: Any, path: Path, *, max_frames: int | None, decoder: str, sink_kind: str,
                upscale: bool, repeat: int = 1, loops: int = 1, yuv: bool = True) -> dict[str, Any]:
    """All three measurements for one input; naive and pipeline alternate ``repeat`` times (best kept),
    after an untimed warm-up pipeline run over the first frames."""
    inputs = Inputs(path, decoder, max_frames, upscale, loops, yuv)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = Path(tmp)
        threaded_pipeline(engine, inputs, sink_kind, folder, limit=WARMUP_FRAMES)
        stages, frames = stages_alone(engine, inputs, sink_kind, folder)
        naive_runs, pipe_runs = [], []
        for _ in range(max(1, repeat)):
            naive_runs.append(naive_loop(engine, inputs, sink_kind, folder))
            pipe_runs.append(threaded_pipeline(engine, inputs, sink_kind, folder))
    naive = max(naive_runs, key=lambda r: r["fps"])
    pipe = max(pipe_runs, key=lambda r: r["fps"])
    return {"input": str(path), "frames": frames, "size": _size_of(inputs), "decoder": decoder, "sink": sink_kind,
            "pictures": "yuv420p" if yuv and decoder == "av" and not upscale else "rgb24",
            "upscale_1080p": upscale, "loops": loops if decoder == "opencv" else 1,
            "stages": stages, "naive": naive, "pipeline": pipe,
            "repeats": {"naive_fps": [r["fps"] for r in naive_runs], "pipeline_fps": [r["fps"] for r in pipe_runs]},
            **judge(pipe["fps"], naive["fps"], stages)}


def _size_of(inputs: Inputs) -> str:
    source = inputs.open()
    try:
        return f"{source.info.width}x{source.info.height}"
    finally:
        source.close()


def judge(pipeline_fps: float, naive_fps: float, stages: dict[str, Any]) -> dict[str, Any]:
    measured = {name: s["fps"] for name, s in stages.items()
                if s.get("status") == "ok" and s.get("in_pipeline", True)}
    slowest = min(measured, key=measured.__getitem__)
    vs_slowest = pipeline_fps / measured[slowest]
    vs_naive = pipeline_fps / naive_fps
    ceiling = cpu_ceiling_fps(stages)
    return {"slowest_stage": slowest, "slowest_stage_fps": measured[slowest],
            "pipeline_vs_slowest": round(vs_slowest, 3), "pipeline_vs_naive": round(vs_naive, 3),
            "pass_vs_slowest": vs_slowest >= TARGET_VS_SLOWEST, "pass_vs_naive": vs_naive >= TARGET_VS_NAIVE,
            "cpu_ms_per_frame": round(sum(stage_cpu_ms(stages).values()), 3), "cpu_ceiling_fps": ceiling,
            "pipeline_vs_cpu_ceiling": round(pipeline_fps / ceiling, 3) if ceiling else None}


def stage_cpu_ms(stages: dict[str, Any]) -> dict[str, float]:
    """CPU milliseconds per frame of every stage the pipeline runs (all threads of the process)."""
    return {name: s["cpu_ms"] for name, s in stages.items()
            if s.get("status") == "ok" and s.get("in_pipeline", True) and "cpu_ms" in s}


def cpu_ceiling_fps(stages: dict[str, Any], cores: int | None = None) -> float | None:
    """The machine's limit for this work: every core busy with the stages' CPU time and nothing else. Where one
    stage alone already keeps every core busy (ONNX Runtime on both cores), the pipeline cannot overlap it with
    the others, and this -- not the slowest stage's rate -- is the ceiling."""
    total = sum(stage_cpu_ms(stages).values())
    return round((cores or common.cpu_cores()) * 1000.0 / total, 2) if total > 0 else None


def aggregate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """All inputs together: total frames / total time, per mode and per stage."""
    frames = sum(i["frames"] for i in items)
    naive_s = sum(i["frames"] / i["naive"]["fps"] for i in items)  # steady-state seconds
    pipe_s = sum(i["frames"] / i["pipeline"]["fps"] for i in items)
    stages = {}
    for name in STAGE_NAMES:
        parts = [i["stages"][name] for i in items if i["stages"][name].get("status") == "ok"]
        if parts:
            total_ms = sum(p["mean_ms"] * p["count"] for p in parts)
            count = sum(p["count"] for p in parts)
            stages[name] = {"status": "ok", "fps": round(1000.0 * count / total_ms, 2),
                            "in_pipeline": all(p.get("in_pipeline", True) for p in parts)}
            if all("cpu_ms" in p for p in parts):
                stages[name]["cpu_ms"] = sum(p["cpu_ms"] * p["count"] for p in parts) / count
        else:
            stages[name] = {"status": "skipped"}
    naive_fps, pipe_fps = frames / naive_s, frames / pipe_s
    return {"frames": frames, "naive_fps": round(naive_fps, 2), "pipeline_fps": round(pipe_fps, 2),
            "stage_fps": {k: v.get("fps") for k, v in stages.items()}, **judge(pipe_fps, naive_fps, stages)}


# ----------------------------------------------------------------------------- report


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Pipeline benchmark ({report['machine']['tag']})", "", common.machine_line(report["machine"]), "",
             f"Engine: {report['engine']} ({report['engine_note']}). Decoder: {report['decoder']}; "
             f"sink: {report['sink']}. {report.get('note', '')} Pipeline/naive fps: steady state (after the first "
             "tenth of the frames, after a warm-up run); (wall): frames / whole wall time.", ""]
    headers = ("input", "size", "frames", "pipeline fps", "(wall)", "naive fps", "(wall)", "pipe/naive",
               "slowest stage", "slowest fps", "pipe/slowest", "CPU ceiling fps", "pipe/ceiling",
               *[f"{s} fps" for s in STAGE_NAMES])
    rows = []
    for item in report["inputs"]:
        rows.append([Path(item["input"]).name, item["size"], item["frames"], item["pipeline"]["fps"],
                     item["pipeline"]["wall_fps"], item["naive"]["fps"], item["naive"]["wall_fps"],
                     item["pipeline_vs_naive"], item["slowest_stage"],
                     item["slowest_stage_fps"], item["pipeline_vs_slowest"], item.get("cpu_ceiling_fps"),
                     item.get("pipeline_vs_cpu_ceiling"), *[item["stages"][s].get("fps") for s in STAGE_NAMES]])
    agg = report["aggregate"]
    rows.append(["**all**", "", agg["frames"], agg["pipeline_fps"], "", agg["naive_fps"], "", agg["pipeline_vs_naive"],
                 agg["slowest_stage"], agg["slowest_stage_fps"], agg["pipeline_vs_slowest"],
                 agg.get("cpu_ceiling_fps"), agg.get("pipeline_vs_cpu_ceiling"),
                 *[agg["stage_fps"].get(s) for s in STAGE_NAMES]])
    lines.append(common.markdown_table(headers, rows))
    lines += ["", "Per-stage latency alone (ms, p50 / p95):", ""]
    lat_rows = [[Path(i["input"]).name, *[_lat(i["stages"][s]) for s in STAGE_NAMES]] for i in report["inputs"]]
    lines.append(common.markdown_table(("input", *STAGE_NAMES), lat_rows))
    lines += ["", f"CPU time per frame, each stage alone (ms, every thread of the process; the CPU ceiling is "
              f"{report['machine']['cores']} cores x 1000 / their sum):", ""]
    cpu_rows = [[Path(i["input"]).name, *[i["stages"][s].get("cpu_ms", "-") for s in STAGE_NAMES],
                 i.get("cpu_ms_per_frame", "-")] for i in report["inputs"]]
    lines.append(common.markdown_table(("input", *STAGE_NAMES, "sum"), cpu_rows))
    lines += ["", *report["verdict"], "", f"Load average at the end: {report['machine'].get('load_average_end')}"]
    return "\n".join(lines)


def _lat(stage: dict[str, Any]) -> str:
    return f"{stage['p50_ms']:.2f} / {stage['p95_ms']:.2f}" if stage.get("status") == "ok" else "-"


def verdict(agg: dict[str, Any], cores: int) -> list[str]:
    return [
        f"pipeline {agg['pipeline_fps']:.1f} fps vs slowest stage ({agg['slowest_stage']}) "
        f"{agg['slowest_stage_fps']:.1f} fps: ratio {agg['pipeline_vs_slowest']:.2f} (target >= {TARGET_VS_SLOWEST}) "
        f"{common.pass_fail(agg['pass_vs_slowest'])}",
        f"pipeline {agg['pipeline_fps']:.1f} fps vs naive {agg['naive_fps']:.1f} fps: ratio "
        f"{agg['pipeline_vs_naive']:.2f} (target >= {TARGET_VS_NAIVE} on 2 CPU cores; this machine: {cores} cores) "
        f"{common.pass_fail(agg['pass_vs_naive'])}",
        f"pipeline {agg['pipeline_fps']:.1f} fps vs the CPU ceiling {agg.get('cpu_ceiling_fps')} fps (every core busy "
        f"with the stages' CPU time): ratio {agg.get('pipeline_vs_cpu_ceiling')}",
    ]


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_pipeline.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", type=Path,
                        help="video file (repeatable; default: the CVC-ClinicDB clips and the 1080p sample)")
    parser.add_argument("--max-frames", type=int, help="at most N frames per input")
    common.add_engine_args(parser)
    parser.add_argument("--decoder", default="auto", choices=("auto", "av", "opencv"),
                        help="auto: PyAV when installed, else OpenCV into memory")
    parser.add_argument("--sink", default="auto", choices=("auto", "mp4", "jsonl", "null"),
                        help="auto: mp4 with PyAV, else jsonl")
    parser.add_argument("--upscale-1080p", action="store_true", help="resize every frame to 1920x1080 at capture")
    parser.add_argument("--loops", type=int, default=1, help="with --decoder opencv: play each clip N times")
    parser.add_argument("--repeat", type=int, default=1, help="alternate naive/pipeline runs N times, keep the best")
    parser.add_argument("--rgb", action="store_true", help="decode to RGB (the path before frames stayed in 4:2:0)")
    parser.add_argument("--hd", action="store_true", help="add the Full-HD clips (benchmarks/hd_clips.py: the demo "
                        "clip at 1440x1080 and, with a tower's black bars, at 1920x1080)")
    common.add_output_args(parser, SCRIPT)
    return parser


def open_bench_engine(spec: str, size: int | None, backend: str, precision: str | None, device: str,
                      threads: int | None) -> tuple[Any, str]:
    """An engine for a checkpoint/ONNX/engine path, 'default' or random:VARIANT; (engine, note)."""
    from polyp_live.engines.registry import open_engine

    if spec == "auto":
        spec = common.default_engine_spec()
    note = spec
    path: Any = spec
    if spec.startswith("random:") or spec == "default" or spec.endswith(".safetensors"):
        path, note = common.prepare_checkpoint(spec, size or (256 if spec.startswith("random:") else None))
    engine = open_engine(path, backend=backend, device=device, precision=precision, threads=threads)
    return engine, note


def resolve_io(args: argparse.Namespace) -> tuple[str, str]:
    from polyp_live.train.errors import PolypLiveError

    have_av = common.av_available()
    decoder = args.decoder if args.decoder != "auto" else ("av" if have_av else "opencv")
    sink = args.sink if args.sink != "auto" else ("mp4" if have_av else "jsonl")
    if not have_av and (decoder == "av" or sink == "mp4"):
        raise PolypLiveError("PyAV is not available here; use --decoder opencv and --sink jsonl or null")
    return decoder, sink


def run(args: argparse.Namespace, engine: Any = None, engine_note: str = "") -> dict[str, Any]:
    from polyp_live.train.errors import PolypLiveError

    decoder, sink = resolve_io(args)
    paths = list(args.input or ([] if args.hd else common.default_videos()))
    if args.hd:
        from benchmarks.hd_clips import hd_clips

        paths += hd_clips()
    if not paths:
        raise PolypLiveError("no input videos: give --input (the CVC-ClinicDB clips and samples/ were not found)")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise PolypLiveError(f"input not found: {', '.join(missing)}")
    own = engine is None
    if own:
        engine, engine_note = open_bench_engine(args.engine, args.size, args.backend, args.precision, args.device,
                                                args.threads)
    device = engine.info.device
    report: dict[str, Any] = {"kind": SCRIPT, "machine": common.machine_info("cuda" if device != "cpu" else "cpu"),
                              "engine": engine.describe(), "engine_note": engine_note, "decoder": decoder,
                              "sink": sink, "inputs": []}
    if decoder == "opencv":
        report["note"] = ("Frames decoded with OpenCV into memory first (no PyAV); the pipeline and the naive loop "
                          f"read from memory and write {sink} instead of an MP4.")
    try:
        for path in paths:
            item = bench_input(engine, Path(path), max_frames=args.max_frames, decoder=decoder, sink_kind=sink,
                               upscale=args.upscale_1080p, repeat=args.repeat, loops=args.loops, yuv=not args.rgb)
            report["inputs"].append(item)
            print(f"{Path(path).name}: {item['frames']} frames {item['size']}: pipeline {item['pipeline']['fps']:.1f} "
                  f"fps, naive {item['naive']['fps']:.1f} fps, slowest stage {item['slowest_stage']} "
                  f"{item['slowest_stage_fps']:.1f} fps", flush=True)
    finally:
        if own:
            engine.close()
    report["aggregate"] = aggregate(report["inputs"])
    report["verdict"] = verdict(report["aggregate"], report["machine"]["cores"])
    report["machine"]["load_average_end"] = common.load_average()
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    report = run(args)
    common.write_report(SCRIPT, args, report, to_markdown(report))
    return 0


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
