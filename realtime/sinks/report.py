"""The end-of-run summary as text (what ``polyp-live`` prints; ``--stats`` writes ``RunSummary.to_dict()``)."""

from __future__ import annotations

from polyp_live.realtime.types import Counts, FrameCounts, Gap, RunMode, RunSummary, StopReason

MAX_GAP_LINES = 5  # the summary lists the first gaps one per line, then a count (--stats JSON holds them all)
MAX_POLYP_LINES = 12  # the summary lists the first polyps, one per line (--stats and --report hold them all)


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
    if summary.counts is not None:
        lines += count_lines(summary.counts, summary.mode)
    elif summary.drops:
        lines.append("  drops        " + ", ".join(f"{name} {count}" for name, count in summary.drops))
    lines += startup_lines(summary) + gap_lines(summary.gaps)
    lines.append(f"  throughput   {summary.throughput_fps:.1f} fps over {summary.wall_s:.2f} s")
    lines.append(f"  latency ms   {'stage':<12}{'p50':>8}{'p95':>8}{'p99':>8}")
    for item in summary.latency:
        if item.count:
            lines.append(f"               {item.stage:<12}{item.p50_ms:8.1f}{item.p95_ms:8.1f}{item.p99_ms:8.1f}"
                         + (f"  (max {item.max_ms:.0f}; drawn only up to {summary.mask_max_age_ms:.0f})"
                            if item.stage == "mask_age" and summary.mask_max_age_ms is not None else ""))
    lines += polyp_lines(summary)
    for path in summary.outputs:
        lines.append(f"  wrote        {path}")
    lines.append(f"  stopped      {summary.stopped}" + (f": {summary.error}" if summary.error else ""))
    return "\n".join(lines)


def _by_stage(counts: Counts) -> str:
    return " + ".join(f"{name} {count}" for name, count in counts)


def count_lines(counts: FrameCounts, mode: RunMode) -> list[str]:
    """How the frame counters add up (``in`` = frames taken from the source; README "Frame counters")."""
    lines = [f"               inferred {counts.inferred}"
             + (f", recorded {counts.recorded}" if counts.recorded is not None else "")
             + (f", shown {counts.shown}" if counts.shown is not None else "")]
    if counts.dropped or counts.cut:
        cut = [("in flight at the error", counts.cut)] if counts.cut else []
        lines.append(f"  dropped      {_by_stage((*counts.dropped, *cut))} = {counts.taken - counts.out} "
                     "(in - out: a newer frame took its place in a latest-wins queue)")
    if counts.not_inferred:
        shown = "also dropped above" if mode == RunMode.LIVE_SYNC else "still shown, with the newest mask"
        lines.append(f"  not inferred {_by_stage(counts.not_inferred)} = {counts.taken - counts.inferred} (in - "
                     f"inferred: the model takes the newest frame; {shown})")
    if counts.masks_dropped:
        lines.append(f"  masks        {counts.masks_dropped} inferred but replaced by a newer one before drawn")
    if counts.masks_withheld:
        lines.append(f"  no mask      {_by_stage(counts.masks_withheld)} = {sum(n for _, n in counts.masks_withheld)} "
                     "frames shown without a mask: the newest was from before a gap or too old (see mask_age)")
    if counts.after_output:
        lines.append(f"  after output {_by_stage(counts.after_output)} (written to every file; not painted by the "
                     "viewer / not taken by the caller)")
    if counts.stale:
        lines.append(f"  stale        {counts.stale} discarded by the source before they were taken (older than "
                     "the live policy allows; not in 'in')")
    return lines


def startup_lines(summary: RunSummary) -> list[str]:
    """The start-up delay: the live source's (opening to its first fresh frame) and the first result's."""
    parts = []
    if summary.startup_s is not None:
        parts.append(f"first fresh frame {summary.startup_s:.2f} s after opening the source")
    if summary.first_output_s is not None and summary.mode != RunMode.FILE:
        parts.append(f"first result {summary.first_output_s:.2f} s after the start")
    return [f"  start-up     {', '.join(parts)}"] if parts else []


def gap_lines(gaps: tuple[Gap, ...]) -> list[str]:
    """One line for all gaps (count, total, longest), then the first few one per line."""
    if not gaps:
        return []
    longest = max(gaps, key=lambda gap: gap.seconds)
    lines = [f"  gaps         {len(gaps)}, {sum(g.seconds for g in gaps):.2f} s in all, longest {longest.seconds:.2f} s"
             f" ({longest.reason}) at {format_time(longest.at_s)}; the timeline goes on, no frame invented"]
    for gap in gaps[:MAX_GAP_LINES]:
        lines.append(f"               {format_time(gap.at_s)}  {gap.seconds:6.2f} s  {gap.reason} "
                     f"(source clock {gap.stream_jump_s:+.2f} s)")
    if len(gaps) > MAX_GAP_LINES:
        lines.append(f"               ... and {len(gaps) - MAX_GAP_LINES} more (see --stats / --jsonl)")
    return lines


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


def polyp_lines(summary: RunSummary) -> list[str]:
    """The frames with a reported region, the alarm's episodes and the distinct polyps."""
    on, off = summary.alarm_frames
    merged = f", gaps of <= {summary.episode_gap_frames} frames merged" if summary.episode_gap_frames else ""
    lines = [f"  polyp        {summary.frames_with_polyp} of {summary.frames_out} frames with a region; alarm (on "
             f"after {on}, off after {off} frames) {len(summary.episodes)} episode(s){merged}"]
    for ep in summary.episodes:
        lines.append(
            f"               {format_time(ep.start_time)} - {format_time(ep.end_time)}  frames {ep.start_index}-"
            f"{ep.end_index} ({ep.frames_with_polyp} with the alarm on)"
        )
    lines.append(f"  polyps       {len(summary.polyps)} distinct (tracks confirmed in {on} frames)")
    for n, p in enumerate(summary.polyps[:MAX_POLYP_LINES], 1):
        lines.append(f"               {n}. (track {p.track_id})  {format_time(p.first_time)} - "
                     f"{format_time(p.last_time)} "
                     f"({p.duration:.1f} s, {p.frames} frames), largest {p.largest_area * 100:.1f} % of the view at "
                     f"{format_time(p.best_time)} (frame {p.best_index})")
    if len(summary.polyps) > MAX_POLYP_LINES:
        lines.append(f"               ... {len(summary.polyps) - MAX_POLYP_LINES} more in --stats / --report")
    return lines
