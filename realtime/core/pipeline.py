"""The threaded pipeline: capture -> preprocess -> inference -> postprocess -> overlay -> output (sinks).

Library use (no Qt needed)::

    with Pipeline(source, engine, PipelineConfig(), sinks=[JsonlSink("out.jsonl")]) as run:
        for result in run:          # Result objects, in order (file mode)
            ...
    summary = run.summary()

    summary = run_to_completion(source, engine, PipelineConfig(), sinks)   # the same, returning RunSummary

Each stage runs in its own thread; stages are joined by bounded queues (see :mod:`polyp_live.realtime.core.queues`):

FILE mode (no frame lost, written in order; a full queue blocks its producer = back-pressure)

=============  ============================  ===================  ==========
queue          between                       capacity             policy
=============  ============================  ===================  ==========
frames         capture -> preprocess         2 x batch            block
batches        preprocess -> inference       2 batches            block
inferences     inference -> postprocess      2 x batch            block
predictions    postprocess -> overlay        4                    block
results        overlay -> output             4                    block
delivered      output -> ``for result in``   8                    block
=============  ============================  ===================  ==========

LIVE mode (latest frame wins: stale items are dropped and counted, latency stays bounded)

=============  ============================  ===================  ==========
queue          between                       capacity             policy
=============  ============================  ===================  ==========
frames         capture -> preprocess         1                    drop-oldest
display        capture -> overlay            1                    drop-oldest
batches        preprocess -> inference       1                    drop-oldest
inferences     inference -> postprocess      1                    drop-oldest
predictions    postprocess -> overlay        1 (``--sync`` only)  drop-oldest
results        overlay -> output             1                    drop-oldest
delivered      output -> ``for result in``   1                    drop-oldest
=============  ============================  ===================  ==========

In LIVE mode the display never waits for the model: capture also feeds the ``display`` queue, and the
overlay stage draws each frame at once with the newest prediction available (a one-slot holder the
postprocess stage updates). With ``sync=True`` only frames whose own mask is ready are shown.
Live mode infers one frame at a time and preprocessing pulls: it takes the newest frame only when the
inference stage asks for one, so stale frames are dropped at the ``frames`` queue before any work is
spent on them. File mode batches up to the engine's ``preferred_batch`` (at most ``max_batch``).

Shutdown: :meth:`Pipeline.stop` (end of input, window closed, SIGINT/SIGTERM) stops capture; the other
stages drain their queues, the output stage closes the sinks (so the MP4 is finalised with every frame
processed), and every thread is joined with a timeout. A stage that fails records the error, cancels
its input queue (its producers stop) and closes its output (downstream drains what was done).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from polyp_live.engines.base import Engine
from polyp_live.realtime.core import cv_threads
from polyp_live.realtime.core.freshness import MaskFreshness
from polyp_live.realtime.core.postprocess import TemporalSmoother
from polyp_live.realtime.core.procedure import ProcedureTracker
from polyp_live.realtime.core.queues import EMPTY, END, LatestValue, PipelineQueues, StageQueue
from polyp_live.realtime.core.stages import (
    hud_lines,
    inference_stage,
    overlay_stage,
    postprocess_stage,
    preprocess_stage,
)
from polyp_live.realtime.core.stats import DEFAULT_EPISODE_GAP_FRAMES, RunStats
from polyp_live.realtime.errors import PipelineError
from polyp_live.realtime.ports import Sink, Source, sink_files, sink_recorded, source_stale_dropped, source_startup_s
from polyp_live.realtime.settings import RenderSettings, SettingsBox
from polyp_live.realtime.types import (
    THREAD_PREFIX,
    Counts,
    Frame,
    FrameCounts,
    Gap,
    Prediction,
    Result,
    RunMode,
    RunSummary,
    SourceInfo,
    StopReason,
)
from polyp_live.train.alarm import AlarmConfig
from polyp_live.train.fov import FieldOfViewTracker

logger = logging.getLogger(__name__)

MODEL_STAGES = ("preprocess", "inference", "postprocess")
FRAME_STAGES = ("capture", "overlay", "output")
# the viewer's sink (polyp_live.realtime.viewer.window.QtDisplaySink.name): its drops are frames not painted
DISPLAY_SINK = "display"
# Which latest-wins queues lose a taken frame for the outputs / for the model (the counters' balances,
# types.FrameCounts); "inferences" loses a mask in live mode, "delivered" a result already written.
OUTPUT_PATH = {RunMode.FILE: (), RunMode.LIVE: ("display", "results"),
               RunMode.LIVE_SYNC: ("frames", "batches", "inferences", "predictions", "results")}
MODEL_PATH = ("frames", "batches")


@dataclass(frozen=True)
class PipelineConfig:
    """How a run behaves. ``live=None``: from the source (capture devices and streams are live)."""

    live: bool | None = None
    sync: bool = False  # live: show only frames whose own mask is ready
    batch: int | None = None  # file mode; None: the engine's preferred batch (at most its max batch)
    max_frames: int | None = None
    settings: RenderSettings = RenderSettings()  # noqa: RUF009 - frozen, shared safely
    episode_gap_frames: int = DEFAULT_EPISODE_GAP_FRAMES
    join_timeout_s: float = 10.0
    deliver: bool = True  # False when nobody iterates the run (viewer, callbacks only)
    crop: bool = True  # crop to the endoscope's field of view when the model's contract asks for it (--no-crop)
    alarm: AlarmConfig = AlarmConfig()  # noqa: RUF009 - frozen; the POLYP alarm's on/off frames (--alarm-on/-off)


class Pipeline:
    """One run over one source. Owns its threads; does not own (close) the engine."""

    def __init__(
        self,
        source: Source,
        engine: Engine,
        config: PipelineConfig | None = None,
        sinks: Sequence[Sink] = (),
        settings: SettingsBox | None = None,
    ) -> None:
        self.source = source
        self.engine = engine
        self.config = config or PipelineConfig()
        self.sinks = list(sinks)
        self.settings = settings or SettingsBox(self.config.settings)
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._threads: list[threading.Thread] = []
        self._error: tuple[str, BaseException] | None = None
        self._error_lock = threading.Lock()
        self._started = False
        self._closed = False
        self._stopped_by_user = False
        self._end_reason = StopReason.END_OF_INPUT
        self._input_ended = threading.Event()  # capture reached the end (or --max-frames): not a user stop
        self.frames_in = 0  # frames taken from the source (what --max-frames counts)
        self.frames_inferred = 0
        self._gaps: list[Gap] = []  # every gap the source reported, in order (capture thread appends)
        self._gaps_lock = threading.Lock()
        self._gaps_written = 0  # how many of them the output stage has attached to a result
        self._t_start = 0.0
        self._t_end: float | None = None
        self._smoother = TemporalSmoother()
        self.fov = FieldOfViewTracker(name="field of view")  # the stream's stable field of view (preprocess thread)
        self.procedure = ProcedureTracker(self.config.alarm)  # the alarm and distinct polyps (postprocess thread)
        self._newest = LatestValue()  # newest Prediction, for live display
        self.freshness = MaskFreshness(1.0 / 25.0)  # live: which newest mask may still be drawn (start() sets the rate)
        self._want_batch = threading.Event()  # live: inference is ready for the next frame
        self.finished = threading.Event()  # set when the output stage has closed the sinks
        self.live = False
        self.batch = 1
        self.stats = RunStats()
        self._queues: PipelineQueues | None = None  # made by start()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Pipeline:
        if self._started:
            return self
        info = self.open_source()
        self.live = self._resolve_live()
        self.stats = RunStats(live=self.live, gap_frames=self.config.episode_gap_frames)
        self.freshness = MaskFreshness(1.0 / info.fps if info.fps > 0 else 1.0 / 25.0)
        self.batch = 1 if self.live else self._file_batch()
        self._queues = PipelineQueues.live() if self.live else PipelineQueues.file(self.batch)
        sync = self.config.sync or not self.live
        targets: list[tuple[str, Callable[[], None]]] = [
            ("capture", self._capture_loop),
            ("preprocess", self._preprocess_loop),
            ("inference", self._inference_loop),
            ("postprocess", self._postprocess_loop),
            ("overlay", self._overlay_sync_loop if sync else self._overlay_live_loop),
            ("output", self._output_loop),
        ]
        self._t_start = time.monotonic()
        for name, target in targets:
            thread = threading.Thread(target=target, name=THREAD_PREFIX + name, daemon=True)
            self._threads.append(thread)
        self._started = True
        cv_threads.acquire()  # stages run in parallel: OpenCV's own pool would oversubscribe the cores
        for thread in self._threads:
            thread.start()
        logger.debug("pipeline started: %s mode, batch %d, source %s", self.mode, self.batch, info.description)
        return self

    def open_source(self) -> SourceInfo:
        """Open the source if it is not yet open (start() does; the viewer needs its size before)."""
        if not self.source.opened:
            self.source.open()
        return self.source.info

    def _resolve_live(self) -> bool:
        """Live or file mode: the config's choice, else the source's nature (the one place it is decided)."""
        return self.open_source().live if self.config.live is None else bool(self.config.live)

    @property
    def mode(self) -> RunMode:
        """The run's mode; before :meth:`start` it is resolved from the config and the (opened) source."""
        live = self.live if self._started else self._resolve_live()
        if not live:
            return RunMode.FILE
        return RunMode.LIVE_SYNC if self.config.sync else RunMode.LIVE

    def add_sinks(self, *sinks: Sink) -> None:
        """More outputs (e.g. the viewer's display and recorder); only before :meth:`start`."""
        if self._started:
            raise PipelineError("sinks can only be added before the pipeline starts")
        self.sinks.extend(sinks)

    @property
    def queues(self) -> PipelineQueues:
        """The run's queues (made by :meth:`start`)."""
        if self._queues is None:
            raise PipelineError("the pipeline has not started, so it has no queues yet")
        return self._queues

    def _file_batch(self) -> int:
        info = self.engine.info
        wanted = self.config.batch if self.config.batch is not None else info.preferred_batch
        return max(1, min(int(wanted), max(1, info.max_batch)))

    def stop(self) -> None:
        """Ask the run to end: capture stops now, everything already captured is still processed and written."""
        # A stop that races the end of the input (the viewer closing on the output stage's "finished"
        # signal, before ``finished`` is set) is not a user stop: the input had already ended.
        if not (self.finished.is_set() or self._input_ended.is_set()):
            self._stopped_by_user = True
        self._halt()

    def _halt(self) -> None:
        """Capture stops: wake a paused capture, and tell the source (a reconnect back-off gives up)."""
        self._stop.set()
        self._resume.set()
        self.source.stop()

    def pause(self, paused: bool = True) -> None:
        """Hold capture (file inputs); live sources keep running but nothing new is read."""
        if paused:
            self._resume.clear()
        else:
            self._resume.set()

    @property
    def stop_requested(self) -> bool:
        """``stop()`` was called (Ctrl+C, window closed) -- not set by the end of the input."""
        return self._stopped_by_user

    @property
    def running(self) -> bool:
        return self._started and not self.finished.is_set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    @property
    def error(self) -> BaseException | None:
        return self._error[1] if self._error else None

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = (stage, exc)
                logger.debug("stage %s failed", stage, exc_info=exc)
        self._halt()

    def close(self) -> None:
        """Stop, let the stages drain, join every thread (with a timeout) and close the source."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            self.source.close()
            return
        if self._threads[0].is_alive() and self._error is None and not self._input_ended.is_set():
            self._stopped_by_user = True  # closed before the input ended (e.g. the loop broke early)
        self._halt()
        self.queues.delivered.cancel()  # nobody reads any more
        deadline = time.monotonic() + self.config.join_timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("pipeline thread %s did not stop within %.0f s", thread.name, self.config.join_timeout_s)
        cv_threads.release()
        if not self._threads[0].is_alive():  # never close a source under a reader that is still in read()
            self.source.close()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- results
    def __iter__(self) -> Iterator[Result]:
        """Results in output order until the run ends; raises :class:`PipelineError` if a stage failed."""
        if not self.config.deliver:
            raise PipelineError("this pipeline was configured with deliver=False; results go to its sinks only")
        self.start()
        delivered = self.queues.delivered
        while True:
            item = delivered.get(timeout=0.2)
            if item is EMPTY:
                continue
            if item is END:
                break
            yield item
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self._error is None:
            return
        stage, exc = self._error
        self.close()
        raise PipelineError(f"{stage} failed: {exc}", self.summary()) from exc

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the output stage has finished (sinks closed); ``False`` on timeout."""
        return self.finished.wait(timeout)

    # ----------------------------------------------------------------- stage threads
    def _guard(
        self, stage: str, body: Callable[[], None], inbox: StageQueue | None, outboxes: Sequence[StageQueue]
    ) -> None:
        """Run a stage body; on failure record it and cancel the input; always close the outputs."""
        try:
            body()
        except BaseException as exc:
            self._fail(stage, exc)
            if inbox is not None:
                inbox.cancel()
        finally:
            for queue in outboxes:
                queue.close()

    def _capture_loop(self) -> None:
        queues = self.queues
        outboxes = [queues.frames]
        if self.live and not self.config.sync and queues.display is not None:
            outboxes.append(queues.display)
        every = [q for q in (queues.frames, queues.display) if q is not None]
        self._guard("capture", lambda: self._capture(outboxes), None, every)

    def _capture(self, outboxes: Sequence[StageQueue]) -> None:
        limit = self.config.max_frames
        while not self._stop.is_set():
            if not self._resume.is_set():
                self._resume.wait(0.1)
                continue
            if limit is not None and self.frames_in >= limit:
                self._end_reason = StopReason.MAX_FRAMES
                self._input_ended.set()
                return
            frame = self.source.read()
            if frame is None:
                self._input_ended.set()
                return
            self.frames_in += 1
            if frame.gap is not None:
                with self._gaps_lock:
                    self._gaps.append(frame.gap)
                self.freshness.gap_before(frame)
            for queue in outboxes:
                if not queue.put(frame):
                    return

    def _preprocess_loop(self) -> None:
        inbox, outbox = self.queues.frames, self.queues.batches

        def live_body() -> None:
            # Pull, not push: prepare the newest frame only when inference asks for one, so frames that
            # would be dropped anyway are never preprocessed and the mask is as fresh as it can be.
            while True:
                while not self._want_batch.wait(0.05):
                    if outbox.cancelled or (inbox.closed and not len(inbox)):  # the last frame is still inferred
                        return
                self._want_batch.clear()
                frame = inbox.get()
                if frame is END or not outbox.put(preprocess_stage(self.engine, [frame], self.fov, self.config.crop)):
                    return

        def body() -> None:
            while True:
                first = inbox.get()
                if first is END:
                    return
                group: list[Frame] = [first]
                while len(group) < self.batch:
                    item = inbox.get()
                    if item is END:
                        break
                    group.append(item)
                if not outbox.put(preprocess_stage(self.engine, group, self.fov, self.config.crop)):
                    inbox.cancel()
                    return

        self._guard("preprocess", live_body if self.live else body, inbox, [outbox])

    def _inference_loop(self) -> None:
        inbox, outbox = self.queues.batches, self.queues.inferences

        def body() -> None:
            if self.engine.info.device.startswith("cuda"):
                # CUDA libraries set up per thread (cuBLAS/cuDNN handles, autotuning): pay that here,
                # on random data, rather than on the first real frame (measured ~2 s on an H200)
                self.engine.warmup(1)
            while True:
                self._want_batch.set()
                if (batch := inbox.get()) is END:
                    return
                self.frames_inferred += len(batch.frames)
                for item in inference_stage(self.engine, batch):
                    if not outbox.put(item):
                        inbox.cancel()
                        return

        self._guard("inference", body, inbox, [outbox])

    def _postprocess_loop(self) -> None:
        inbox, outbox = self.queues.inferences, self.queues.predictions
        to_board = self.live and not self.config.sync
        contract = self.engine.contract

        def body() -> None:
            last: int | None = None
            while (item := inbox.get()) is not END:
                gap = last is not None and self.freshness.gap_between(last, item.frame.index)
                if gap:
                    self._smoother = TemporalSmoother()  # no smoothing across a gap: another scene, maybe
                last = item.frame.index
                prediction = postprocess_stage(item, self.settings.get(), contract, self._smoother)
                prediction = self.procedure.step(prediction, gap)
                if to_board:
                    self.freshness.mask_ready(prediction, time.monotonic())
                    self._newest.set(prediction)
                    self.stats.add_times(prediction.times, MODEL_STAGES)
                elif not outbox.put(prediction):
                    inbox.cancel()
                    return

        self._guard("postprocess", body, inbox, [outbox])

    def _hud(self, prediction: Prediction | None) -> list[str]:
        info = self.engine.info
        polyp = prediction is not None and prediction.shows_polyp
        return hud_lines(self.stats.recent_fps(), self.stats.last_latency_s * 1000.0,
                         f"{info.backend} {info.precision}", polyp, self.procedure.distinct_polyps)

    def _overlay_sync_loop(self) -> None:
        inbox, outbox = self.queues.predictions, self.queues.results

        def body() -> None:
            while (prediction := inbox.get()) is not END:
                result = overlay_stage(prediction.frame, prediction, self.settings.get(), self._hud(prediction))
                if not outbox.put(result):
                    inbox.cancel()
                    return

        self._guard("overlay", body, inbox, [outbox])

    def _overlay_live_loop(self) -> None:
        inbox, outbox = self.queues.display, self.queues.results

        def body() -> None:
            if inbox is None:
                raise PipelineError("live display without a display queue")
            while (frame := inbox.get()) is not END:
                prediction = self.freshness.usable(frame, self._newest.get(), time.monotonic())
                result = overlay_stage(frame, prediction, self.settings.get(), self._hud(prediction))
                if not outbox.put(result):
                    inbox.cancel()
                    return

        self._guard("overlay", body, inbox, [outbox])

    def _output_loop(self) -> None:
        inbox, delivered = self.queues.results, self.queues.delivered
        stages = FRAME_STAGES if self.live and not self.config.sync else MODEL_STAGES + FRAME_STAGES

        def body() -> None:
            while (result := inbox.get()) is not END:
                start = time.perf_counter()
                result = self._with_gaps(result)
                for sink in self.sinks:
                    sink.write(result)
                result = Result(result.frame, result.prediction, result.annotated,
                                result.times.with_stage("output", time.perf_counter() - start), result.gaps)
                self.stats.add(result, time.monotonic(), stages)
                if self.config.deliver:
                    delivered.put(result)  # False only after close(): the reader is gone

        try:
            self._guard("output", body, inbox, [delivered])
        finally:
            self._close_sinks()
            self._t_end = time.monotonic()
            self.finished.set()

    def _with_gaps(self, result: Result) -> Result:
        """The result with every gap not yet written up to its frame (those of frames dropped before it too)."""
        with self._gaps_lock:
            pending = self._gaps[self._gaps_written:]
            due = [gap for gap in pending if gap.at_s <= result.frame.source_ts]
            self._gaps_written += len(due)
        return Result(result.frame, result.prediction, result.annotated, result.times, tuple(due)) if due else result

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self._fail("output", exc)

    # ----------------------------------------------------------------- summary
    def drops(self) -> tuple[tuple[str, int], ...]:
        """Items dropped per latest-wins queue and per sink that keeps only the newest result (display)."""
        queues = self._queues.values() if self._queues is not None else ()
        counts = [(q.name, q.dropped) for q in queues if q.name != "delivered" or self.config.deliver]
        counts += [(s.name, int(s.dropped)) for s in self.sinks]
        return tuple((name, n) for name, n in counts if n)

    def frame_counts(self) -> FrameCounts:
        """Every frame counter of the run, defined once (:class:`~polyp_live.realtime.types.FrameCounts`); complete once
        the run has finished."""
        queues = {q.name: q.dropped for q in self._queues.values()} if self._queues is not None else {}
        out = self.stats.frames_out
        dropped = tuple((name, queues[name]) for name in OUTPUT_PATH[self.mode] if queues.get(name))
        not_inferred = tuple((name, queues[name]) for name in MODEL_PATH if queues.get(name))
        after: Counts = tuple((s.name if s.name != DISPLAY_SINK else "viewer", int(s.dropped))
                              for s in self.sinks if s.dropped)
        if self.config.deliver and queues.get("delivered"):
            after += (("delivered", queues["delivered"]),)
        recorded = [n for n in (sink_recorded(s) for s in self.sinks) if n is not None]
        viewer = [s for s in self.sinks if s.name == DISPLAY_SINK]
        return FrameCounts(
            taken=self.frames_in, inferred=self.frames_inferred, out=out, dropped=dropped, not_inferred=not_inferred,
            stale=source_stale_dropped(self.source),
            masks_dropped=queues.get("inferences", 0) if self.mode == RunMode.LIVE else 0, after_output=after,
            masks_withheld=self.freshness.withheld() if self.mode == RunMode.LIVE else (),
            recorded=max(recorded) if recorded else None,
            shown=out - sum(int(s.dropped) for s in viewer) if viewer else None,
            cut=max(0, self.frames_in - out - sum(n for _, n in dropped)),
            cut_model=max(0, self.frames_in - self.frames_inferred - sum(n for _, n in not_inferred)),
        )

    def gaps(self) -> tuple[Gap, ...]:
        """Every gap the source reported so far, in order."""
        with self._gaps_lock:
            return tuple(self._gaps)

    def summary(self) -> RunSummary:
        """What happened so far (complete once the run has finished)."""
        info = self.engine.info
        end = self._t_end if self._t_end is not None else time.monotonic()
        wall = max(1e-9, end - self._t_start) if self._started else 0.0
        counts = self.frame_counts()
        if self._error is not None:
            stopped, error = StopReason.ERROR, f"{self._error[0]} failed: {self._error[1]}"
        else:
            stopped, error = (StopReason.STOPPED if self._stopped_by_user else self._end_reason), None
        src = self.source.info if self.source.opened else None
        first = self.stats.first_output
        return RunSummary(
            source=src.description if src else "?", mode=self.mode, engine=info.describe(), backend=info.backend,
            precision=info.precision, device=info.device, frames_in=counts.taken, frames_out=counts.out,
            frames_dropped=max(0, counts.taken - counts.out), drops=self.drops(),
            decode_errors=int(self.source.decode_errors), wall_s=round(wall, 3),
            throughput_fps=round(counts.out / wall, 2) if wall else 0.0, latency=self.stats.latency(),
            frames_with_polyp=self.stats.frames_with_polyp,
            episodes=self.stats.episodes(),
            episode_gap_frames=self.config.episode_gap_frames, stopped=stopped, error=error,
            expected_frames=src.frame_count if src else None,
            outputs=tuple(str(path) for s in self.sinks for path in sink_files(s)  # only what is there: never
                          if os.path.exists(path)),  # claim a file not written
            counts=counts, gaps=self.gaps(), startup_s=source_startup_s(self.source),
            first_output_s=round(first - self._t_start, 3) if first is not None and self._started else None,
            mask_max_age_ms=round(self.freshness.max_age_s * 1000.0, 1) if self.mode == RunMode.LIVE else None,
            polyps=self.procedure.polyps(), alarm_frames=(self.config.alarm.on_frames, self.config.alarm.off_frames),
        )


def run_to_completion(
    source: Source,
    engine: Engine,
    config: PipelineConfig | None = None,
    sinks: Sequence[Sink] = (),
    *,
    settings: SettingsBox | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> RunSummary:
    """Run ``source`` through ``engine`` into ``sinks`` until the end; raises :class:`PipelineError`
    (with ``.summary``) if a stage failed. ``on_result`` is called in the caller's thread per result."""
    pipeline = Pipeline(source, engine, config, sinks, settings)
    with pipeline:
        for result in pipeline:
            if on_result is not None:
                on_result(result)
    return pipeline.summary()


def pipeline_threads() -> list[threading.Thread]:
    """Live threads that belong to some pipeline (empty after every run has closed)."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
