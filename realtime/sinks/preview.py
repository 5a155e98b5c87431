"""``polyp-live --preview FILE.png``: a contact sheet of a run, the first result one can look at.

:class:`PreviewSink` is a pipeline sink that keeps small copies of the annotated frames (mask drawn), spread
evenly over the run whatever its length: it keeps every k-th frame and doubles k whenever it holds
``4 * cells`` of them, so memory stays bounded. After the run, :func:`render_sheet` lays ``cells`` of them out
in a grid, each with its timestamp, frame number and whether a polyp was found, under a title line, above a
timeline of the polyp episodes and their list (from the run's :class:`~polyp_live.realtime.types.RunSummary`, the one
place episodes are computed). :func:`write_preview` writes the PNG.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.realtime.errors import OutputError
from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.sinks.report import format_time
from polyp_live.realtime.types import Result, RunSummary

logger = logging.getLogger(__name__)

COLUMNS, ROWS = 4, 3
THUMB_WIDTH = 288
CAPTION_H, TITLE_H, TIMELINE_H, LINE_H, MARGIN = 26, 40, 26, 22, 8
MAX_EPISODE_LINES = 8
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREY, POLYP, BACKGROUND = (240, 240, 240), (150, 150, 150), (40, 230, 90), (24, 24, 28)


@dataclass(frozen=True)
class Thumb:
    seen: int  # position among the results the sink received
    index: int
    time: float
    polyp: bool
    image: np.ndarray  # RGB, THUMB_WIDTH wide


class PreviewSink(SinkBase):
    """Keeps an evenly spread, bounded sample of annotated frames for :func:`render_sheet`."""

    name = "preview"
    dropped = 0  # the pipeline's summary counts every sink's drops; a sample keeps what it wants, drops none

    def __init__(self, path: str | Path, cells: int = COLUMNS * ROWS) -> None:
        self.path = Path(path)
        self.cells = cells
        self.thumbs: list[Thumb] = []
        self._every = 1
        self._seen = 0

    def write(self, result: Result) -> None:
        seen, self._seen = self._seen, self._seen + 1
        if seen % self._every:
            return
        height, width = result.annotated.shape[:2]
        size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
        image = cv2.resize(result.annotated_rgb, size, interpolation=cv2.INTER_AREA)
        self.thumbs.append(Thumb(seen, result.index, result.frame.source_ts, result.shows_polyp, image))
        if len(self.thumbs) >= 4 * self.cells:
            self._every *= 2
            self.thumbs = [t for t in self.thumbs if t.seen % self._every == 0]

    def close(self) -> None:  # the sheet is drawn after the run, when the summary (episodes) is known
        pass

    def chosen(self) -> list[Thumb]:
        """``cells`` thumbnails evenly spaced over the run (all of them when there are fewer)."""
        if len(self.thumbs) <= self.cells:
            return list(self.thumbs)
        positions = np.linspace(0, len(self.thumbs) - 1, self.cells).round().astype(int)
        return [self.thumbs[i] for i in positions]


def _text(image: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int] = WHITE,
          scale: float = 0.5) -> None:
    cv2.putText(image, text, origin, FONT, scale, color, 1, cv2.LINE_AA)


def _cell(thumb: Thumb, height: int) -> np.ndarray:
    cell = np.full((height + CAPTION_H, THUMB_WIDTH, 3), BACKGROUND, np.uint8)
    cell[: thumb.image.shape[0]] = thumb.image[:height]
    caption = f"{format_time(thumb.time)}  #{thumb.index}"
    _text(cell, caption, (6, height + 18))
    if thumb.polyp:
        _text(cell, "POLYP", (THUMB_WIDTH - 62, height + 18), POLYP)
    return cell


def _timeline(summary: RunSummary, width: int) -> np.ndarray:
    strip = np.full((TIMELINE_H, width, 3), BACKGROUND, np.uint8)
    total = max(summary.frames_out, 1)
    cv2.rectangle(strip, (MARGIN, 6), (width - MARGIN, TIMELINE_H - 6), GREY, 1)
    span = width - 2 * MARGIN
    for ep in summary.episodes:
        x0 = MARGIN + int(span * ep.start_index / total)
        x1 = MARGIN + max(int(span * (ep.end_index + 1) / total), x0 - MARGIN + 2)
        cv2.rectangle(strip, (x0, 7), (min(x1, width - MARGIN), TIMELINE_H - 7), POLYP, -1)
    return strip


def _episode_lines(summary: RunSummary) -> list[str]:
    lines = [f"POLYP alarm: {len(summary.episodes)} episode(s), {len(summary.polyps)} distinct polyp(s); a region "
             f"in {summary.frames_with_polyp} of {summary.frames_out} frames"]
    for n, ep in enumerate(summary.episodes[:MAX_EPISODE_LINES], 1):
        lines.append(f"{n}. {format_time(ep.start_time)} - {format_time(ep.end_time)}   frames {ep.start_index}-"
                     f"{ep.end_index}   ({ep.frames_with_polyp} with the alarm on)")
    if len(summary.episodes) > MAX_EPISODE_LINES:
        lines.append(f"... and {len(summary.episodes) - MAX_EPISODE_LINES} more (see the summary / --jsonl)")
    return lines


def render_sheet(sink: PreviewSink, summary: RunSummary) -> np.ndarray:
    """The contact sheet as an RGB image."""
    thumbs = sink.chosen()
    if not thumbs:
        raise OutputError(f"cannot write the preview {sink.path}: no frame was processed")
    height = min(t.image.shape[0] for t in thumbs)
    columns = min(COLUMNS, len(thumbs))
    rows = -(-len(thumbs) // columns)
    cell_h = height + CAPTION_H
    width = columns * THUMB_WIDTH + (columns + 1) * MARGIN
    lines = _episode_lines(summary)
    grid_h = rows * cell_h + (rows + 1) * MARGIN
    sheet = np.full((TITLE_H + grid_h + TIMELINE_H + len(lines) * LINE_H + MARGIN, width, 3), BACKGROUND, np.uint8)
    name = Path(summary.source).name or summary.source
    _text(sheet, f"polyp-live  {name}  {summary.frames_out} frames", (MARGIN, 18), WHITE, 0.6)
    _text(sheet, f"model: {summary.engine}", (MARGIN, 34), GREY, 0.42)
    for i, thumb in enumerate(thumbs):
        row, col = divmod(i, columns)
        y = TITLE_H + MARGIN + row * (cell_h + MARGIN)
        x = MARGIN + col * (THUMB_WIDTH + MARGIN)
        sheet[y : y + cell_h, x : x + THUMB_WIDTH] = _cell(thumb, height)
    top = TITLE_H + grid_h
    sheet[top : top + TIMELINE_H] = _timeline(summary, width)
    for n, line in enumerate(lines):
        _text(sheet, line, (MARGIN, top + TIMELINE_H + 16 + n * LINE_H), WHITE if n == 0 else GREY)
    return sheet


def write_preview(sink: PreviewSink, summary: RunSummary) -> Path:
    """Draw the sheet and write it as PNG to ``sink.path``; returns the path."""
    sheet = render_sheet(sink, summary)
    if not cv2.imwrite(str(sink.path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OutputError(f"cannot write the preview {sink.path}")
    logger.info("preview written: %s", sink.path.resolve())
    return sink.path
