"""The pipeline's stage functions: pure, single-frame (or single-batch) and testable without threads.

Preprocessing is only ever ``engine.prepare`` (which uses :mod:`polyp_live.train.preprocess`, on the CPU or, for
GPU engines, on the device); postprocessing and drawing live in :mod:`polyp_live.realtime.core.postprocess` and
:mod:`polyp_live.realtime.core.overlay`. The threads in :mod:`polyp_live.realtime.core.pipeline` call these and nothing
else.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from polyp_live.engines.base import Engine
from polyp_live.realtime.core.overlay import draw_overlay
from polyp_live.realtime.core.postprocess import TemporalSmoother, postprocess_logits
from polyp_live.realtime.errors import PipelineError
from polyp_live.realtime.settings import RenderSettings
from polyp_live.realtime.types import Batch, Frame, Inference, Prediction, Result, StageTimes


def preprocess_stage(engine: Engine, frames: Sequence[Frame]) -> Batch:
    """Frames -> the engine's prepared input (CPU NumPy batch or a device tensor)."""
    start = time.perf_counter()
    data = engine.prepare([frame.rgb for frame in frames])
    return Batch(tuple(frames), data, time.perf_counter() - start)


def inference_stage(engine: Engine, batch: Batch) -> list[Inference]:
    """Run the engine on a prepared batch; one :class:`Inference` per frame (logits ``(h, w)``).

    Each frame's ``inference`` time is the whole batch's time: the latency that frame saw.
    """
    start = time.perf_counter()
    logits = np.asarray(engine.infer(batch.data))
    elapsed = time.perf_counter() - start
    expected = (len(batch.frames), 1, *engine.contract.input_size)
    if logits.shape != expected:
        raise PipelineError(f"engine {engine.info.backend} returned logits {logits.shape}, expected {expected}")
    if not np.isfinite(logits).all():  # NaN/inf would threshold to "no polyp" and report a clean run
        first = int(np.flatnonzero((~np.isfinite(logits)).reshape(len(logits), -1).any(axis=1))[0])
        raise PipelineError(f"the model {engine.info.source} gave non-finite output (NaN or inf) for frame "
                            f"{batch.frames[first].index}; it is broken or was exported wrongly: re-export or "
                            "retrain it")
    return [
        Inference(frame, logits[i, 0], StageTimes(capture=frame.capture_s, preprocess=batch.preprocess_s,
                                                   inference=elapsed), len(batch.frames))
        for i, frame in enumerate(batch.frames)
    ]


def postprocess_stage(
    inference: Inference, settings: RenderSettings, default_threshold: float, smoother: TemporalSmoother | None = None
) -> Prediction:
    """Logits -> mask at the frame's size and regions, with the settings' threshold and smoothing."""
    start = time.perf_counter()
    threshold = settings.threshold if settings.threshold is not None else default_threshold
    frame = inference.frame
    mask, regions, _ = postprocess_logits(
        inference.logits, frame.height, frame.width, threshold,
        min_area_fraction=settings.min_area_fraction, smoother=smoother, smooth=settings.smooth,
    )
    times = inference.times.with_stage("postprocess", time.perf_counter() - start)
    return Prediction(frame, mask, regions, times)


def overlay_stage(
    frame: Frame, prediction: Prediction | None, settings: RenderSettings, hud: Sequence[str] = ()
) -> Result:
    """Draw ``prediction`` (this frame's, or the newest available in live mode) on ``frame``.

    A prediction made for a frame of another size (a source that changed resolution) is not drawn.
    """
    start = time.perf_counter()
    usable = prediction is not None and prediction.mask.shape == frame.rgb.shape[:2]
    annotated = draw_overlay(
        frame.rgb,
        prediction.mask if usable and prediction is not None else None,
        prediction.regions if usable and prediction is not None else (),
        color=settings.color, opacity=settings.opacity, show_overlay=settings.show_overlay,
        contour=settings.show_contour, boxes=settings.show_boxes, hud=hud if settings.show_hud else (),
    )
    if prediction is not None and prediction.frame is frame:
        times = prediction.times
    else:
        times = StageTimes(capture=frame.capture_s)
    return Result(frame, prediction, annotated, times.with_stage("overlay", time.perf_counter() - start))


def hud_lines(fps: float, latency_ms: float, engine_text: str, result_has_polyp: bool | None) -> list[str]:
    """The status lines drawn on live frames."""
    lines = [f"{fps:5.1f} fps  {latency_ms:5.0f} ms  {engine_text}"]
    if result_has_polyp:
        lines.append("POLYP")
    return lines
