"""The Ray half of ``polyp-batch``: a pool of actors, each holding one open engine, fed one video at a time.

Ray is imported only here, inside functions, so ``realtime`` imports without it. The model's files go into
the object store once (``ray.put``); every actor receives the reference, Ray fetches the object once per
node, and the actor writes it once per machine to a local folder
(:func:`polyp_live.realtime.batch.archive.materialize_model`) and opens the engine from there, once, for every video it
is given. An actor whose process dies is restarted and its video retried (``max_restarts`` / ``max_task_retries`` =
``--max-retries``); the dead attempt's files stay under a partial name and never count. The driver keeps one video in
flight per actor, so Ctrl+C has nothing queued to cancel: the running videos finish (a second Ctrl+C kills the actors),
and the tables hold exactly the videos whose folders are complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyp_live.realtime.batch.archive import (
    ModelBundle,
    TaskOptions,
    VideoJob,
    VideoOutcome,
    annotate_video,
    failed_outcome,
)
from polyp_live.realtime.core.signals import StopRequests, handling_stop_signals
from polyp_live.realtime.errors import OptionError
from polyp_live.train.errors import PolypLiveError

logger = logging.getLogger("polyp_live.batch")  # not __name__: ray.init(address=...) disables the loggers it finds then

class ClusterError(PolypLiveError):
    """Ray could not be started or reached."""


INSTALL_HINT = "polyp-batch needs Ray: pip install 'polyp-live[cluster]'"


@dataclass(frozen=True)
class ClusterPlan:
    """Where and how wide to run: ``address`` "local" starts Ray here; else an existing cluster's address."""

    address: str = "local"
    workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow
    threads_per_task: int = 1
    gpus_per_task: float | None = None  # None: 1 on a cluster with GPUs, else 0
    max_retries: int = 3
    debug: bool = False


class VideoWorker:
    """A Ray actor (``ray.remote`` is applied in :func:`run_batch`): one engine, opened once, many videos."""

    def __init__(self, bundle: ModelBundle, options: TaskOptions, out_dir: str) -> None:
        from polyp_live.engines.registry import open_engine
        from polyp_live.realtime.batch.archive import materialize_model

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self.options, self.out_dir = options, Path(out_dir)
        model = materialize_model(bundle)
        self.engine = open_engine(model, backend=options.backend, threads=options.threads, batch=options.batch)

    def pid(self) -> int:
        return os.getpid()

    def annotate(self, job: VideoJob) -> VideoOutcome:
        return annotate_video(job, self.engine, self.options, self.out_dir)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptionError(INSTALL_HINT) from None
    return ray


def connect(ray: Any, plan: ClusterPlan) -> None:
    """Start a local Ray instance, or join the cluster at ``plan.address`` ("auto": as Ray finds it)."""
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": plan.debug,
                              "logging_level": logging.INFO if plan.debug else logging.WARNING}
    try:
        if plan.address == "local":
            cpus = max(os.cpu_count() or 1, (plan.workers or 1) * plan.threads_per_task)
            ray.init(address="local", num_cpus=cpus, **kwargs)
        else:
            ray.init(address=plan.address, **kwargs)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, or a plain Exception on a start time-out
        where = "start Ray on this machine" if plan.address == "local" else f"reach the Ray cluster at {plan.address}"
        raise ClusterError(f"cannot {where}: {_first_line(exc)}") from None


def pool_size(ray: Any, plan: ClusterPlan, videos: int) -> tuple[int, float]:
    """``(actors, GPUs per actor)`` for this cluster: ``--workers``, else as many as its CPUs / GPUs hold."""
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0.0))
    per_task = plan.gpus_per_task if plan.gpus_per_task is not None else (1.0 if gpus > 0 else 0.0)
    if per_task > 0 and gpus < per_task:
        raise OptionError(f"--gpus-per-task {per_task:g} but the cluster has {gpus:g} GPU(s)")
    if plan.workers is not None:
        fits = plan.workers
    elif per_task > 0:
        fits = int(gpus // per_task)
    else:
        fits = int(float(resources.get("CPU", 1.0)) // plan.threads_per_task)
    return max(1, min(fits, videos)), per_task


def _make_actor(ray: Any, plan: ClusterPlan, gpus: float, init_args: tuple[Any, ...]) -> Any:
    remote = ray.remote(VideoWorker).options(
        num_cpus=plan.threads_per_task, num_gpus=gpus, max_restarts=plan.max_retries,
        max_task_retries=plan.max_retries, max_concurrency=1)
    return remote.remote(*init_args)


@contextmanager
def graceful_interrupt() -> Iterator[StopRequests]:
    """The first SIGINT/SIGTERM asks to stop after the running videos (copies of it from a supervisor are the same
    request, :mod:`polyp_live.realtime.core.signals`); a later SIGINT stops them now (``KeyboardInterrupt``)."""

    def announce() -> None:
        logger.warning("stopping: no new videos; the running ones finish (Ctrl+C again to stop them now)")

    with handling_stop_signals(StopRequests(lambda: None, announce)) as requests:
        yield requests


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


def _collect(ray: Any, ref: Any, job: VideoJob) -> tuple[VideoOutcome, bool]:
    """The video's outcome, and whether its actor is gone for good (its restarts used up)."""
    try:
        return ray.get(ref), False
    except ray.exceptions.RayActorError as exc:
        return failed_outcome(job, f"the worker died on every attempt: {_first_line(exc)}"), True
    except ray.exceptions.RayError as exc:
        return failed_outcome(job, f"{type(exc).__name__}: {_first_line(exc)}"), False


def _wait_ready(ray: Any, actors: list[Any]) -> None:
    """Every actor has opened its engine; else the first one's reason, as one line (a usage error)."""
    try:
        pids = ray.get([actor.pid.remote() for actor in actors])
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None) or exc
        raise OptionError(f"a worker could not open the engine: {_first_line(cause)}") from None
    logger.info("workers ready (pids %s)", ", ".join(map(str, pids)))


def run_batch(jobs: Sequence[VideoJob], bundle: ModelBundle, options: TaskOptions, out_dir: Path,
              plan: ClusterPlan, on_done: Callable[[VideoOutcome], None]) -> bool:
    """Run every job on the cluster, calling ``on_done`` per finished video (in the driver);
    False when interrupted before every job was run."""
    ray = import_ray()
    connect(ray, plan)
    actors: list[Any] = []
    try:
        size, gpus = pool_size(ray, plan, len(jobs))
        logger.info("polyp-batch: %d video(s) on %d worker(s) (%d CPU thread(s)%s each)", len(jobs), size,
                    plan.threads_per_task, f", {gpus:g} GPU" if gpus else "")
        init_args = (ray.put(bundle), options, str(out_dir))  # the model goes into the object store once
        def make() -> Any:
            actor = _make_actor(ray, plan, gpus, init_args)
            actors.append(actor)
            return actor

        pool = [make() for _ in range(size)]
        _wait_ready(ray, pool)
        return _drive(ray, list(jobs), pool, make, on_done)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        ray.shutdown()


def _drive(ray: Any, pending: list[VideoJob], actors: list[Any], make: Callable[[], Any],
           on_done: Callable[[VideoOutcome], None]) -> bool:
    """Keep one video in flight per actor until every video is done (or a signal says stop); an actor whose
    restarts are used up is replaced."""
    idle = list(actors)
    running: dict[Any, tuple[VideoJob, Any]] = {}
    pending.reverse()  # pop() from the end takes them in order
    with graceful_interrupt() as stop:
        try:
            while running or (pending and not stop.requested):
                while idle and pending and not stop.requested:
                    job, actor = pending.pop(), idle.pop()
                    running[actor.annotate.remote(job)] = (job, actor)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in ready:
                    job, actor = running.pop(ref)
                    outcome, gone = _collect(ray, ref, job)
                    on_done(outcome)
                    idle.append(make() if gone else actor)
        except KeyboardInterrupt:
            logger.warning("stopped: %d running video(s) abandoned (their partial files do not count)",
                           len(running))
            return False
    return not pending
