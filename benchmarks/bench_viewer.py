"""The live view with the viewer painting: a simulated camera feeds the live pipeline, and the PyQt6 window paints
every result it is handed, as ``polyp-live --device ...`` does.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_viewer.py --fps 60 --resolution 1920x1080 --engine default

Per run: camera ticks, results handed to the window, frames painted, **display drops** (results that arrived while
the window was still painting the previous one: latest-frame-wins drops them, :class:`QtDisplaySink`), the pipeline's
own drops (ticks that never reached the window), and the latency from capture to *painted* (p50/p95). Target: 0
display drops at the camera's rate. Offscreen, painting is the window's own work (the frame to a pixmap, scaled to the
window); a real screen adds the compositor's, which this does not measure.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_viewer.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from benchmarks.bench_live import LatencyRecorder, parse_resolution

SCRIPT = "bench_viewer"
WINDOW_SIZE = (1280, 720)


def viewer_session(engine: Any, fps: float, width: int, height: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig
    from polyp_live.realtime.settings import SettingsBox
    from polyp_live.realtime.sources.simulated import SimulatedCamera
    from polyp_live.realtime.viewer.window import QtDisplaySink, ViewerWindow, application, run_events_for

    class PaintClock(QtDisplaySink):
        """The window's display sink, timing capture -> painted for every painted frame."""

        def __init__(self) -> None:
            super().__init__()
            self.window: ViewerWindow | None = None
            self.painted: list[float] = []  # ms

        def done(self) -> None:  # GUI thread, right after the window painted its last_result
            result = self.window.last_result if self.window is not None else None
            if result is not None:
                self.painted.append((time.monotonic() - result.frame.capture_time) * 1000.0)
            super().done()

    app = application()
    camera = SimulatedCamera(fps, width, height, frames=None, realtime=True)
    recorder, settings, display = LatencyRecorder(), SettingsBox(), PaintClock()
    pipeline = Pipeline(camera, engine, PipelineConfig(live=True, deliver=False), [recorder], settings=settings)
    pipeline.add_sinks(display)
    with tempfile.TemporaryDirectory(prefix="bench-viewer-") as tmp:
        window = ViewerWindow(pipeline, settings, display, None, tmp)
        display.window = window
        window.resize(*WINDOW_SIZE)
        window.show()
        pipeline.start()
        try:
            run_events_for(warmup_s)
            recorder.take()
            display.painted.clear()
            shown0, dropped0 = display.shown, display.dropped
            run_events_for(seconds)
            records = recorder.take()
            painted, shown, dropped = list(display.painted), display.shown - shown0, display.dropped - dropped0
        finally:
            pipeline.stop()
            pipeline.wait(10.0)
            pipeline.close()
            window.close()
            app.processEvents()
    ticks = int(records[-1][3] - records[0][3] + 1) if records else 0
    return {"fps": fps, "resolution": f"{width}x{height}", "seconds": seconds, "warmup_s": warmup_s,
            "platform": app.platformName(), "window": f"{WINDOW_SIZE[0]}x{WINDOW_SIZE[1]}",
            "camera_ticks": ticks, "handed_to_window": len(records), "painted": shown,
            "display_drops": dropped, "pipeline_drops": max(0, ticks - len(records)),
            "capture_to_painted": common.percentiles(painted),
            "capture_to_output": common.percentiles([r[1] * 1000.0 for r in records]),
            "pass": dropped == 0}


HEADERS = ("camera fps", "size", "camera ticks", "to the window", "painted", "display drops", "pipeline drops",
           "capture->painted p50 ms", "p95 ms", "0 display drops")


def to_markdown(report: dict[str, Any]) -> str:
    rows = [(s["fps"], s["resolution"], s["camera_ticks"], s["handed_to_window"], s["painted"], s["display_drops"],
             s["pipeline_drops"], s["capture_to_painted"].get("p50_ms"), s["capture_to_painted"].get("p95_ms"),
             common.pass_fail(s["pass"])) for s in report["sessions"]]
    platform = report["sessions"][0]["platform"] if report["sessions"] else "?"
    return "\n".join([f"# Live view with the viewer painting ({report['machine']['tag']})", "",
                      common.machine_line(report["machine"]), "",
                      f"Engine: {report['engine']} ({report['engine_note']}). Simulated camera, live mode, the "
                      f"PyQt6 window ({platform} platform, {WINDOW_SIZE[0]}x{WINDOW_SIZE[1]}) painting every result "
                      f"it is handed; {report['seconds']} s after {report['warmup_s']} s warm-up.", "",
                      common.markdown_table(HEADERS, rows), "",
                      f"Load average at the end: {report['machine'].get('load_average_end')}"])


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_pipeline import open_bench_engine

    parser = argparse.ArgumentParser(prog="python benchmarks/bench_viewer.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fps", type=float, default=60.0, help="camera rate (60)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds (20)")
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="discarded start (2)")
    parser.add_argument("--resolution", default="1920x1080", help="camera WxH (1920x1080)")
    common.add_engine_args(parser)
    common.add_output_args(parser, SCRIPT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    width, height = parse_resolution(args.resolution)
    engine, note = open_bench_engine(args.engine, args.size, args.backend, args.precision, args.device, args.threads)
    report: dict[str, Any] = {"kind": SCRIPT, "machine": common.machine_info(engine.info.device),
                              "engine": engine.describe(), "engine_note": note, "seconds": args.seconds,
                              "warmup_s": args.warmup_seconds, "sessions": []}
    try:
        report["sessions"].append(viewer_session(engine, args.fps, width, height, args.seconds, args.warmup_seconds))
    finally:
        engine.close()
    report["machine"]["load_average_end"] = common.load_average()
    common.write_report(SCRIPT, args, report, to_markdown(report))
    return 0


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
