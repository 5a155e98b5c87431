"""Live-mode latency: a simulated camera at 30 and 60 fps, or a network stream, feeds the live pipeline.

    python benchmarks/bench_live.py                          # 30 and 60 fps, 20 s each, 640x480
    python benchmarks/bench_live.py --fps 60 --seconds 60 --resolution 1920x1080 --engine default
    python benchmarks/bench_live.py --network udp --seconds 600 --engine default   # the 10-minute network target
    python benchmarks/bench_live.py --viewer --fps 60 --resolution 1920x1080 --engine default  # the window painting

``--network udp``: a sender process (``python -m tests.stream_sender``: x264 zerolatency, MPEG-TS over UDP on the
loopback, paced in real time, looping ``--clip``) feeds ``polyp-live``'s network source
(:mod:`polyp_live.realtime.sources.network`); latency is measured from each frame's arrival, and the report adds the
start-up delay (open -> first fresh frame, target <= 1 s) and the stale frames the live policy dropped.

Records, per shown frame, the capture-to-display latency (camera tick -> annotated frame handed to the
output stage's sink, i.e. what a display would show) and the mask age (capture of the frame whose mask
is drawn -> display); the dropped-frame rate (camera ticks not shown); and the trend over time (least-
squares slope in ms per minute, and first vs last window). Targets (PASS/FAIL): display p95 <= inference
p50 + 2 frame periods; mask-age p95 <= preprocess + inference + postprocess p95 + 2 frame periods; no drift.
The measurement machinery (:func:`live_session`, :func:`drift`) is shared with ``benchmarks/soak.py``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_live.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks import common
from polyp_live.realtime.ports import SinkBase

logger = logging.getLogger("benchmarks.bench_live")

SCRIPT = "bench_live"
DRIFT_RELATIVE = 0.05  # growth beyond 5% of the first windows' value ...
# ... and beyond an absolute floor, so that noise on small numbers does not count. Floor of each metric:
# absolute + a x frame period + b x inference p50 (the mask age rides on the inference time, which moves with
# whatever else the CPU runs; a change smaller than half an inference is load noise, not drift).
DRIFT_FLOORS: dict[str, tuple[float, float, float]] = {
    "display_p50_ms": (0.0, 0.5, 0.0),
    "display_p95_ms": (0.0, 1.0, 0.0),
    "mask_wait_p50_ms": (0.0, 1.0, 0.0),  # mask age minus the model's own time: the pipeline's queueing
    "mask_wait_p95_ms": (0.0, 2.0, 0.0),
    "inference_p50_ms": (0.0, 0.0, 0.5),
    "drop_rate": (0.05, 0.0, 0.0),
    "rss_mb": (16.0, 0.0, 0.0),
    "python_threads": (0.5, 0.0, 0.0),
    "os_threads": (0.5, 0.0, 0.0),
}


Record = tuple[float, float, float, int, float, float]


class LatencyRecorder(SinkBase):
    """A sink that timestamps every shown result: :data:`Record` (done, display latency s, mask age s or NaN,
    frame index, the drawn mask's preprocess + inference + postprocess s or NaN, its inference s or NaN)."""

    name = "latency"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._new: list[Record] = []
        self.total = 0

    def write(self, result: Any) -> None:
        now = time.monotonic()
        prediction = result.prediction
        age = model = infer = math.nan
        if prediction is not None:
            times = prediction.times
            age = now - prediction.frame.capture_time
            model, infer = times.preprocess + times.inference + times.postprocess, times.inference
        with self._lock:
            self._new.append((now, now - result.frame.capture_time, age, result.frame.index, model, infer))
            self.total += 1

    def take(self) -> list[Record]:
        with self._lock:
            records, self._new = self._new, []
        return records

    def close(self) -> None:
        pass


def window_stats(records: Sequence[Record], previous_index: int | None,
                 t0: float) -> dict[str, Any]:
    """Latency percentiles, drops, memory and threads for one window of records."""
    display = [r[1] * 1000.0 for r in records]
    ages = [r[2] * 1000.0 for r in records if not math.isnan(r[2])]
    stats: dict[str, Any] = {"t_end_s": round(records[-1][0] - t0, 2) if records else None, "shown": len(records)}
    if records:
        first_index = previous_index + 1 if previous_index is not None else records[0][3]
        ticks = records[-1][3] - first_index + 1
        stats.update({"camera_ticks": ticks, "dropped": max(0, ticks - len(records)),
                      "drop_rate": round(max(0, ticks - len(records)) / max(1, ticks), 4)})
        d, a = common.percentiles(display), common.percentiles(ages)
        stats.update({"display_p50_ms": d["p50_ms"], "display_p95_ms": d["p95_ms"], "display_p99_ms": d["p99_ms"]})
        if ages:
            stats.update({"mask_age_p50_ms": a["p50_ms"], "mask_age_p95_ms": a["p95_ms"]})
            wait = common.percentiles([(r[2] - r[4]) * 1000.0 for r in records if not math.isnan(r[2])])
            infer = common.percentiles(sorted({r[5] * 1000.0 for r in records if not math.isnan(r[5])}))
            stats.update({"mask_wait_p50_ms": wait["p50_ms"], "mask_wait_p95_ms": wait["p95_ms"],
                          "inference_p50_ms": infer["p50_ms"]})
    stats.update({"rss_mb": round(common.rss_mb(), 1), "python_threads": threading.active_count(),
                  "os_threads": common.thread_count(), "load_1min": (common.load_average() or [None])[0]})
    return stats


def live_session(engine: Any, *, fps: float, width: int, height: int, seconds: float, window_s: float,
                 warmup_s: float = 2.0, on_window: Callable[[dict[str, Any]], None] | None = None,
                 source: Any = None) -> dict[str, Any]:
    """Run the live pipeline on a simulated camera (or ``source``, opened here: its own rate and size) for
    ``warmup_s + seconds``; windows of ``window_s``."""
    from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig, pipeline_threads
    from polyp_live.realtime.sources.simulated import SimulatedCamera

    threads_before = threading.active_count()
    recorder = LatencyRecorder()
    camera = source if source is not None else SimulatedCamera(fps, width, height, frames=None, realtime=True)
    if source is not None:
        info = source.open()
        fps, width, height = info.fps, info.width, info.height
    pipeline = Pipeline(camera, engine, PipelineConfig(live=True, deliver=False), [recorder])
    chunks: list[np.ndarray] = []  # one float64 array per window: the harness must not grow like a leak
    windows: list[dict[str, Any]] = []
    pipeline.start()
    try:
        t0 = time.monotonic()
        time.sleep(warmup_s)
        warm = recorder.take()
        last_index = warm[-1][3] if warm else None
        start = time.monotonic()
        n_windows = max(1, round(seconds / window_s))
        for k in range(1, n_windows + 1):
            time.sleep(max(0.0, start + k * window_s - time.monotonic()))
            if pipeline.finished.is_set():
                break
            records = recorder.take()
            stats = window_stats(records, last_index, t0)
            if records:
                last_index = records[-1][3]
            if records:
                chunks.append(np.asarray(records, dtype=np.float64))
            windows.append(stats)
            if on_window:
                on_window(stats)
    finally:
        pipeline.stop()
        pipeline.wait(10.0)
        pipeline.close()
    summary = pipeline.summary()
    all_records = np.concatenate(chunks) if chunks else np.empty((0, 6))
    time.sleep(0.05)
    leftover = [t.name for t in pipeline_threads()]
    return {"fps": fps, "resolution": f"{width}x{height}", "seconds": seconds, "window_s": window_s,
            "warmup_s": warmup_s, "windows": windows, "overall": overall(all_records, summary, fps),
            "trend": trend(all_records), "drift": drift(windows, 1000.0 / fps, _inference_p50(summary)),
            "threads_before": threads_before, "threads_after": threading.active_count(),
            "leftover_pipeline_threads": leftover, "summary_drops": dict(summary.drops),
            "stopped": summary.stopped, "error": summary.error,
            "startup_s": summary.startup_s, "stale_dropped": summary.counts.stale if summary.counts else 0}



def _inference_p50(summary: Any) -> float:
    return next((item.p50_ms for item in summary.latency if item.stage == "inference" and item.count), 0.0)


def overall(records: Sequence[Record] | np.ndarray, summary: Any, fps: float) -> dict[str, Any]:
    stage = {item.stage: item for item in summary.latency}
    display = common.percentiles([r[1] * 1000.0 for r in records])
    ages = common.percentiles([r[2] * 1000.0 for r in records if not math.isnan(r[2])])
    ticks = int(records[-1][3] - records[0][3] + 1) if len(records) else 0
    period = 1000.0 / fps
    model_p95 = sum(stage[s].p95_ms for s in ("preprocess", "inference", "postprocess") if s in stage)
    infer_p50 = stage["inference"].p50_ms if "inference" in stage else math.nan
    out = {"shown": len(records), "camera_ticks": ticks,
           "drop_rate": round(1 - len(records) / ticks, 4) if ticks else None,
           "display": display, "mask_age": ages, "inference_p50_ms": infer_p50,
           "inference_p95_ms": stage["inference"].p95_ms if "inference" in stage else math.nan,
           "model_p95_ms": round(model_p95, 3), "frame_period_ms": round(period, 3),
           "inferences": stage["inference"].count if "inference" in stage else 0}
    out["display_target_ms"] = round(infer_p50 + 2 * period, 3)
    out["mask_age_target_ms"] = round(model_p95 + 2 * period, 3)
    out["pass_display"] = bool(display.get("p95_ms", math.inf) <= out["display_target_ms"])
    out["pass_mask_age"] = bool(ages.get("p95_ms", math.inf) <= out["mask_age_target_ms"])
    return out


def trend(records: Sequence[Record] | np.ndarray) -> dict[str, Any]:
    """Least-squares slope of display latency and mask age over time, in ms per minute."""
    if len(records) < 10:
        return {"display_ms_per_min": None, "mask_age_ms_per_min": None}
    t = np.asarray([r[0] for r in records]) / 60.0
    out = {"display_ms_per_min": round(float(np.polyfit(t, [r[1] * 1000.0 for r in records], 1)[0]), 3)}
    aged = [(r[0] / 60.0, r[2] * 1000.0) for r in records if not math.isnan(r[2])]
    out["mask_age_ms_per_min"] = (round(float(np.polyfit(*zip(*aged, strict=True), 1)[0]), 3)
                                  if len(aged) >= 10 else None)
    return out


def drift(windows: Sequence[dict[str, Any]], period_ms: float, inference_ms: float = 0.0) -> dict[str, Any]:
    """Per metric: median of the first third of the windows vs median of the last third; drift when it grew
    by more than 5% and more than the metric's floor (:data:`DRIFT_FLOORS`)."""
    result: dict[str, Any] = {}
    k = max(1, len(windows) // 3)
    for key, (absolute, periods, inferences) in DRIFT_FLOORS.items():
        values = [w[key] for w in windows if w.get(key) is not None]
        if len(values) < 2:
            result[key] = {"status": "not enough windows"}
            continue
        floor = absolute + periods * period_ms + inferences * inference_ms
        first, last = float(np.median(values[:k])), float(np.median(values[-k:]))
        growth = last - first
        drifted = growth > DRIFT_RELATIVE * abs(first) and growth > floor
        result[key] = {"first": round(first, 3), "last": round(last, 3), "growth": round(growth, 3),
                       "floor": round(floor, 3), "drift": bool(drifted)}
    result["any"] = any(v.get("drift") for v in result.values() if isinstance(v, dict))
    return result


# ----------------------------------------------------------------------------- network stream
STARTUP_TARGET_S = 1.0  # open -> first fresh frame
SENDER_START_S = 30.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def udp_sender(clip: Path) -> Iterator[str]:
    """A ``tests.stream_sender`` process streaming ``clip`` to a free loopback UDP port; yields the URL."""
    root = Path(__file__).resolve().parents[1]
    url = f"udp://127.0.0.1:{free_udp_port()}"
    process = subprocess.Popen([sys.executable, "-m", "tests.stream_sender", url, "--clip", str(clip)], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = threading.Event()
        reader = threading.Thread(target=lambda: ready.set() if process.stdout and "READY" in process.stdout.readline()
                                  else None, daemon=True, name="bench-sender-ready")
        reader.start()
        if not ready.wait(SENDER_START_S):
            raise RuntimeError(f"the stream sender did not start within {SENDER_START_S:g} s")
        reader.join(1.0)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def network_session(engine: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One live session on a UDP MPEG-TS stream from a sender process, with the start-up target."""
    from polyp_live.realtime.sources.open import open_source

    with udp_sender(args.clip) as url:
        source = open_source(url)
        session = live_session(engine, fps=0.0, width=0, height=0, seconds=args.seconds, window_s=args.window_seconds,
                               warmup_s=args.warmup_seconds, source=source)
    session.update({"network": args.network, "url": url, "startup_target_s": STARTUP_TARGET_S,
                    "pass_startup": session["startup_s"] is not None and session["startup_s"] <= STARTUP_TARGET_S})
    return session


# ----------------------------------------------------------------------------- CLI


def session_rows(session: dict[str, Any]) -> list[Any]:
    o, d, a = session["overall"], session["overall"]["display"], session["overall"]["mask_age"]
    return [session["fps"], session["resolution"], o["shown"], o["drop_rate"], d.get("p50_ms"), d.get("p95_ms"),
            d.get("p99_ms"), a.get("p50_ms"), a.get("p95_ms"), a.get("p99_ms"), o["inference_p50_ms"],
            session["trend"]["display_ms_per_min"], session["trend"]["mask_age_ms_per_min"],
            common.pass_fail(o["pass_display"]), common.pass_fail(o["pass_mask_age"]),
            "yes" if session["drift"]["any"] else "no"]


HEADERS = ("camera fps", "size", "shown", "drop rate", "display p50", "p95", "p99", "mask age p50", "p95", "p99",
           "infer p50", "display trend ms/min", "mask trend ms/min", "display target", "mask target", "drift")


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Live latency ({report['machine']['tag']})", "", common.machine_line(report["machine"]), "",
             f"Engine: {report['engine']} ({report['engine_note']}). {report.get('input', 'Simulated camera')}, "
             "live mode (latest frame wins), "
             f"{report['seconds']} s per rate after {report['warmup_s']} s warm-up. Times in ms. Targets: display p95 "
             "<= inference p50 + 2 frame periods; mask age p95 <= model p95 + 2 frame periods; no drift.", ""]
    lines.append(common.markdown_table(HEADERS, [session_rows(s) for s in report["sessions"]]))
    for s in report["sessions"]:
        if s.get("network"):
            lines += ["", f"Network stream ({s['network']}, MPEG-TS from a sender process on the loopback): start-up "
                      f"to the first fresh frame {s['startup_s']} s (target <= {s['startup_target_s']:g} s: "
                      f"{common.pass_fail(s['pass_startup'])}), {s['stale_dropped']} stale frames dropped."]
    lines += ["", f"Load average at the end: {report['machine'].get('load_average_end')}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_live.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fps", default="30,60", help="camera rates, comma list (30,60)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per rate (20)")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="window for the trend (5)")
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="discarded start (2)")
    parser.add_argument("--resolution", default="640x480", help="camera WxH (640x480)")
    parser.add_argument("--network", choices=("udp",), help="measure a network stream instead of the camera")
    parser.add_argument("--clip", type=Path, default=Path(__file__).resolve().parents[1] / "samples" /
                        "cvc_clinicdb_seq01-09.mp4", help="--network: the clip the sender loops (the sample)")
    parser.add_argument("--viewer", action="store_true",
                        help="the PyQt6 window paints every result (benchmarks/bench_viewer.py: display drops, "
                             "capture -> painted)")
    common.add_engine_args(parser)
    common.add_output_args(parser, SCRIPT)
    return parser


def parse_resolution(text: str) -> tuple[int, int]:
    from polyp_live.train.errors import PolypLiveError

    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PolypLiveError(f"--resolution must look like 640x480, got {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_pipeline import open_bench_engine

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    width, height = parse_resolution(args.resolution)
    if args.viewer and args.network:
        from polyp_live.train.errors import PolypLiveError

        raise PolypLiveError("--viewer measures the simulated camera; leave out --network")
    viewer = importlib.import_module("benchmarks.bench_viewer") if args.viewer else None  # Qt only when asked
    script = viewer.SCRIPT if viewer else SCRIPT
    engine, note = open_bench_engine(args.engine, args.size, args.backend, args.precision, args.device, args.threads)
    report: dict[str, Any] = {"kind": script, "machine": common.machine_info(engine.info.device),
                              "engine": engine.describe(), "engine_note": note, "seconds": args.seconds,
                              "warmup_s": args.warmup_seconds, "sessions": []}
    try:
        if args.network:
            report["input"] = f"Network stream ({args.network}://, latency from each frame's arrival)"
            session = network_session(engine, args)
            report["sessions"].append(session)
            print(" ".join(str(v) for v in session_rows(session)), flush=True)
        for fps in (float(f) for f in args.fps.split(",") if f.strip() and not args.network):
            if viewer:
                session = viewer.viewer_session(engine, fps, width, height, args.seconds, args.warmup_seconds)
            else:
                session = live_session(engine, fps=fps, width=width, height=height, seconds=args.seconds,
                                       window_s=args.window_seconds, warmup_s=args.warmup_seconds)
            report["sessions"].append(session)
            print(" ".join(str(v) for v in (viewer.session_row if viewer else session_rows)(session)), flush=True)
    finally:
        engine.close()
    report["machine"]["load_average_end"] = common.load_average()
    common.write_report(script, args, report, (viewer.to_markdown if viewer else to_markdown)(report))
    return 0


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
