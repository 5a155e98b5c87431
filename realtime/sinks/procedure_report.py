"""``--report FILE.html``: a procedure report a clinician would file -- one self-contained HTML page and its JSON.

The sink (:class:`ReportSink`) watches the results go by and keeps, per distinct polyp (a confirmed track), a
small picture of the frame where its region was largest; after the run, :func:`write_report` renders the page:
the run's timeline with the POLYP alarm's episodes and each polyp's time in view, one card per polyp (best frame,
first/last time, duration, largest area), the counts, the model and its settings, the run's speed. Pictures are
inline JPEG (``data:`` URIs), styles inline, no script, no link to anything outside the file: it opens anywhere,
offline, and can be archived as one file. The same facts go to ``FILE.json`` beside it.

Both files are written to a temporary name and renamed when complete, so a run killed mid-way leaves no report at
all rather than a half-written one; a run stopped by the user gets a report that says where it stopped.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.sinks.output_paths import write_text_atomically
from polyp_live.realtime.sinks.report import format_time
from polyp_live.realtime.types import PolypRecord, Result, RunSummary, StopReason
from polyp_live.train.alarm import AlarmConfig
from polyp_live.train.checkpoint import model_terms
from polyp_live.train.decision import OperatingPoint

THUMB_WIDTH = 360
JPEG_QUALITY = 82


@dataclass(frozen=True)
class ReportContext:
    """What the report says about the run besides its results: the input, the model and the settings."""

    title: str  # the input's name
    model: str  # the engine, e.g. "PEFNet-lite0 256x256 (default), onnxruntime int8 cpu"
    settings: tuple[tuple[str, str], ...]  # (name, value) rows: operating point, alarm, crop, ...
    terms: str = ""  # the model's data terms


def make_context(title: str, engine: Any, *, threshold: float | None, min_area: float | None,
                 min_score: float | None, smooth: float, crop: bool, alarm: AlarmConfig) -> ReportContext:
    """What the procedure report says about the model and the settings of a run (``engine``: the open engine)."""
    contract = engine.contract
    point = OperatingPoint.of(contract, threshold=threshold, min_area=min_area, min_score=min_score)
    settings = (
        ("operating point", f"threshold {point.threshold:g}, regions of at least {point.min_area:g} of the view, "
                            f"score at least {point.min_score:g}"),
        ("POLYP alarm", f"on after {alarm.on_frames} frames with a region, off after {alarm.off_frames} without"),
        ("field of view", f"crop {'on' if contract.field_of_view and crop else 'off'}, "
                          f"{'letterbox' if contract.keep_aspect else 'squash'}"),
        ("smoothing", f"{smooth:g}"),
    )
    return ReportContext(title, engine.describe(), settings, model_terms(engine.info.source))


@dataclass
class _Best:
    area: float
    index: int
    time: float
    image: np.ndarray  # RGB thumbnail


class ReportSink(SinkBase):
    """Keeps the best frame of every confirmed track (one small picture each) while the run goes on."""

    name = "report"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.best: dict[int, _Best] = {}
        self.last_time = 0.0  # the last frame's time on the output timeline: the video's length

    def write(self, result: Result) -> None:
        self.last_time = result.frame.source_ts
        prediction = result.prediction
        if prediction is None or prediction.frame is not result.frame or not prediction.alarm:
            return
        for region in prediction.regions:
            if region.track_id is None or not region.confirmed:
                continue
            best = self.best.get(region.track_id)
            if best is None or region.area_fraction > best.area:
                self.best[region.track_id] = _Best(region.area_fraction, result.index, result.frame.source_ts,
                                                   _thumbnail(result.annotated_rgb, region))

    def close(self) -> None:  # the page is written after the run, when the summary is known
        pass


def _thumbnail(annotated: np.ndarray, region: Any) -> np.ndarray:
    image = annotated.copy()
    thickness = max(2, image.shape[0] // 200)
    cv2.rectangle(image, (region.x0, region.y0), (region.x1 - 1, region.y1 - 1), (255, 220, 0), thickness)
    height = max(1, round(image.shape[0] * THUMB_WIDTH / image.shape[1]))
    return cv2.resize(image, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA)


def _jpeg_uri(rgb: np.ndarray) -> str:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode a report picture")
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def _stopped_text(summary: RunSummary) -> str:
    end = f"{summary.wall_s:.1f} s"
    if summary.stopped is StopReason.STOPPED:
        return f"Stopped by the user after {summary.frames_out} frames: this report covers the run up to then."
    if summary.stopped is StopReason.ERROR:
        return f"The run ended on an error ({summary.error}): this report covers the frames processed before it."
    return f"Complete: the whole input, {summary.frames_out} frames ({end} of processing)."


def _timeline_svg(summary: RunSummary, duration: float) -> str:
    width, height, top = 1000, 86, 22
    scale = width / max(duration, 1e-6)
    parts = [f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" aria-label="timeline">',
             f'<rect x="0" y="{top}" width="{width}" height="22" fill="#e8edf2"/>']
    for gap in summary.gaps:
        start = gap.at_s - gap.seconds
        parts.append(f'<rect x="{start * scale:.1f}" y="{top}" width="{max(1.0, gap.seconds * scale):.1f}" '
                     f'height="22" fill="#b9bec4"><title>gap {gap.seconds:.1f} s</title></rect>')
    for ep in summary.episodes:
        x0, x1 = ep.start_time * scale, max(ep.end_time * scale, ep.start_time * scale + 2)
        parts.append(f'<rect x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" height="22" fill="#d9534f">'
                     f'<title>alarm {format_time(ep.start_time)} - {format_time(ep.end_time)}</title></rect>')
    for n, polyp in enumerate(summary.polyps):
        x0 = polyp.first_time * scale
        x1 = max(polyp.last_time * scale, x0 + 2)
        y = top + 28 + (n % 2) * 14
        parts.append(f'<rect x="{x0:.1f}" y="{y}" width="{x1 - x0:.1f}" height="10" rx="3" fill="#2f6db5"/>'
                     f'<text x="{x0:.1f}" y="{y - 2}" font-size="11" fill="#2f6db5">{n + 1}</text>')
    for tick in range(0, 11):
        x = tick * width / 10
        parts.append(f'<text x="{min(x, width - 40):.1f}" y="14" font-size="11" fill="#56606b">'
                     f'{format_time(tick * duration / 10)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _card(number: int, polyp: PolypRecord, best: _Best | None) -> str:
    picture = (f'<img src="{_jpeg_uri(best.image)}" alt="polyp {number} at {format_time(best.time)}">'
               if best is not None else '<div class="noimg">no picture</div>')
    rows = [("first seen", format_time(polyp.first_time)), ("last seen", format_time(polyp.last_time)),
            ("in view", f"{polyp.duration:.1f} s ({polyp.frames} frames)"),
            ("largest", f"{polyp.largest_area * 100:.1f} % of the view"),
            ("best frame", f"{format_time(polyp.best_time)} (frame {polyp.best_index})")]
    table = "".join(f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return (f'<div class="card"><h3>Polyp {number} <small>(track {polyp.track_id})</small></h3>{picture}'
            f"<table>{table}</table></div>")


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f7fa;color:#1d2630}
header{background:#1f3b57;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85}main{padding:20px 32px;max-width:1180px}
.facts{display:flex;gap:14px;flex-wrap:wrap;margin:8px 0 18px}.fact{background:#fff;border-radius:8px;
padding:10px 16px;box-shadow:0 1px 3px #0002;min-width:120px}.fact b{display:block;font-size:26px}
.timeline{width:100%;height:auto;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002}
.legend span{display:inline-block;margin-right:16px;font-size:13px}.legend i{display:inline-block;width:14px;
height:10px;margin-right:5px;vertical-align:middle}.cards{display:flex;flex-wrap:wrap;gap:16px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:12px;width:370px}
.card h3{margin:0 0 8px}.card h3 small{font-weight:400;color:#56606b;font-size:13px}
.card img{width:360px;border-radius:4px;display:block}.card table{margin-top:8px;
font-size:14px}th{text-align:left;color:#56606b;font-weight:500;padding-right:14px}
table.settings{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:8px 12px;font-size:14px}
.note{font-size:13px;color:#56606b;margin-top:24px}.noimg{width:360px;height:200px;background:#e8edf2}
"""


def render_html(summary: RunSummary, context: ReportContext, best: dict[int, _Best], duration: float) -> str:
    e2e = next((item for item in summary.latency if item.stage == "end_to_end"), None)
    facts = [("distinct polyps", str(len(summary.polyps))), ("alarm episodes", str(len(summary.episodes))),
             ("video", format_time(duration)), ("frames", str(summary.frames_out)),
             ("speed", f"{summary.throughput_fps:.0f} fps"),
             ("latency p95", f"{e2e.p95_ms:.0f} ms" if e2e is not None and e2e.count else "–")]
    cards = "".join(_card(n, p, best.get(p.track_id)) for n, p in enumerate(summary.polyps, 1)) or (
        "<p>No polyp was confirmed.</p>")
    settings = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in (
        ("model", context.model), *context.settings, ("backend", f"{summary.backend} {summary.precision} "
                                                                  f"{summary.device}")))
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Procedure report: '
        f'{html.escape(context.title)}</title><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{STYLE}</style></head><body><header><h1>Procedure report: {html.escape(context.title)}</h1>"
        f"<p>polyp-live, {made}. {html.escape(_stopped_text(summary))}</p></header><main>"
        '<div class="facts">' + "".join(f'<div class="fact"><b>{v}</b>{k}</div>' for k, v in facts) + "</div>"
        f"<h2>Timeline</h2>{_timeline_svg(summary, duration)}"
        '<p class="legend"><span><i style="background:#d9534f"></i>POLYP alarm</span><span><i style="background:'
        '#2f6db5"></i>a distinct polyp in view</span><span><i style="background:#b9bec4"></i>gap in the input'
        "</span></p>"
        f'<h2>Polyps</h2><div class="cards">{cards}</div>'
        f'<h2>Model and settings</h2><table class="settings">{settings}</table>'
        '<p class="note">Research software, not a medical device: every finding needs the clinician\'s own '
        f"judgement. {html.escape(context.terms)}</p></main></body></html>"
    )


def report_facts(summary: RunSummary, context: ReportContext) -> dict[str, Any]:
    return {"title": context.title, "model": context.model, "settings": dict(context.settings),
            "terms": context.terms, "complete": summary.stopped is StopReason.END_OF_INPUT,
            "distinct_polyps": len(summary.polyps), "summary": summary.to_dict(),
            "context": asdict(context)}


def report_json_path(path: str | Path) -> Path:
    """The JSON beside a report: ``visit.html`` -> ``visit.json``."""
    return Path(path).with_suffix(".json")


def write_report(sink: ReportSink, summary: RunSummary, context: ReportContext) -> tuple[Path, Path]:
    """The HTML page and its JSON, each complete or not there at all."""
    duration = max([sink.last_time, *(e.end_time for e in summary.episodes), *(p.last_time for p in summary.polyps)])
    page = render_html(summary, context, sink.best, duration)
    facts = json.dumps(report_facts(summary, context), indent=1) + "\n"
    json_path = report_json_path(sink.path)
    write_text_atomically(json_path, facts)
    write_text_atomically(sink.path, page)
    return sink.path, json_path
