"""The end-of-run summary as text (what ``polyp-live`` prints; ``--stats`` writes ``RunSummary.to_dict()``)."""

from __future__ import annotations

from realtime.types import RunMode, RunSummary, StopReason


def format_time(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes):d}:{secs:05.2f}"


def format_summary(summary: RunSummary) -> str:
    lines = [
        "polyp-live summary",
        f"  source       {summary.source} ({summary.mode} mode)",
        f"  engine       {summary.engine}",
        f"  frames       in {summary.frames_in}, out {summary.frames_out}, dropped {summary.frames_dropped}"
        + (f", decode errors {summary.decode_errors}" if summary.decode_errors else ""),
    ]
    if summary.drops:
        lines.append("  drops        " + ", ".join(f"{name} {count}" for name, count in summary.drops))
    lines.append(f"  throughput   {summary.throughput_fps:.1f} fps over {summary.wall_s:.2f} s")
    lines.append(f"  latency ms   {'stage':<12}{'p50':>8}{'p95':>8}{'p99':>8}")
    for item in summary.latency:
        if item.count:
            lines.append(f"               {item.stage:<12}{item.p50_ms:8.1f}{item.p95_ms:8.1f}{item.p99_ms:8.1f}")
    lines.append(
        f"  polyp        {summary.frames_with_polyp} of {summary.frames_out} frames, {len(summary.episodes)} episode(s)"
        f" (gaps of <= {summary.episode_gap_frames} frames merged)"
    )
    for ep in summary.episodes:
        lines.append(
            f"               {format_time(ep.start_time)} - {format_time(ep.end_time)}  frames {ep.start_index}-"
            f"{ep.end_index} ({ep.frames_with_polyp} with polyp)"
        )
    for path in summary.outputs:
        lines.append(f"  wrote        {path}")
    lines.append(f"  stopped      {summary.stopped}" + (f": {summary.error}" if summary.error else ""))
    return "\n".join(lines)


def input_warnings(summary: RunSummary, max_frames: int | None = None) -> list[str]:
    """Lines about inputs that ended early or had undecodable parts."""
    warnings = []
    expected = summary.expected_frames
    ended = summary.stopped == StopReason.END_OF_INPUT and summary.mode == RunMode.FILE
    if (ended and expected and summary.frames_in < expected
            and (max_frames is None or summary.frames_in < max_frames)):
        warnings.append(
            f"input ended after {summary.frames_in} of {expected} frames "
            f"({summary.frames_in / expected:.0%}; truncated or damaged file?)"
        )
    if summary.decode_errors:
        warnings.append(f"{summary.decode_errors} packet(s) could not be decoded and were skipped")
    return warnings
