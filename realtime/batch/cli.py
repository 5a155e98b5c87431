"""``polyp-batch``: annotate an archive of recorded procedures on a Ray cluster (or a local Ray instance).

    polyp-batch archive/ --out-dir annotated/                 # a local Ray instance on this machine
    polyp-batch videos.txt --out-dir /nfs/out --cluster auto  # an existing cluster (ray start ...)

Every video runs the file-mode pipeline of ``polyp-live --input`` and gets ``OUT/<relative path>/`` with
``annotated.mp4``, ``frames.jsonl`` and ``summary.json``; ``OUT/archive.csv`` has one row per video and
``OUT/episodes.csv`` one per polyp episode (:mod:`polyp_live.realtime.batch.archive`). On a cluster of several machines,
the inputs and ``--out-dir`` must be paths every node sees (a shared file system). A rerun skips the videos already done
for the same input and model. Exit 0: every video ok or skipped; 1: some failed (the table says which); 2: usage
error; 130: interrupted (the tables hold the videos finished so far; a rerun resumes).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyp_live.realtime.batch.archive import (
    TaskOptions,
    VideoJob,
    VideoOutcome,
    VideoStatus,
    clear_partials,
    collect_jobs,
    done_outcome,
    model_bundle,
    read_done,
    write_tables,
)
from polyp_live.realtime.cli import add_decision_options, positive_int
from polyp_live.realtime.errors import OptionError
from polyp_live.train.cli_utils import make_parser, number_arg, run_cli, setup_logging

PROG = "polyp-batch"
EXAMPLES = (
    "polyp-batch archive/ --out-dir annotated/",
    "polyp-batch case1.mp4 case2.mp4 --out-dir out/ --workers 2 --threads-per-task 1",
    "polyp-batch videos.txt --out-dir /nfs/annotated --cluster auto --gpus-per-task 0.5",
    "polyp-batch archive/ --out-dir out/ --no-video --engine runs/atto --threshold 0.6",
)
TABLE_EVERY_S = 5.0
logger = logging.getLogger("polyp_live.batch")


non_negative_float = number_arg(float, lambda v: v >= 0, "a number >= 0", "non_negative_float")
non_negative_int = number_arg(int, lambda v: v >= 0, "an integer >= 0", "non_negative_int")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, "Annotate an archive of recorded colonoscopies on a Ray cluster: every video gets an "
                         "annotated MP4, per-frame JSON Lines and a summary; archive.csv and episodes.csv list "
                         "them all. Reruns skip what is done.", EXAMPLES)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, folders (searched recursively) or text files with one path per line")
    parser.add_argument("--out-dir", required=True, help="output folder (shared by every node on a cluster)")
    parser.add_argument("--cluster", default="local",
                        help="'local': start Ray on this machine; 'auto' or HOST:PORT: an existing Ray cluster")
    parser.add_argument("--workers", type=positive_int, help="videos at a time (default: as many as fit)")
    parser.add_argument("--threads-per-task", type=positive_int, default=1, help="CPU threads of each worker")
    parser.add_argument("--gpus-per-task", type=non_negative_float,
                        help="GPUs per worker, fractions allowed (default: 1 on a cluster with GPUs, else 0)")
    parser.add_argument("--max-retries", type=non_negative_int, default=3,
                        help="restarts of a worker that dies, each retrying its video")
    parser.add_argument("--engine", default="default",
                        help="bundled model name, polyp-train run folder (its best), checkpoint, .onnx or .engine")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "torch", "onnxruntime"),
                        help="runtime on each worker (auto: the fastest that worker has)")
    add_decision_options(parser)
    parser.add_argument("--opacity", type=float, default=0.4, help="mask fill opacity 0..1 in annotated.mp4")
    parser.add_argument("--batch", type=positive_int, help="frames per inference (default: engine's best)")
    parser.add_argument("--no-video", action="store_true", help="write no annotated.mp4 (JSONL and summary only)")
    parser.add_argument("--debug", action="store_true", help="verbose logs (the workers' too) and full tracebacks")
    return parser


def task_options(args: argparse.Namespace, model: str, sha256: str) -> TaskOptions:
    from polyp_live.realtime.settings import RenderSettings

    try:  # the values are checked here, before any worker starts
        RenderSettings(threshold=args.threshold, opacity=args.opacity, smooth=args.smooth,
                       min_area=args.min_area, min_score=args.min_score)
    except ValueError as exc:
        raise OptionError(f"bad option: {exc}") from None
    return TaskOptions(threshold=args.threshold, smooth=args.smooth, min_area=args.min_area,
                       min_score=args.min_score, crop=args.crop, alarm_on=args.alarm_on, alarm_off=args.alarm_off,
                       opacity=args.opacity,
                       video=not args.no_video, backend=args.backend, threads=args.threads_per_task,
                       batch=args.batch, model=model, model_sha256=sha256)


@dataclass
class Tally:
    """The run's outcomes so far, the progress display and the tables on disk."""

    out_dir: Path
    total: int
    bar: Any
    outcomes: dict[str, VideoOutcome] = field(default_factory=dict)
    frames: int = 0
    video_s: float = 0.0
    run_frames: int = 0  # of the videos run now (not skipped): the rates
    run_video_s: float = 0.0
    start: float = field(default_factory=time.monotonic)
    _written: float = 0.0

    def add(self, outcome: VideoOutcome) -> None:
        self.outcomes[outcome.job.rel] = outcome
        if outcome.status is not VideoStatus.FAILED:
            self.frames += int(outcome.row["frames"] or 0)
            self.video_s += float(outcome.row["duration_s"] or 0.0)
        if outcome.status is VideoStatus.OK:
            self.run_frames += int(outcome.row["frames"])
            self.run_video_s += float(outcome.row["duration_s"])
        self.bar.update(1)
        elapsed = max(time.monotonic() - self.start, 1e-9)
        self.bar.set_postfix(frames_per_s=f"{self.run_frames / elapsed:.1f}", failed=self.count(VideoStatus.FAILED))
        if time.monotonic() - self._written >= TABLE_EVERY_S:
            self.write()

    def count(self, status: VideoStatus) -> int:
        return sum(1 for o in self.outcomes.values() if o.status is status)

    def write(self) -> None:
        write_tables(self.out_dir, self.outcomes.values())
        self._written = time.monotonic()

    def report(self, finished: bool) -> str:
        wall = max(time.monotonic() - self.start, 1e-9)
        counts = ", ".join(f"{self.count(s)} {s}" for s in VideoStatus)
        lines = [f"{PROG}: {counts} of {self.total} video(s); {self.frames} frames, {self.video_s / 3600:.3f} h of "
                 f"video; annotated now: {self.run_frames} frames, {self.run_video_s / 3600:.4f} h of video in "
                 f"{wall:.1f} s ({self.run_video_s / wall:.3f} video-hours per wall-hour)",
                 f"{PROG}: tables {self.out_dir / 'archive.csv'} and {self.out_dir / 'episodes.csv'}"]
        if not finished:
            lines.append(f"{PROG}: interrupted: {self.total - len(self.outcomes)} video(s) not done; "
                         "run the same command again to resume")
        return "\n".join(lines)


def lock_out_dir(out_dir: Path) -> Any:
    """One batch at a time writes ``out_dir`` (another one's partial folders would look stale)."""
    from polyp_live.realtime.sinks.writers import check_output_path

    check_output_path(out_dir, folder=True)
    handle = open(out_dir / ".polyp-batch.lock", "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise OptionError(f"another polyp-batch is writing {out_dir}; wait for it or give another --out-dir") from None
    return handle


def plan_from(args: argparse.Namespace) -> Any:
    from polyp_live.realtime.batch.ray_pool import ClusterPlan

    return ClusterPlan(address=args.cluster, workers=args.workers, threads_per_task=args.threads_per_task,
                       gpus_per_task=args.gpus_per_task, max_retries=args.max_retries, debug=args.debug)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
    from polyp_live.realtime.batch.ray_pool import import_ray

    import_ray()  # without Ray: one line saying how to install it, before any work
    jobs = collect_jobs(args.inputs)
    bundle = model_bundle(args.engine)
    options = task_options(args, bundle.name, bundle.sha256)
    out_dir = Path(args.out_dir).resolve()
    lock = lock_out_dir(out_dir)
    try:
        return run(args, jobs, bundle, options, out_dir)
    finally:
        lock.close()


def run(args: argparse.Namespace, jobs: list[VideoJob], bundle: Any, options: TaskOptions, out_dir: Path) -> int:
    from polyp_live.realtime.batch.ray_pool import run_batch
    from polyp_live.train.progress import progress

    if clear_partials(out_dir):
        logger.info("removed the partial outputs of an earlier, interrupted run")
    with progress(total=len(jobs), unit="video", desc=PROG, dynamic_ncols=True) as bar:
        tally = Tally(out_dir, len(jobs), bar)
        todo = []
        for job in jobs:
            summary = read_done(job, out_dir, bundle.sha256, options.video)
            if summary is None:
                todo.append(job)
            else:
                tally.add(done_outcome(job, summary, VideoStatus.SKIPPED))
        finished = True
        try:
            if todo:
                finished = run_batch(todo, bundle, options, out_dir, plan_from(args), tally.add)
        finally:
            tally.write()  # the tables list exactly the videos whose folders are complete (or that failed)
    print(tally.report(finished))  # noqa: T201
    if not finished:
        return 130
    return 1 if tally.count(VideoStatus.FAILED) else 0


def entry() -> None:
    sys.exit(run_cli(main, prog=PROG))


if __name__ == "__main__":  # python -m polyp_live.realtime.batch.cli (same as the polyp-batch console script)
    entry()
