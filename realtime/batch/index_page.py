"""``OUT/index.html``: one page over an archive, a row per video linking its procedure report (``report.html``).

Self-contained like the reports (inline style, no script, relative links only), written atomically beside
``archive.csv``, from the same rows (:func:`polyp_live.realtime.batch.archive.archive_row`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from polyp_live.realtime.sinks.output_paths import write_text_atomically

STYLE = ("body{font-family:system-ui,sans-serif;margin:24px 32px;color:#1d2630;background:#f5f7fa}"
         "table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002}"
         "th,td{padding:6px 12px;border-bottom:1px solid #e3e8ee;text-align:left}th{background:#1f3b57;color:#fff}"
         ".failed{color:#b52a2a}")


def index_html(rows: Sequence[dict[str, Any]]) -> str:
    """The page: per video its status, frames, length, alarm episodes, distinct polyps and a link to its report."""
    body = []
    for row in rows:
        status = str(row.get("status", ""))
        link = (f'<a href="{quote(str(row["output"]))}/report.html">report</a>'
                if status in ("ok", "skipped") else html.escape(str(row.get("error", ""))))
        cells = [html.escape(str(row.get(k, ""))) for k in ("output", "status", "frames", "duration_s", "episodes",
                                                              "polyps")]
        cls = ' class="failed"' if status == "failed" else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + f"<td>{link}</td></tr>")
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = "".join(f"<th>{h}</th>" for h in ("video", "status", "frames", "seconds", "alarm episodes",
                                             "distinct polyps", "report"))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>polyp-batch archive</title>'
            f"<style>{STYLE}</style></head><body><h1>Archive: {len(rows)} videos</h1><p>polyp-batch, {made}. "
            f"Research software, not a medical device.</p><table><tr>{head}</tr>{''.join(body)}</table>"
            "</body></html>")


def write_index(out_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path = out_dir / "index.html"
    write_text_atomically(path, index_html(rows))
    return path
