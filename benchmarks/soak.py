"""Soak test: live mode on a simulated 60 fps camera for N minutes, checking that nothing drifts.

    python benchmarks/soak.py --minutes 30                       # one window per minute
    python benchmarks/soak.py --minutes 0.5 --window-seconds 7.5 # the 30-second version (tests/test_soak.py)

Per window: display latency p50/p95, mask age p50/p95, frames dropped, RSS, Python and OS thread counts.
A metric drifts when the median of the last third of the windows exceeds the median of the first third by
more than 5% and by more than its floor (display latency: half a frame period for p50, one for p95; mask
wait = mask age minus the model's own time: one / two periods; inference p50: half of itself; 5 points of
drop rate; 16 MiB of RSS; any extra thread); see :data:`benchmarks.bench_live.DRIFT_FLOORS`. The 1-minute
load average is recorded per window: on a shared machine, load from other programs moves latencies too.
After the run every pipeline thread must be gone. Exit code 1 on drift or leftover threads.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/soak.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from benchmarks.bench_live import DRIFT_FLOORS, live_session, parse_resolution

logger = logging.getLogger("benchmarks.soak")

SCRIPT = "soak"
WINDOW_KEYS = ("t_end_s", "shown", "dropped", "drop_rate", "display_p50_ms", "display_p95_ms", "mask_age_p50_ms",
               "mask_age_p95_ms", "mask_wait_p95_ms", "inference_p50_ms", "rss_mb", "python_threads", "os_threads",
               "load_1min")


def print_window(stats: dict[str, Any]) -> None:
    print("  ".join(f"{k}={stats.get(k)}" for k in WINDOW_KEYS), flush=True)


def verdict(session: dict[str, Any]) -> tuple[bool, list[str]]:
    lines = []
    for key in DRIFT_FLOORS:
        item = session["drift"][key]
        if "first" in item:
            lines.append(f"{key}: first {item['first']} -> last {item['last']} (growth {item['growth']}, "
                         f"floor {item['floor']}) {'DRIFT' if item['drift'] else 'ok'}")
        else:
            lines.append(f"{key}: {item['status']}")
    leftover = session["leftover_pipeline_threads"]
    lines.append(f"threads before {session['threads_before']}, after shutdown {session['threads_after']}; "
                 f"leftover pipeline threads: {leftover or 'none'}")
    ok = not session["drift"]["any"] and not leftover and session["threads_after"] <= session["threads_before"]
    lines.append(f"soak {common.pass_fail(ok)}")
    return ok, lines


def to_markdown(report: dict[str, Any]) -> str:
    session = report["session"]
    lines = [f"# Soak ({report['machine']['tag']})", "", common.machine_line(report["machine"]), "",
             f"Engine: {report['engine']} ({report['engine_note']}). Simulated camera {session['resolution']} at "
             f"{session['fps']:g} fps, {session['seconds']:g} s in windows of {session['window_s']:g} s after "
             f"{session['warmup_s']:g} s warm-up. Latencies in ms.", ""]
    rows = [[w.get(k) for k in WINDOW_KEYS] for w in session["windows"]]
    lines.append(common.markdown_table(WINDOW_KEYS, rows))
    lines += ["", *[f"- {line}" for line in report["verdict"]], "",
              f"Load average at the end: {report['machine'].get('load_average_end')}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="measured minutes (10)")
    parser.add_argument("--window-seconds", type=float, default=60.0, help="window length (60)")
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="discarded start (2)")
    parser.add_argument("--fps", type=float, default=60.0, help="camera rate (60)")
    parser.add_argument("--resolution", default="640x480", help="camera WxH (640x480)")
    common.add_engine_args(parser)
    common.add_output_args(parser, SCRIPT)
    return parser


def main(argv: list[str] | None = None, engine: Any = None) -> int:
    """``engine``: use this engine instead of opening ``--engine`` (tests pass a fixed-latency stand-in)."""
    from benchmarks.bench_pipeline import open_bench_engine
    from polyp_live.train.errors import PolypLiveError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.minutes <= 0 or args.window_seconds <= 0:
        raise PolypLiveError("--minutes and --window-seconds must be positive")
    width, height = parse_resolution(args.resolution)
    own = engine is None
    if own:
        engine, note = open_bench_engine(args.engine, args.size, args.backend, args.precision, args.device,
                                         args.threads)
    else:
        note = f"given engine {type(engine).__name__}"
    try:
        session = live_session(engine, fps=args.fps, width=width, height=height, seconds=args.minutes * 60.0,
                               window_s=args.window_seconds, warmup_s=args.warmup_seconds, on_window=print_window)
    finally:
        if own:
            engine.close()
    ok, lines = verdict(session)
    report: dict[str, Any] = {"kind": SCRIPT, "machine": common.machine_info(engine.info.device),
                              "engine": engine.describe(), "engine_note": note, "session": session,
                              "verdict": lines, "passed": ok}
    report["machine"]["load_average_end"] = common.load_average()
    common.write_report(SCRIPT, args, report, to_markdown(report))
    return 0 if ok else 1


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
