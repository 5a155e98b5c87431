"""Archives: the Ray-free half of ``polyp-batch`` -- which videos, where their outputs go, one video's run, the tables.

Each video ``V`` gets a folder ``OUT/<relative path of V>/`` holding ``annotated.mp4`` (unless ``--no-video``),
``frames.jsonl`` and ``summary.json`` (``RunSummary.to_dict()`` plus a ``batch`` record: the input's size and
mtime, the model and its hash, fps, duration). The folder is written as ``.<name>.partial-<token>`` beside it and
renamed when every file is complete, so a folder under its own name is always a finished run, and a ``summary.json``
whose ``batch`` record matches the input and the model marks the video done (``skipped`` on a rerun).
``archive.csv`` and ``episodes.csv`` are made from the ``summary.json`` files (:func:`archive_row`,
:func:`episode_rows`), the one home of every number in them. The Ray side is :mod:`polyp_live.realtime.batch.ray_pool`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from polyp_live.realtime.errors import OptionError
from polyp_live.train.alarm import DEFAULT_OFF_FRAMES, DEFAULT_ON_FRAMES, AlarmConfig
from polyp_live.train.errors import PolypLiveError
from polyp_live.train.hashing import sha256_bytes

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv")
PARTIAL = ".partial-"
OUTPUT_FILES = ("annotated.mp4", "frames.jsonl", "summary.json", "report.html", "report.json")
ARCHIVE_COLUMNS = ("path", "output", "status", "frames", "duration_s", "fps", "frames_with_polyp", "episodes", "polyps",
                   "first_episode_s", "longest_episode_s", "longest_episode_start_s", "model", "model_sha256",
                   "wall_s", "error")
EPISODE_COLUMNS = ("path", "episode", "start_index", "end_index", "start_s", "end_s", "duration_s",
                   "frames_with_polyp")


class VideoStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class VideoJob:
    """One video of the archive: where it is and the folder (relative to ``--out-dir``) its outputs go to."""

    path: Path  # absolute
    rel: str  # POSIX relative path of the output folder


@dataclass(frozen=True)
class ModelBundle:
    """The model's files (the resolved file and its siblings ``STEM.*``: sidecar, INT8 companion) as bytes, so
    they travel once through the object store; ``sha256`` names the whole set."""

    name: str  # the resolved file's name, e.g. default.safetensors
    files: tuple[tuple[str, bytes], ...]
    sha256: str


@dataclass(frozen=True)
class TaskOptions:
    """What every video's run shares (rendering, outputs, engine options)."""

    threshold: float | None = None  # None: the model's operating point (the same for min_area, min_score)
    smooth: float = 0.0
    min_area: float | None = None
    min_score: float | None = None
    crop: bool = True
    alarm_on: int = DEFAULT_ON_FRAMES
    alarm_off: int = DEFAULT_OFF_FRAMES
    opacity: float = 0.4
    video: bool = True
    backend: str = "auto"
    threads: int | None = None
    batch: int | None = None
    model: str = ""  # the model file's name and its bundle's hash, recorded in every summary.json
    model_sha256: str = ""


@dataclass(frozen=True)
class VideoOutcome:
    """What a task returns to the driver: the video's status, its archive row and episode rows."""

    job: VideoJob
    status: VideoStatus
    row: dict[str, Any]
    episodes: tuple[dict[str, Any], ...] = field(default_factory=tuple)


# ----------------------------------------------------------------------------------------------- inputs
def _list_file(path: Path) -> list[Path]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    items = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [(path.parent / item) if not Path(item).is_absolute() else Path(item) for item in items]


def _below(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def _expand(item: Path) -> list[tuple[Path, str]]:
    """``(video, relative output folder)`` pairs of one INPUT: a folder (searched recursively), a video (also a
    missing one: it becomes a ``failed`` row) or a text file listing one path per line."""
    if item.is_dir():
        found = sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(item).parts))
        return [(p, p.relative_to(item).as_posix()) for p in found]
    if item.suffix.lower() in VIDEO_SUFFIXES:
        return [(item, item.name)]
    if item.is_file():  # a listed video keeps its path below the list's folder, else its name
        base = Path(os.path.abspath(item.parent))
        return [(p, _below(Path(os.path.abspath(p)), base)) for p in _list_file(item)]
    raise OptionError(f"input {item} does not exist (give video files, folders or a text file of paths)")


def collect_jobs(inputs: Sequence[str]) -> list[VideoJob]:
    """Every video of ``inputs`` once, in order; two videos that would share an output folder are refused."""
    jobs: dict[Path, VideoJob] = {}
    owners: dict[str, Path] = {}
    for text in inputs:
        for path, rel in _expand(Path(text)):
            path = Path(os.path.abspath(path))
            if path in jobs:
                continue
            if rel in owners:
                raise OptionError(f"{owners[rel]} and {path} would both write {rel}/; give their parent folder "
                                  "as the input instead, so the outputs keep the folder structure")
            owners[rel] = path
            jobs[path] = VideoJob(path, rel)
    if not jobs:
        raise OptionError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) found in {' '.join(inputs)}")
    return list(jobs.values())


# ----------------------------------------------------------------------------------------------- model
def model_bundle(engine: str) -> ModelBundle:
    """Read the model ``engine`` names (a bundled name, run folder or file) and the files beside it that belong
    to it (``STEM.json``, ``STEM.int8.onnx``...)."""
    from polyp_live.engines.registry import resolve_engine_path

    resolved = resolve_engine_path(engine)
    stem = resolved.name.removesuffix(resolved.suffix)
    siblings = sorted(p for p in resolved.parent.iterdir()
                      if p.is_file() and (p == resolved or p.name.startswith(stem + ".")))
    files = tuple((p.name, p.read_bytes()) for p in siblings)
    digest = sha256_bytes("".join(f"{name}:{sha256_bytes(data)}\n" for name, data in files).encode())
    return ModelBundle(resolved.name, files, digest)


def materialize_model(bundle: ModelBundle, root: Path | None = None) -> Path:
    """Write ``bundle`` once per machine into ``root/<sha256>/`` (a folder renamed into place when complete)
    and return the model file's path there."""
    import tempfile

    root = root or Path(tempfile.gettempdir()) / "polyp-batch-models"
    final = root / bundle.sha256
    if not (final / bundle.name).is_file():
        staging = root / f".{bundle.sha256}{PARTIAL}{secrets.token_hex(4)}"
        staging.mkdir(parents=True, exist_ok=True)
        for name, data in bundle.files:
            (staging / name).write_bytes(data)
        try:
            staging.rename(final)
        except OSError:  # another worker on this machine was first
            shutil.rmtree(staging, ignore_errors=True)
    return final / bundle.name


# ----------------------------------------------------------------------------------------------- done?
def input_stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def read_done(job: VideoJob, out_dir: Path, model_sha256: str, video: bool) -> dict[str, Any] | None:
    """The video's ``summary.json`` when its outputs are complete for this very input and model, else None."""
    folder = out_dir / job.rel
    try:
        summary = json.loads((folder / "summary.json").read_text())
        stamp = input_stamp(job.path)
    except (OSError, ValueError):
        return None
    batch = summary.get("batch") if isinstance(summary, dict) else None
    if not isinstance(batch, dict) or batch.get("model_sha256") != model_sha256:
        return None
    if any(batch.get(key) != value for key, value in stamp.items()):
        return None
    needed = [name for name in OUTPUT_FILES if video or name != "annotated.mp4"]
    return summary if all((folder / name).is_file() for name in needed) else None


def clear_partials(out_dir: Path) -> int:
    """Remove the partial folders an interrupted or killed run left (no other batch writes ``out_dir``)."""
    count = 0
    for path in sorted(out_dir.rglob(f".*{PARTIAL}*"), reverse=True):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            count += 1
    return count


# ----------------------------------------------------------------------------------------------- tables
def episode_span_s(episode: dict[str, Any], fps: float) -> float:
    """How long an episode lasts: first to last frame with a polyp, plus that last frame's period."""
    return float(episode["end_time"]) - float(episode["start_time"]) + (1.0 / fps if fps > 0 else 0.0)


def archive_row(job: VideoJob, status: VideoStatus, summary: dict[str, Any] | None, error: str = "") -> dict:
    """The ``archive.csv`` row of one video, from its ``summary.json`` (None: it failed before having one)."""
    row: dict[str, Any] = dict.fromkeys(ARCHIVE_COLUMNS, "")
    row.update(path=str(job.path), output=job.rel, status=str(status), error=error)
    if summary is None:
        return row
    batch = summary["batch"]
    fps = float(batch["fps"])
    episodes = summary["episodes"]
    longest = max(episodes, key=lambda ep: episode_span_s(ep, fps), default=None)
    row.update(frames=summary["frames_out"], duration_s=round(float(batch["duration_s"]), 3), fps=round(fps, 3),
               frames_with_polyp=summary["frames_with_polyp"], episodes=len(episodes),
               polyps=summary.get("distinct_polyps", ""),
               first_episode_s=round(float(episodes[0]["start_time"]), 3) if episodes else "",
               longest_episode_s=round(episode_span_s(longest, fps), 3) if longest else "",
               longest_episode_start_s=round(float(longest["start_time"]), 3) if longest else "",
               model=batch["model"], model_sha256=batch["model_sha256"], wall_s=round(float(summary["wall_s"]), 3))
    return row


def episode_rows(job: VideoJob, summary: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    fps = float(summary["batch"]["fps"])
    return tuple(
        {"path": str(job.path), "episode": n, "start_index": ep["start_index"], "end_index": ep["end_index"],
         "start_s": round(float(ep["start_time"]), 3), "end_s": round(float(ep["end_time"]), 3),
         "duration_s": round(episode_span_s(ep, fps), 3), "frames_with_polyp": ep["frames_with_polyp"]}
        for n, ep in enumerate(summary["episodes"], start=1)
    )


def done_outcome(job: VideoJob, summary: dict[str, Any], status: VideoStatus) -> VideoOutcome:
    return VideoOutcome(job, status, archive_row(job, status, summary), episode_rows(job, summary))


def failed_outcome(job: VideoJob, error: str) -> VideoOutcome:
    line = " ".join(str(error).split())[:500] or "unknown error"
    return VideoOutcome(job, VideoStatus.FAILED, archive_row(job, VideoStatus.FAILED, None, line))


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}{PARTIAL}{secrets.token_hex(4)}")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_tables(out_dir: Path, outcomes: Iterable[VideoOutcome]) -> None:
    """``archive.csv``, ``episodes.csv`` and ``index.html`` (each replaced atomically), rows in path order."""
    from polyp_live.realtime.batch.index_page import write_index

    ordered = sorted(outcomes, key=lambda o: o.job.rel)
    _write_csv(out_dir / "archive.csv", ARCHIVE_COLUMNS, (o.row for o in ordered))
    _write_csv(out_dir / "episodes.csv", EPISODE_COLUMNS, (ep for o in ordered for ep in o.episodes))
    write_index(out_dir, [o.row for o in ordered])


# ----------------------------------------------------------------------------------------------- one video
def _render_settings(options: TaskOptions) -> Any:
    from polyp_live.realtime.settings import RenderSettings

    return RenderSettings(threshold=options.threshold, opacity=options.opacity, smooth=options.smooth,
                          min_area=options.min_area, min_score=options.min_score, show_boxes=False,
                          show_hud=False)


def _run_into(job: VideoJob, engine: Any, options: TaskOptions, staging: Path) -> dict[str, Any]:
    """Run the file-mode pipeline over ``job`` into ``staging``; return the summary dict (with ``batch``)."""
    from polyp_live.realtime.core.pipeline import PipelineConfig, run_to_completion
    from polyp_live.realtime.errors import PipelineError
    from polyp_live.realtime.sinks.procedure_report import ReportSink, make_context, write_report
    from polyp_live.realtime.sinks.writers import JsonlSink, VideoWriterSink
    from polyp_live.realtime.sources.files import VideoFileSource

    stamp = input_stamp(job.path)  # before reading: a file replaced meanwhile is not marked done
    source = VideoFileSource(job.path, yuv=True)
    info = source.open()
    try:
        alarm = AlarmConfig(options.alarm_on, options.alarm_off)
        report = ReportSink(staging / "report.html")
        sinks: list[Any] = [JsonlSink(staging / "frames.jsonl"), report]
        if options.video:
            sinks.insert(0, VideoWriterSink(staging / "annotated.mp4", info))
        config = PipelineConfig(live=False, batch=options.batch, settings=_render_settings(options),
                                crop=options.crop, alarm=alarm)
        summary = run_to_completion(source, engine, config, sinks)
    finally:
        source.close()
    if summary.frames_out == 0:
        raise PipelineError(f"no frame could be read from {job.path}")
    write_report(report, summary, make_context(
        job.path.name, engine, threshold=options.threshold, min_area=options.min_area, min_score=options.min_score,
        smooth=options.smooth, crop=options.crop, alarm=alarm))
    summary = replace(summary, outputs=(*summary.outputs, *(str(staging / n) for n in ("report.html", "report.json"))))
    summary = replace(summary, outputs=tuple(str(Path(job.rel) / Path(p).name) for p in summary.outputs))
    data = summary.to_dict()
    data["batch"] = {"input": str(job.path), **stamp, "model": options.model,
                     "model_sha256": options.model_sha256, "fps": info.fps,
                     "duration_s": summary.frames_out / info.fps if info.fps else 0.0,
                     "node": socket.gethostname(), "pid": os.getpid()}
    (staging / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


def _publish(staging: Path, final: Path) -> None:
    """Rename the finished ``staging`` folder to ``final`` (an older run's folder there is replaced)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}{PARTIAL}old-{secrets.token_hex(4)}")
        final.rename(old)
    staging.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for stale in final.parent.glob(f".{final.name}{PARTIAL}*"):  # an attempt whose worker died
        shutil.rmtree(stale, ignore_errors=True)


def annotate_video(job: VideoJob, engine: Any, options: TaskOptions, out_dir: Path) -> VideoOutcome:
    """One video end to end with an open ``engine``; any error is a ``failed`` outcome with a one-line reason
    (the rest of the batch goes on)."""
    final = out_dir / job.rel
    staging = final.with_name(f".{final.name}{PARTIAL}{secrets.token_hex(6)}")
    start = time.monotonic()
    try:
        if not job.path.is_file():
            raise PolypLiveError(f"input not found: {job.path}")
        staging.mkdir(parents=True)
        summary = _run_into(job, engine, options, staging)
        _publish(staging, final)
    except Exception as exc:  # one video's failure, whatever it is, must not end the batch
        shutil.rmtree(staging, ignore_errors=True)
        logger.warning("%s failed: %s", job.path, exc)
        return failed_outcome(job, f"{exc}" if isinstance(exc, PolypLiveError) else f"{type(exc).__name__}: {exc}")
    logger.info("%s: %d frames in %.1f s", job.path, summary["frames_out"], time.monotonic() - start)
    return done_outcome(job, summary, VideoStatus.OK)
