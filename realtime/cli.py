"""``polyp-live``: live polyp segmentation from a capture device or stream, or offline annotation of a file.

    polyp-live --device /dev/video0                       # live, Qt viewer
    polyp-live --input case.mp4 --output annotated.mp4    # offline annotation (progress bar, summary)
    polyp-live --input frames/ --fps 25 --jsonl out.jsonl # image folder at 25 fps
    polyp-live --input rtsp://host/stream --no-view --output rec.mp4

The viewer opens when a display is available (``QT_QPA_PLATFORM`` set, or ``DISPLAY`` /
``WAYLAND_DISPLAY``), PyQt6 is installed and its platform plugin loads (a child-process probe,
:mod:`polyp_live.realtime.viewer.qt_probe`: when it does not, one warning line says why), unless ``--no-view``;
otherwise the run is headless. In the viewer, files play at their own frame rate (``--speed``, ``--fast``).
A headless ``--input`` run with no ``--output``/``--jsonl``/``--masks`` says so, names the flags, and still
processes the input to print the summary (a dry run that measures speed and finds polyp episodes).
Ctrl+C / SIGTERM stop capture; what was captured is still processed and written, the MP4 stays playable,
and the exit code is 130; copies of the signal within 0.5 s (a supervisor signalling the process group) are the
same request, a later Ctrl+C aborts (the summary is still printed). Errors are one line (``--debug`` shows the
traceback), exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig
from polyp_live.realtime.core.signals import StopRequests, handling_stop_signals
from polyp_live.realtime.errors import OptionError, PipelineError, SourceError
from polyp_live.realtime.settings import RenderSettings, SettingsBox
from polyp_live.realtime.sinks.output_paths import (
    check_distinct_outputs,
    check_output_path,
    check_segment_outputs,
    check_video_suffix,
    segment_path,
)
from polyp_live.realtime.sinks.preview import PreviewSink, write_preview
from polyp_live.realtime.sinks.procedure_report import ReportSink, make_context, report_json_path, write_report
from polyp_live.realtime.sinks.recording import audio_warning
from polyp_live.realtime.sinks.report import format_summary, input_warnings
from polyp_live.realtime.sinks.writers import (
    DEFAULT_PRESET,
    LIVE_PRESET,
    JsonlSink,
    MaskPngSink,
    SegmentedVideoSink,
    VideoWriterSink,
)
from polyp_live.realtime.sources.base import locate_input
from polyp_live.realtime.sources.files import ImageFolderSource, VideoFileSource
from polyp_live.realtime.sources.network import RtspTransport
from polyp_live.realtime.sources.open import open_source
from polyp_live.realtime.sources.pacing import PacedSource
from polyp_live.realtime.sources.reconnect import DEFAULT_RECONNECT_S
from polyp_live.realtime.types import RunSummary
from polyp_live.train.alarm import DEFAULT_OFF_FRAMES, DEFAULT_ON_FRAMES, AlarmConfig
from polyp_live.train.cli_utils import make_parser, number_arg, run_cli, setup_logging

PROG = "polyp-live"
EXAMPLES = (
    "polyp-live --device /dev/video0                      # live, Qt viewer, bundled model",
    "polyp-live --input case.mp4 --output annotated.mp4 --jsonl case.jsonl --stats summary.json",
    "polyp-live --input samples/cvc_clinicdb_seq01-09.mp4 --output annotated.mp4 --preview sheet.png  # make demo",
    "polyp-live --input case.mp4 --engine runs/atto --speed 0.5   # a training run's best model, half speed",
)

MIN_FPS, MAX_FPS = 0.1, 1000.0
MAX_RESOLUTION_SIDE = 16384
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


positive_int = number_arg(int, lambda v: v >= 1, "a positive integer", "positive_int")
positive_float = number_arg(float, lambda v: v > 0, "a positive number", "positive_float")
# --reconnect-seconds: a finite number of seconds >= 0 (0: give up at once); nan and inf are refused
non_negative_seconds = number_arg(float, lambda v: 0 <= v < float("inf"), "seconds (0 or more)",
                                  "non_negative_seconds")


def frame_rate(text: str) -> float:
    """``--fps``: a finite rate in [MIN_FPS, MAX_FPS] (``nan``, ``inf``, ``0`` and ``1e-300`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frames per second, got {text!r}") from None
    if not MIN_FPS <= value <= MAX_FPS:  # False for nan as well
        raise argparse.ArgumentTypeError(f"must be a frame rate from {MIN_FPS:g} to {MAX_FPS:g} frames/s, got {text!r}")
    return value


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    """The frame-level decision and geometry options, the same for polyp-live and polyp-batch."""
    parser.add_argument("--threshold", type=float, help="pixel probability threshold (default: the model's "
                        "operating point)")
    parser.add_argument("--min-area", type=float, help="smallest reported region, fraction of the field of view "
                        "(default: the model's operating point)")
    parser.add_argument("--min-score", type=float, help="lowest reported region score, its mean probability "
                        "(default: the model's operating point)")
    parser.add_argument("--smooth", type=float, default=0.0, help="temporal smoothing of probabilities 0..<1 (EMA)")
    parser.add_argument("--no-crop", dest="crop", action="store_false",
                        help="do not crop to the endoscope's field of view (the whole frame goes into the model)")
    parser.add_argument("--alarm-on", type=positive_int, default=DEFAULT_ON_FRAMES, metavar="N",
                        help="the POLYP alarm turns on after N frames in a row with a reported region (1: at once); "
                        "regions are drawn only while it is on")
    parser.add_argument("--alarm-off", type=positive_int, default=DEFAULT_OFF_FRAMES, metavar="M",
                        help="the alarm turns off after M frames in a row without one")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, "Real-time polyp segmentation for colonoscopy video: live from a capture device or "
                         "stream in a Qt viewer, or offline annotation of a file or image folder.", EXAMPLES)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--device", help="capture device, e.g. /dev/video0 or 0 (live mode)")
    where.add_argument("--input", help="video file, image folder, or rtsp:// / http:// URL")
    parser.add_argument("--engine", default="default",
                        help="bundled model name, polyp-train run folder (its best), checkpoint, .onnx or .engine")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "torch", "onnxruntime"),
                        help="runtime (auto: the fastest this machine has, and says which)")
    parser.add_argument("--output", help="annotated H.264 MP4 to write (crash-safe: a killed run keeps all but "
                        "its last second)")
    parser.add_argument("--segment-minutes", type=positive_float, metavar="N",
                        help="with --output: one MP4 per N minutes of video, named from --output (rec.mp4 -> "
                        "rec_000.mp4, rec_001.mp4, ...), each playable on its own; no frame lost or repeated at a cut")
    parser.add_argument("--jsonl", help="JSON Lines file: one record per frame")
    parser.add_argument("--masks", help="folder for per-frame mask PNGs (frame_000123.png)")
    parser.add_argument("--stats", help="write the end-of-run summary as JSON")
    parser.add_argument("--preview", metavar="FILE.png",
                        help="contact sheet: a grid of frames with the mask drawn, timestamps, the polyp episodes")
    parser.add_argument("--report", metavar="FILE.html",
                        help="procedure report: one self-contained HTML page (timeline, a card per polyp, counts, "
                        "model, settings, speed) and FILE.json beside it")
    add_decision_options(parser)
    parser.add_argument("--opacity", type=float, default=0.4, help="mask fill opacity 0..1")
    parser.add_argument("--boxes", action="store_true", help="draw region boxes")
    parser.add_argument("--no-view", action="store_true", help="never open the viewer")
    parser.add_argument("--beep", action="store_true", help="viewer: a sound when the POLYP alarm turns on")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=positive_float, default=1.0,
                      help="viewer: play files at this multiple of their own frame rate")
    pace.add_argument("--fast", action="store_true", help="viewer: play files as fast as they are processed")
    parser.add_argument("--max-frames", type=positive_int, metavar="N",
                        help="stop after N frames taken from the source (the summary's 'in'; in live mode frames "
                             "dropped later count too, so fewer are written)")
    parser.add_argument("--resolution", help="capture resolution WxH (devices)")
    parser.add_argument("--fps", type=frame_rate, help="capture rate (devices) or playback rate (image folders)")
    parser.add_argument("--sync", action="store_true", help="live: show only frames whose own mask is ready")
    parser.add_argument("--batch", type=positive_int, help="file mode: frames per inference (default: engine's best)")
    parser.add_argument("--preset", choices=X264_PRESETS, metavar="PRESET",
                        help=f"x264 preset for --output (default: {DEFAULT_PRESET} for files, {LIVE_PRESET} for live)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="live", action="store_true", default=None,
                      help="treat the input as live (latest frame wins, stale frames dropped, reconnect); default: "
                      "udp/rtp/rtsp/srt/rtmp/tcp URLs and devices are live, http(s) is live when it has no duration")
    mode.add_argument("--no-live", dest="live", action="store_false",
                      help="treat the input as a file (every frame in order), also a network stream")
    parser.add_argument("--reconnect-seconds", type=non_negative_seconds, default=DEFAULT_RECONNECT_S, metavar="S",
                        help="live device or stream lost, or not there yet at start (a tower that boots after this "
                        "PC): keep trying for S seconds, one log line per attempt (0: give up at once; default "
                        f"{DEFAULT_RECONNECT_S:g})")
    parser.add_argument("--rtsp-transport", choices=[t.value for t in RtspTransport], default=RtspTransport.TCP.value,
                        help="rtsp://: RTP over the RTSP TCP connection (default, passes firewalls) or over UDP")
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    return parser


def parse_resolution(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise OptionError(f"--resolution must look like 1280x720, got {text!r}") from None
    if not (0 < width <= MAX_RESOLUTION_SIDE and 0 < height <= MAX_RESOLUTION_SIDE):
        raise OptionError(f"--resolution sides must be 1..{MAX_RESOLUTION_SIDE}, got {text!r}")
    return width, height


def ignored_options(args: argparse.Namespace, source: Any) -> None:
    """``--resolution`` sets a capture device's mode and ``--fps`` its rate or an image folder's: say when
    they are given for an input they cannot change (a file or stream keeps its own size and timestamps)."""
    if args.device is not None:
        return
    ignored = [flag for flag, given, used in (("--resolution", args.resolution, False),
                                              ("--fps", args.fps is not None, isinstance(source, ImageFolderSource)))
               if given and not used]
    if ignored:
        print(f"{PROG}: warning: {' and '.join(ignored)} ignored for {args.input}: it keeps its own picture size "  # noqa: T201
              "and timestamps (--resolution applies to --device only, --fps to --device and image folders)",
              file=sys.stderr)


def display_available() -> bool:
    """A display to open the viewer on, and PyQt6 installed (checked without importing it)."""
    has_display = bool(os.environ.get("QT_QPA_PLATFORM") or os.environ.get("DISPLAY")
                       or os.environ.get("WAYLAND_DISPLAY"))
    return has_display and importlib.util.find_spec("PyQt6") is not None


def viewer_starts() -> bool:
    """The Qt platform plugin loads (child-process probe); if not, one warning line and a headless run."""
    from polyp_live.realtime.viewer.qt_probe import viewer_problem

    problem = viewer_problem()
    if problem is not None:
        print(f"{PROG}: warning: no viewer, running headless (every output is still written): {problem}",  # noqa: T201
              file=sys.stderr)
    return problem is None


def check_outputs(args: argparse.Namespace) -> None:
    """Every output path is writable and none is an input (video, model file, its sidecar) -- before anything
    is opened."""
    from polyp_live.train.zoo import resolve_checkpoint

    engine = resolve_checkpoint(args.engine)  # the file a run folder / stem / bundled name stands for
    source = locate_input(args.input) if args.input else None
    inputs = (*((source.path,) if source is not None and source.path is not None else ()), engine,
              engine.with_suffix(".json"), engine.with_name(engine.name + ".json"))
    if args.preview and Path(args.preview).suffix.lower() != ".png":
        raise OptionError(f"--preview writes a PNG image; give a .png path, not {args.preview!r}")
    if args.report and Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise OptionError(f"--report writes an HTML page; give a .html path, not {args.report!r}")
    files = [(f"--{flag}", getattr(args, flag)) for flag in ("output", "jsonl", "stats", "preview", "report")
             if getattr(args, flag)]
    if args.report:
        files.append(("--report's JSON", str(report_json_path(args.report))))
    check_distinct_outputs(files, args.masks)
    if args.output:
        check_video_suffix(args.output)
    if args.segment_minutes is not None:
        check_segments(args, files, inputs)
    if args.masks:  # made first: a file output may lie inside it
        check_output_path(args.masks, inputs, folder=True)
    for _, value in files:
        check_output_path(value, inputs)


def check_segments(args: argparse.Namespace, files: list[tuple[str, str]], inputs: tuple[Any, ...]) -> None:
    """``--segment-minutes``: needs ``--output``; its segment names are checked like any output."""
    if not args.output:
        raise OptionError("--segment-minutes cuts the --output recording into files; give --output FILE.mp4")
    check_segment_outputs(args.output, [item for item in files if item[0] != "--output"], inputs)
    check_output_path(segment_path(args.output, 0), inputs)


def render_settings(args: argparse.Namespace, live: bool) -> RenderSettings:
    try:
        return RenderSettings(threshold=args.threshold, opacity=args.opacity, smooth=args.smooth,
                              min_area=args.min_area, min_score=args.min_score, show_boxes=args.boxes,
                              show_hud=live)
    except ValueError as exc:
        raise OptionError(f"bad option: {exc}") from None


def make_sinks(args: argparse.Namespace, info: Any) -> list[Any]:
    sinks: list[Any] = []
    try:
        if args.output:
            preset = args.preset or (LIVE_PRESET if info.live else DEFAULT_PRESET)
            if args.segment_minutes is not None:
                sinks.append(SegmentedVideoSink(args.output, info, args.segment_minutes * 60.0, preset=preset))
            else:
                sinks.append(VideoWriterSink(args.output, info, preset=preset))
        if args.jsonl:
            sinks.append(JsonlSink(args.jsonl))
        if args.masks:
            sinks.append(MaskPngSink(args.masks))
        if args.preview:
            sinks.append(PreviewSink(args.preview))
        if args.report:
            sinks.append(ReportSink(args.report))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def _announce_stop() -> None:
    print(f"\n{PROG}: stopping (finishing frames in flight; Ctrl+C again to abort)", file=sys.stderr)  # noqa: T201


@contextmanager
def stop_on_signals(pipeline: Pipeline) -> Iterator[StopRequests]:
    """SIGINT/SIGTERM stop capture and let the pipeline drain (:class:`StopRequests`); a later SIGINT aborts."""
    with handling_stop_signals(StopRequests(pipeline.stop, _announce_stop)) as requests:
        yield requests


def run_headless(pipeline: Pipeline, total: int | None) -> RunSummary:
    """Drive the pipeline from this thread with a progress bar (a line every few seconds off a terminal);
    returns the summary."""
    from polyp_live.train.progress import progress as progress_bar

    with pipeline, progress_bar(total=total, unit="frame", desc=PROG, dynamic_ncols=True) as bar:
        for _ in pipeline:
            bar.update(1)
    return pipeline.summary()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
    render_settings(args, live=False)  # option values checked before anything is opened
    check_outputs(args)
    want_view = display_available() and not args.no_view
    writes = bool(args.output or args.jsonl or args.masks or args.preview or args.report)
    live_device = args.device is not None
    source = open_source(args.device if live_device else args.input, fps=args.fps,
                         resolution=parse_resolution(args.resolution), device=live_device, live=args.live,
                         reconnect_s=args.reconnect_seconds, rtsp_transport=args.rtsp_transport,
                         yuv=not want_view)
    ignored_options(args, source)
    info = source.open()
    location = source.location if isinstance(source, VideoFileSource) else None
    if args.output and location is not None and location.path is not None and (line := audio_warning(location.path)):
        print(f"{PROG}: warning: {line}", file=sys.stderr)  # noqa: T201
    try:
        view = want_view and viewer_starts()
        if args.input and not view and not writes:
            print(f"{PROG}: nothing will be written (add --output FILE.mp4, --jsonl FILE, --masks DIR or "  # noqa: T201
                  "--preview FILE.png); processing for the summary only", file=sys.stderr)
        settings = SettingsBox(render_settings(args, info.live))
        from polyp_live.engines.registry import open_engine

        with open_engine(args.engine, backend=args.backend, batch=args.batch) as engine:
            return run(args, source, engine, settings, view)
    finally:
        source.close()


def run(args: argparse.Namespace, source: Any, engine: Any, settings: SettingsBox, view: bool) -> int:
    sinks = make_sinks(args, source.info)
    config = PipelineConfig(sync=args.sync, batch=args.batch, max_frames=args.max_frames,
                            settings=settings.get(), deliver=not view, crop=args.crop,
                            alarm=AlarmConfig(args.alarm_on, args.alarm_off))
    if view and not source.info.live and not args.fast:
        source = PacedSource(source, args.speed)  # files play at their own rate in the viewer
    pipeline = Pipeline(source, engine, config, sinks, settings)
    total = source.info.frame_count if not source.info.live else None
    if total is not None and args.max_frames is not None:
        total = min(total, args.max_frames)
    error: PipelineError | None = None
    aborted = False
    with stop_on_signals(pipeline) as requests:
        try:
            if view:
                from polyp_live.realtime.viewer.window import run_viewer

                summary = run_viewer(pipeline, settings, beep=args.beep)
            else:
                summary = run_headless(pipeline, total)
        except PipelineError as exc:
            if exc.summary is None:
                raise
            error, summary = exc, exc.summary
        except KeyboardInterrupt:  # aborted (Ctrl+C again): still say what was done, then "interrupted"
            aborted, summary = True, pipeline.summary()
    report(args, sinks, summary, engine)
    if aborted:
        raise KeyboardInterrupt
    if error is not None:
        raise error
    if summary.frames_out == 0 and not requests.requested:
        raise SourceError(f"no frame could be read from {summary.source}")
    return 130 if requests.requested else 0


def report(args: argparse.Namespace, sinks: list[Any], summary: RunSummary, engine: Any) -> None:
    """The end of every run: the preview sheet, the procedure report, the summary on stdout, warnings,
    ``--stats``."""
    written: list[str] = []
    preview = next((sink for sink in sinks if isinstance(sink, PreviewSink)), None)
    if preview is not None and summary.frames_out:
        written.append(str(write_preview(preview, summary)))  # drawn after the run: the summary names it now
    procedure = next((sink for sink in sinks if isinstance(sink, ReportSink)), None)
    if procedure is not None and summary.frames_out:
        context = make_context(Path(str(args.input or args.device)).name, engine, threshold=args.threshold,
                               min_area=args.min_area, min_score=args.min_score, smooth=args.smooth, crop=args.crop,
                               alarm=AlarmConfig(args.alarm_on, args.alarm_off))
        written += [str(path) for path in write_report(procedure, summary, context)]
    if written:
        summary = dataclasses.replace(summary, outputs=(*summary.outputs, *(w for w in written
                                                                            if w not in summary.outputs)))
    print(format_summary(summary), flush=True)  # noqa: T201
    for line in input_warnings(summary, args.max_frames):
        print(f"{PROG}: warning: {line}", file=sys.stderr)  # noqa: T201
    if args.stats:
        Path(args.stats).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")


def entry() -> None:
    sys.exit(run_cli(main, prog=PROG))


if __name__ == "__main__":  # python -m polyp_live.realtime.cli (same as the polyp-live console script)
    entry()
