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
from polyp_live.train.contract import ModelContract
from polyp_live.train.decision import OperatingPoint
from polyp_live.train.fov import FieldOfViewTracker, field_of_view_or_whole
from polyp_live.train.preprocess import InputPlan, plan_input, resize_frame
from polyp_live.train.yuv import Yuv420


def plan_frames(contract: ModelContract, frames: Sequence[Frame], fov: FieldOfViewTracker | None,
                crop: bool = True) -> tuple[InputPlan, ...]:
    """Each frame's input plan: the stable field of view of the stream (``fov``, updated with every frame; ``None``:
    found in each frame on its own) when the contract crops and ``crop`` is on, else the whole frame."""
    plans = []
    for frame in frames:
        box = None
        if contract.field_of_view and crop:
            box = fov.update(frame.image) if fov is not None else field_of_view_or_whole(frame.image)
        plans.append(plan_input(frame.height, frame.width, contract, box))
    return tuple(plans)


def preprocess_stage(engine: Engine, frames: Sequence[Frame], fov: FieldOfViewTracker | None = None,
                     crop: bool = True) -> Batch:
    """Frames -> the engine's prepared input (CPU NumPy batch or a device tensor), each through its plan."""
    start = time.perf_counter()
    contract = engine.contract
    plans = plan_frames(contract, frames, fov, crop)
    if any(isinstance(frame.image, Yuv420) for frame in frames):
        # 4:2:0 frames become RGB at the input size only (train.preprocess.resize_frame), then the engine's own
        # preparation has nothing left to crop or resize
        small = [resize_frame(frame.image, contract, plan) for frame, plan in zip(frames, plans, strict=True)]
        data = engine.prepare(small, [InputPlan.identity(contract)] * len(small))
    else:
        data = engine.prepare([frame.image for frame in frames], plans)
    return Batch(tuple(frames), data, time.perf_counter() - start, plans)


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
                                                   inference=elapsed), len(batch.frames),
                  batch.plans[i] if batch.plans else None)
        for i, frame in enumerate(batch.frames)
    ]


def postprocess_stage(
    inference: Inference, settings: RenderSettings, contract: ModelContract, smoother: TemporalSmoother | None = None
) -> Prediction:
    """Logits -> mask at the frame's size and reported regions: the contract's operating point, with what the
    settings override (threshold, minimum area and score), and the settings' smoothing."""
    start = time.perf_counter()
    point = OperatingPoint.of(contract, threshold=settings.threshold, min_area=settings.min_area,
                              min_score=settings.min_score)
    frame = inference.frame
    plan = inference.plan
    mask, regions, _ = postprocess_logits(
        inference.logits, frame.height, frame.width, point,
        plan=plan if plan is not None and not plan.squashes_whole_frame else None,
        smoother=smoother, smooth=settings.smooth,
    )
    times = inference.times.with_stage("postprocess", time.perf_counter() - start)
    fov = plan.fov if plan is not None and not plan.fov.is_whole(frame.height, frame.width) else None
    return Prediction(frame, mask, regions, times, fov)


def overlay_stage(
    frame: Frame, prediction: Prediction | None, settings: RenderSettings, hud: Sequence[str] = ()
) -> Result:
    """Draw ``prediction`` (this frame's, or the newest available in live mode) on ``frame``.

    Regions are drawn while the POLYP alarm is on (an unconfirmed region -- the alarm still off -- is not drawn:
    most false regions last a frame or two, and drawing them is the flicker the alarm removes), with a border
    around the whole image in the mask's colour, where the eye is; without an alarm filter, every reported
    region is drawn. A prediction made for a frame of another size (a source that changed resolution) is not
    drawn.
    """
    start = time.perf_counter()
    usable = (prediction is not None and prediction.mask.shape == (frame.height, frame.width)
              and prediction.alarm is not False)
    mask = prediction.mask if usable and prediction is not None else None
    regions = prediction.regions if usable and prediction is not None else ()
    border = usable and prediction is not None and prediction.alarm is True and settings.show_overlay
    annotated = draw_overlay(frame.image, mask, regions, color=settings.color, opacity=settings.opacity,
                             show_overlay=settings.show_overlay, contour=settings.show_contour,
                             boxes=settings.show_boxes, hud=hud if settings.show_hud else (), alarm_border=border)
    if prediction is not None and prediction.frame is frame:
        times = prediction.times
    else:
        times = StageTimes(capture=frame.capture_s)
    return Result(frame, prediction, annotated, times.with_stage("overlay", time.perf_counter() - start))


def hud_lines(fps: float, latency_ms: float, engine_text: str, result_has_polyp: bool | None,
              polyps: int | None = None) -> list[str]:
    """The status lines drawn on live frames: speed, the alarm, the running count of distinct polyps."""
    lines = [f"{fps:5.1f} fps  {latency_ms:5.0f} ms  {engine_text}"]
    if polyps:
        lines.append(f"polyps: {polyps}")
    if result_has_polyp:
        lines.append("POLYP")
    return lines
