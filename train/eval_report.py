"""``polyp-eval``'s outputs: the table (Markdown), the JSON, the sensitivity/specificity curve (PNG, drawn with
OpenCV: no plotting library at run time) and the operating-point choice."""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from polyp_live.train.contract import ModelContract
from polyp_live.train.decision import OperatingPoint
from polyp_live.train.errors import PolypLiveError
from polyp_live.train.evaluation import (
    FrameScore,
    Summary,
    SweepPoint,
    choose_operating_point,
    sequence_rows,
    summarize,
    sweep,
)
from polyp_live.train.video_metrics import VideoSummary

if TYPE_CHECKING:
    from polyp_live.train.cli_eval import EvalSet

logger = logging.getLogger("polyp_live.eval")

HEADER = ("| data set | frames | polyp frames | Dice | IoU | sensitivity | missed (Dice < 0.1) | polyp-free frames | "
          "false alarms | mean false area | polyps found | first detection (median frames) |")


def _cell(value: float, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * 100:.1f} %" if percent else f"{value:.{digits}f}"


def table_row(s: Summary) -> str:
    missed = f"{s.missed} ({s.missed / s.polyp_frames * 100:.1f} %)" if s.polyp_frames else "–"
    polyps = f"{s.polyps_found}/{s.polyps}" if s.polyps else "–"
    return (f"| {s.name} | {s.frames} | {s.polyp_frames} | {_cell(s.dice)} | {_cell(s.iou)} | "
            f"{_cell(s.sensitivity, percent=True)} | {missed} | {s.free_frames} | "
            f"{_cell(s.false_alarm_rate, percent=True)} | {_cell(s.mean_false_area, 4)} | {polyps} | "
            f"{_cell(s.median_first_detection, 1)} |")


def format_table(summaries: Sequence[Summary], sequences: Sequence[Summary] = ()) -> str:
    lines = [HEADER, "|" + "---|" * HEADER.count(" |")]
    lines += [table_row(s) for s in summaries]
    if sequences:
        lines += ["", "Per sequence:", "", HEADER, "|" + "---|" * HEADER.count(" |")]
        lines += [table_row(s) for s in sequences]
    return "\n".join(lines)


def draw_curve(points: Sequence[SweepPoint], chosen: SweepPoint | None, current: OperatingPoint, path: Path,
               title: str) -> Path:
    """Sensitivity against false-alarm rate (1 - specificity) for every swept operating point, the frontier joined,
    the chosen point and the contract's current point marked."""
    w, h, m = 720, 540, 60
    img = np.full((h, w, 3), 255, np.uint8)

    def xy(fa: float, sens: float) -> tuple[int, int]:
        return int(m + fa * (w - 2 * m)), int(h - m - sens * (h - 2 * m))

    for v in np.linspace(0, 1, 6):
        cv2.line(img, xy(v, 0), xy(v, 1), (225, 225, 225), 1)
        cv2.line(img, xy(0, v), xy(1, v), (225, 225, 225), 1)
        cv2.putText(img, f"{v:.1f}", (xy(v, 0)[0] - 10, h - m + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1)
        cv2.putText(img, f"{v:.1f}", (m - 35, xy(0, v)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1)
    cv2.rectangle(img, xy(0, 0), xy(1, 1), (0, 0, 0), 1)
    valid = [p for p in points if not (math.isnan(p.sensitivity) or math.isnan(p.specificity))]
    for p in valid:
        cv2.circle(img, xy(1 - p.specificity, p.sensitivity), 2, (200, 170, 120), -1)
    frontier, best = [], -1.0
    for p in sorted(valid, key=lambda p: (1 - p.specificity, -p.sensitivity)):
        if p.sensitivity > best:
            frontier.append(xy(1 - p.specificity, p.sensitivity))
            best = p.sensitivity
    if len(frontier) > 1:
        cv2.polylines(img, [np.array(frontier, np.int32)], False, (160, 80, 20), 2)
    here = [p for p in valid if (p.threshold, p.min_area, p.min_score) ==
            (current.threshold, current.min_area, current.min_score)]
    for p in here:
        cv2.drawMarker(img, xy(1 - p.specificity, p.sensitivity), (40, 40, 220), cv2.MARKER_SQUARE, 14, 2)
    if chosen is not None:
        cv2.drawMarker(img, xy(1 - chosen.specificity, chosen.sensitivity), (30, 160, 30), cv2.MARKER_STAR, 18, 2)
    cv2.putText(img, title[:80], (m, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "false alarms (1 - specificity, polyp-free frames)", (w // 2 - 170, h - 15),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.putText(img, "sensitivity", (8, m - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    legend = "dots: swept points   line: best frontier   square: current   star: chosen"
    cv2.putText(img, legend, (m, h - m - 8 - (h - 2 * m)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise PolypLiveError(f"cannot write the curve to {path}")
    return path


def _choice_frames(sets: Sequence[EvalSet], results: Mapping[str, list[FrameScore]]
                   ) -> tuple[list[FrameScore], list[FrameScore]]:
    chosen = [f for s in sets if s.chooses for f in results[s.name]]
    return [f for f in chosen if f.has_polyp], [f for f in chosen if not f.has_polyp]


def report_results(args: argparse.Namespace, path: Path, name: str, contract: ModelContract, point: OperatingPoint,
                   sets: Sequence[EvalSet], results: Mapping[str, list[FrameScore]]) -> int:
    """Print the table; write JSON / Markdown / curve; choose and store the operating point when asked."""
    summaries = [summarize(s.name, results[s.name]) for s in sets]
    sequences = [row for s in sets for row in sequence_rows(s.name, results[s.name])]
    polyp, free = _choice_frames(sets, results)
    points = sweep(polyp, free) if (args.choose_operating_point or args.curve) else []
    chosen = choose_operating_point(points, args.min_specificity) if args.choose_operating_point else None
    text = (f"{name}: operating point threshold {point.threshold:g}, min area {point.min_area:g}, min score "
            f"{point.min_score:g}; field-of-view crop {'on' if contract.field_of_view else 'off'}, "
            f"{'letterbox' if contract.keep_aspect else 'squash'}\n\n" + format_table(summaries, sequences))
    video: list[VideoSummary] = []
    if args.video:
        video_text, video = video_section(args, sets, results)
        text += "\n\n" + video_text
    print(text)  # noqa: T201
    if args.choose_operating_point:
        print(_choice_text(chosen, args.min_specificity, len(polyp), len(free)))  # noqa: T201
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n", encoding="utf-8")
    if args.curve is not None:
        draw_curve(points, chosen, point, args.curve, name)
    if args.json is not None:
        payload: dict[str, Any] = {
            "checkpoint": str(path), "model": name, "contract": contract.to_dict(), "operating_point": asdict(point),
            "resolution": args.resolution, "sets": [s.to_dict() for s in summaries],
            "sequences": [s.to_dict() for s in sequences],
            "frames": {k: [_frame_dict(f) for f in v] for k, v in results.items()},
            "sweep": [asdict(p) for p in points], "chosen": asdict(chosen) if chosen else None,
            "video": [v.to_dict() for v in video],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    if args.write_operating_point:
        _write_point(path, contract, chosen, args.min_specificity, [s.name for s in sets if s.chooses])
    return 0


def _frame_dict(f: FrameScore) -> dict[str, Any]:
    data = asdict(f)
    data.pop("candidates")
    return data


def _choice_text(chosen: SweepPoint | None, target: float, polyp: int, free: int) -> str:
    if chosen is None:
        return f"no operating point reaches {target:.0%} specificity on these {free} polyp-free frames"
    return (f"chosen operating point (specificity >= {target:.0%} on {free} polyp-free frames, best sensitivity on "
            f"{polyp} polyp frames): threshold {chosen.threshold:g}, min area {chosen.min_area:g}, min score "
            f"{chosen.min_score:g} -> sensitivity {chosen.sensitivity:.1%}, specificity {chosen.specificity:.1%}")


def _write_point(path: Path, contract: ModelContract, chosen: SweepPoint | None, target: float,
                 chosen_on: Sequence[str]) -> None:
    from polyp_live.train.checkpoint import read_checkpoint, set_contract

    if chosen is None:
        raise PolypLiveError(f"--write-operating-point: no operating point reaches {target:.0%} specificity; "
                             "nothing written")
    info = read_checkpoint(path)
    new = info.contract.with_operating_point(chosen.threshold, chosen.min_area, chosen.min_score)
    note = {"operating_point": asdict(chosen), "chosen_on": list(chosen_on),
            "rule": f"best per-frame sensitivity with specificity >= {target:g} on the polyp-free frames"}
    logger.info("operating point written to %s", set_contract(path, new, note))


VIDEO_HEADER = ("| data set | alarm on/off (frames) | minutes played | polyps found | first detection (median ms) | "
                "switches / min | false alarms / min |")


def _video_row(v: VideoSummary) -> str:
    found = f"{v.polyps_found}/{v.polyps}" if v.polyps else "–"
    delay = "–" if math.isnan(v.median_first_detection_ms) else f"{v.median_first_detection_ms:.0f}"
    return (f"| {v.name} | {v.on_frames}/{v.off_frames} | {v.minutes:.2f} | {found} | {delay} | "
            f"{v.switches_per_minute:.1f} | {v.false_alarms_per_minute:.1f} |")


def video_section(args: argparse.Namespace, sets: Sequence[EvalSet], results: Mapping[str, list[FrameScore]]
                  ) -> tuple[str, list[VideoSummary]]:
    """The alarm's video metrics on every set of sequences, with the filter (``--alarm-on/--alarm-off``) and
    without (1/1), and the grid when asked."""
    from polyp_live.train.alarm import AlarmConfig
    from polyp_live.train.video_metrics import alarm_grid, video_summary

    chosen = {s.name: results[s.name] for s in sets if any(f.sequence for f in results[s.name])}
    configs = [AlarmConfig.unfiltered(), AlarmConfig(args.alarm_on, args.alarm_off)]
    rows = [video_summary(name, frames, config, args.fps)[0] for config in configs for name, frames in chosen.items()]
    lines = [f"Video metrics (sequences played at {args.fps:g} fps; see polyp_live.train.video_metrics):", "",
             VIDEO_HEADER, "|" + "---|" * VIDEO_HEADER.count(" |"), *(_video_row(v) for v in rows)]
    if args.alarm_grid:
        grid = alarm_grid(chosen, range(1, 7), (1, 2, 3, 5, 8), args.fps)
        lines += ["", "Alarm grid:", "", VIDEO_HEADER, "|" + "---|" * VIDEO_HEADER.count(" |"),
                  *(_video_row(v) for v in grid)]
        rows += grid
    return "\n".join(lines), rows
