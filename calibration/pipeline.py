"""``polyp-calibrate`` as a function: frames -> FP32 ONNX -> ranges (or cache) -> INT8 Q/DQ -> report.

:func:`run_calibration` takes a :class:`CalibrationConfig` and returns a :class:`CalibrationOutcome`.
It raises :class:`~polyp_live.calibration.errors.CalibrationError` for bad input and
:class:`~polyp_live.calibration.errors.AccuracyGateError` (exit 3) when the INT8 model loses more Dice than
``max_dice_drop``; in that case the model is moved to ``OUT.rejected.onnx`` so that nothing picks up a
failed model from the requested path, and the report is still written.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from polyp_live.calibration.cache import CacheKey, load_cache, model_key, save_cache
from polyp_live.calibration.errors import AccuracyGateError, CalibrationError
from polyp_live.calibration.frames import (
    FrameSet,
    frames_from_images,
    frames_from_mix,
    frames_from_split,
    frames_from_video,
    masked_frames,
)
from polyp_live.calibration.layers import DEFAULT_KEEP_FLOAT, parse_keep_float, select_keep_float, worst_layers
from polyp_live.calibration.quantize import (
    TARGETS,
    QuantizedModel,
    TensorRanges,
    check_method,
    compute_ranges,
    get_target,
    prepare_model,
    quantize_model,
)
from polyp_live.calibration.report import (
    CalibrationInfo,
    CalibrationReport,
    EvaluationInfo,
    GateResult,
    ModelInfo,
    QuantizationInfo,
    gate,
    score_models,
    write_report,
)
from polyp_live.engines.onnx_format import INPUT_NAME, META_CALIBRATION, read_onnx_props
from polyp_live.engines.onnx_passes import GRAPH_PASSES
from polyp_live.engines.onnxruntime_backend import default_threads
from polyp_live.train.contract import ModelContract
from polyp_live.train.preprocess import normalize_batch

logger = logging.getLogger(__name__)

MIN_SAMPLES = 16
RECOMMENDED_SAMPLES = 300
DEFAULT_SAMPLES = 300
DEFAULT_EVAL_SAMPLES = 32
LAYER_ERROR_FRAMES = 2


@dataclass(frozen=True)
class SourceSpec:
    """Where calibration frames come from: ``images`` (folder), ``video`` (file) or ``data`` (dataset split)."""

    kind: str
    path: Path
    split: str = "train"
    split_file: Path | None = None
    data_root: Path | None = None  # kind "mix": the folder the mix's data sets are under (default: shared data)


@dataclass(frozen=True)
class CalibrationConfig:
    checkpoint: str
    out: Path
    source: SourceSpec
    method: str = "entropy"
    samples: int = DEFAULT_SAMPLES
    target: str = "cpu"
    keep_float: tuple[str, ...] = parse_keep_float(DEFAULT_KEEP_FLOAT)
    eval_data: Path | None = None
    eval_samples: int = DEFAULT_EVAL_SAMPLES
    max_dice_drop: float = 0.01
    max_false_alarm_rise: float = 0.01  # INT8 may report a region on at most this share more polyp-free frames
    cache: Path | None = None  # None: OUT with suffix .calib.json, used with the lenient policy
    size: int | None = None
    seed: int = 0
    threads: int | None = None
    latency_runs: int = 20
    compare_targets: bool = True
    report_json: Path | None = None
    report_md: Path | None = None
    progress: bool = True


@dataclass(frozen=True)
class CalibrationOutcome:
    out: Path
    report: CalibrationReport
    ranges: TensorRanges
    cache_path: Path
    cache_hit: bool
    quantized: QuantizedModel


def default_cache_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".onnx") + ".calib.json")


def _video(spec: SourceSpec, count: int, contract: ModelContract, seed: int) -> FrameSet:
    return frames_from_video(spec.path, count, contract)


def _images(spec: SourceSpec, count: int, contract: ModelContract, seed: int) -> FrameSet:
    return frames_from_images(spec.path, count, contract, seed=seed)


def _data(spec: SourceSpec, count: int, contract: ModelContract, seed: int) -> FrameSet:
    return frames_from_split(spec.path, spec.split, spec.split_file, count, contract, seed=seed)


def _mix(spec: SourceSpec, count: int, contract: ModelContract, seed: int) -> FrameSet:
    return frames_from_mix(spec.path, spec.data_root, spec.split, count, contract, seed=seed)


SOURCES: dict[str, Callable[[SourceSpec, int, ModelContract, int], FrameSet]] = {
    "images": _images,
    "video": _video,
    "data": _data,
    "mix": _mix,
}


def _check_config(config: CalibrationConfig) -> None:
    check_method(config.method)
    get_target(config.target)
    if config.source.kind not in SOURCES:
        raise CalibrationError(f"unknown frame source {config.source.kind!r}; use one of {', '.join(SOURCES)}")
    if config.samples < MIN_SAMPLES:
        raise CalibrationError(f"--samples {config.samples} is too few; calibration needs {MIN_SAMPLES} frames or more")
    if config.eval_samples < 1:
        raise CalibrationError(f"--eval-samples must be at least 1, got {config.eval_samples}")
    if not 0.0 <= config.max_dice_drop <= 1.0:
        raise CalibrationError(f"--max-dice-drop must be in [0, 1], got {config.max_dice_drop}")
    if not 0.0 <= config.max_false_alarm_rise <= 1.0:
        raise CalibrationError(f"--max-false-alarm-rise must be in [0, 1], got {config.max_false_alarm_rise}")
    if config.out.suffix != ".onnx":
        raise CalibrationError(f"--out {config.out} must end in .onnx")


def _load_contract(config: CalibrationConfig) -> tuple[Path, ModelContract, str]:
    """Checkpoint path, contract at the requested size, weights SHA-256."""
    from polyp_live.train.checkpoint import read_checkpoint
    from polyp_live.train.zoo import resolve_checkpoint

    path = resolve_checkpoint(config.checkpoint)
    info = read_checkpoint(path)
    contract = info.contract if config.size is None else info.contract.with_size(config.size)
    return path, contract, info.weights_sha256


def _split_frames(config: CalibrationConfig, contract: ModelContract) -> tuple[FrameSet, FrameSet, list[str]]:
    """Calibration frames and evaluation frames (with masks when there is ground truth), plus notes."""
    notes: list[str] = []
    held_out = config.eval_data is None and config.source.kind not in ("data", "mix")
    wanted = config.samples + (config.eval_samples if held_out else 0)
    pool = SOURCES[config.source.kind](config.source, wanted, contract, config.seed)
    frames = list(pool.frames)
    if config.source.kind == "video":  # spread over the clip, then a seeded shuffle spreads the held-out part too
        random.Random(config.seed).shuffle(frames)
    calib = FrameSet(pool.source, tuple(frames[: config.samples]), f"{pool.note}; {min(len(frames), config.samples)} "
                     f"used for calibration")
    if len(calib) < MIN_SAMPLES:
        raise CalibrationError(
            f"only {len(calib)} usable calibration frames from {pool.source}; at least {MIN_SAMPLES} are needed "
            "(give more images or a longer video)"
        )
    if len(calib) < RECOMMENDED_SAMPLES:
        logger.warning("calibrating on %d frames; %d or more give more reliable ranges", len(calib),
                       RECOMMENDED_SAMPLES)
    if config.eval_data is not None:
        evaluation = masked_frames(config.eval_data, config.eval_samples, contract, seed=config.seed)
    elif config.source.kind == "mix":
        evaluation = frames_from_mix(config.source.path, config.source.data_root, "val", config.eval_samples,
                                     contract, seed=config.seed, with_masks=True)
        notes.append("evaluated on the mix's validation parts with their masks (polyp-free frames: empty masks)")
    elif config.source.kind == "data":
        other = "val" if config.source.split != "val" else "test"
        evaluation = frames_from_split(
            config.source.path, other, config.source.split_file, config.eval_samples, contract,
            seed=config.seed, with_masks=True,
        )
        if len(evaluation):
            notes.append(f"evaluated on the held-out {other} split with its masks")
    else:
        evaluation = FrameSet(pool.source, tuple(frames[config.samples :]), "held-out frames of the same source")
    if len(evaluation) == 0:
        evaluation = FrameSet(calib.source, calib.frames[: config.eval_samples], "calibration frames (none held out)")
        notes.append("no frames were left to hold out: the report evaluates on calibration frames")
    return calib, evaluation, notes


def _export_and_prepare(checkpoint: Path, contract: ModelContract, work: Path) -> tuple[Path, Path]:
    """FP32 ONNX through polyp-export's exporter, then quant_pre_process (every node named); (fp32, prepared)."""
    import onnx

    from polyp_live.engines.onnx_export import export_onnx

    fp32 = export_onnx(checkpoint, work / "fp32.onnx", size=contract.input_size, verify=False).path
    prepared = prepare_model(fp32, work / "prepared.onnx")
    model = onnx.load(str(prepared))
    unnamed = [n for n in model.graph.node if not n.name]
    for index, node in enumerate(unnamed):
        node.name = f"{node.op_type}_unnamed_{index}"
    if unnamed:
        onnx.save(model, str(prepared))
    return fp32, prepared


def _ranges(
    config: CalibrationConfig, prepared: Path, calib: FrameSet, contract: ModelContract, key: CacheKey,
    cached: TensorRanges | None,
) -> tuple[TensorRanges, Path, bool, float]:
    cache_path = config.cache or default_cache_path(config.out)
    if cached is not None:
        return cached, cache_path, True, 0.0
    start = time.perf_counter()
    ranges = compute_ranges(prepared, calib.pixels(), contract, config.method, progress=config.progress)
    seconds = time.perf_counter() - start
    save_cache(cache_path, key, ranges)
    return ranges, cache_path, False, seconds


def calibrate(config: CalibrationConfig) -> CalibrationOutcome:
    """Calibrate, quantize and evaluate; writes the reports. The accuracy gate is applied by :func:`enforce_gate`."""
    import onnx
    import onnxruntime

    _check_config(config)
    checkpoint, contract, weights_sha = _load_contract(config)
    calib, evaluation, notes = _split_frames(config, contract)
    h, w = contract.input_size
    tool = f"onnxruntime {onnxruntime.__version__}, {GRAPH_PASSES}"
    key = CacheKey(model_key(weights_sha, contract.input_size, tool),
                   calib.fingerprint(), config.method, len(calib),
                   model=f"PEFNet-{contract.variant} {h}x{w} from {checkpoint.name}")
    # checked before the export, so that a cache of another model is refused at once
    cached = load_cache(config.cache or default_cache_path(config.out), key, explicit=config.cache is not None)
    with tempfile.TemporaryDirectory(prefix="polyp-calibrate-") as tmp:
        work = Path(tmp)
        fp32, prepared = _export_and_prepare(checkpoint, contract, work)
        keep = select_keep_float(onnx.load(str(prepared), load_external_data=False), config.keep_float)
        exclude = tuple(dict.fromkeys(name for names in keep.values() for name in names))
        ranges, cache_path, hit, seconds = _ranges(config, prepared, calib, contract, key, cached)
        metadata = read_onnx_props(fp32)
        metadata[META_CALIBRATION] = json.dumps(
            {"method": ranges.method, "samples": ranges.samples, "source": calib.source,
             "data_fingerprint": key.data_fingerprint, "keep_float": list(config.keep_float)}, sort_keys=True)
        quantized = quantize_model(prepared, config.out, ranges, config.target, exclude=exclude, metadata=metadata)
        models = [("fp32", fp32, False), (f"int8-{config.target}", config.out, True)]
        if config.compare_targets:
            for other in (t for t in TARGETS if t != config.target):
                extra = quantize_model(prepared, work / f"int8-{other}.onnx", ranges, other, exclude=exclude)
                models.append((f"int8-{other}", extra.path, False))
        calibration = CalibrationInfo(ranges.method, ranges.samples, calib.source, calib.note, str(cache_path), hit,
                                      round(seconds, 3), key.data_fingerprint)
        report = _evaluate(config, contract, evaluation, models, prepared, quantized, notes, calibration)
    write_report(report, config.report_json, config.report_md)
    return CalibrationOutcome(config.out, report, ranges, cache_path, hit, quantized)


def _evaluate(
    config: CalibrationConfig,
    contract: ModelContract,
    evaluation: FrameSet,
    models: list[tuple[str, Path, bool]],
    prepared: Path,
    quantized: QuantizedModel,
    notes: list[str],
    calibration: CalibrationInfo,
) -> CalibrationReport:
    inputs = [normalize_batch([frame.pixels], contract) for frame in evaluation.frames]
    has_truth = all(frame.mask is not None for frame in evaluation.frames)
    truths = [frame.mask for frame in evaluation.frames] if has_truth else None
    threads = config.threads or default_threads()
    rows = score_models(models, inputs, truths, contract, threads=threads, latency_runs=config.latency_runs)
    result = gate(rows, config.max_dice_drop, config.max_false_alarm_rise)
    if not result.passed:
        feeds = [{INPUT_NAME: x} for x in inputs[:LAYER_ERROR_FRAMES]]
        worst = worst_layers(prepared, quantized.path, feeds)
        result = replace(result, worst_layers=tuple(e.describe() for e in worst))
    return CalibrationReport(
        model=ModelInfo(config.checkpoint, contract),
        calibration=calibration,
        quantization=QuantizationInfo(
            str(quantized.path), quantized.target, get_target(quantized.target).description,
            dict(quantized.quantized_ops), quantized.qdq_nodes, config.keep_float, quantized.excluded_nodes,
        ),
        evaluation=EvaluationInfo(len(inputs), f"{evaluation.source} ({evaluation.note})", has_truth,
                                  contract.threshold, threads, config.latency_runs),
        rows=tuple(rows),
        gate=result,
        notes=tuple(notes),
    )


def enforce_gate(outcome: CalibrationOutcome) -> CalibrationOutcome:
    """Raise :class:`AccuracyGateError` (moving the model to ``*.rejected.onnx``) when the gate failed."""
    result: GateResult = outcome.report.gate
    if result.passed:
        return outcome
    rejected = outcome.out.with_name(outcome.out.name.removesuffix(".onnx") + ".rejected.onnx")
    os.replace(outcome.out, rejected)
    worst = f"; worst layers: {', '.join(result.worst_layers)}" if result.worst_layers else ""
    if result.dice_drop > result.max_dice_drop:
        problem = (f"INT8 Dice drops by {result.dice_drop:.4f} ({result.basis}), more than --max-dice-drop "
                   f"{result.max_dice_drop}")
    else:
        problem = (f"INT8 raises false alarms by {result.false_alarm_rise:.4f} of the polyp-free frames, more than "
                   f"--max-false-alarm-rise {result.max_false_alarm_rise}")
    raise AccuracyGateError(f"{problem}{worst}; model moved to {rejected} (try --keep-float or more calibration "
                            "frames)")


def run_calibration(config: CalibrationConfig) -> CalibrationOutcome:
    """:func:`calibrate` then :func:`enforce_gate`."""
    return enforce_gate(calibrate(config))
