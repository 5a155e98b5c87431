"""The live view with the viewer painting: a simulated camera feeds the live pipeline, and the PyQt6 window paints
every result it is handed, as ``polyp-live --device ...`` does.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_viewer.py --engine default     # = bench_live.py --viewer

Per run: camera ticks, results handed to the window, frames painted, **display drops** (results that arrived while
the window was still painting the previous one: latest-frame-wins drops them, :class:`QtDisplaySink`), the pipeline's
own drops (ticks that never reached the window), and the latency from capture to *painted* (p50/p95). Target: 0
display drops at the camera's rate. Offscreen, painting is the window's own work (the frame to a pixmap, scaled to the
window); a real screen adds the compositor's, which this does not measure.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_viewer.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from benchmarks.bench_live import LatencyRecorder

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


def session_row(s: dict[str, Any]) -> list[Any]:
    return [s["fps"], s["resolution"], s["camera_ticks"], s["handed_to_window"], s["painted"], s["display_drops"],
            s["pipeline_drops"], s["capture_to_painted"].get("p50_ms"), s["capture_to_painted"].get("p95_ms"),
            common.pass_fail(s["pass"])]


def to_markdown(report: dict[str, Any]) -> str:
    platform = report["sessions"][0]["platform"] if report["sessions"] else "?"
    return "\n".join([f"# Live view with the viewer painting ({report['machine']['tag']})", "",
                      common.machine_line(report["machine"]), "",
                      f"Engine: {report['engine']} ({report['engine_note']}). Simulated camera, live mode, the "
                      f"PyQt6 window ({platform} platform, {WINDOW_SIZE[0]}x{WINDOW_SIZE[1]}) painting every result "
                      f"it is handed; {report['seconds']} s after {report['warmup_s']} s warm-up.", "",
                      common.markdown_table(HEADERS, [session_row(s) for s in report["sessions"]]), "",
                      f"Load average at the end: {report['machine'].get('load_average_end')}"])


def main(argv: list[str] | None = None) -> int:
    """``bench_live.py --viewer`` at 60 fps and 1920x1080 unless ``argv`` says otherwise (later options win)."""
    from benchmarks import bench_live

    given = sys.argv[1:] if argv is None else argv
    return bench_live.main(["--viewer", "--fps", "60", "--resolution", "1920x1080", *given])


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
