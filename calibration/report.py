"""The accuracy report: FP32 vs INT8 masks, Dice / IoU, pixel agreement and CPU latency.

Every model row is run through ONNX Runtime on the CPU as polyp-live runs it
(:func:`polyp_live.engines.onnxruntime_backend.ort_session`, same threads and session options). Masks are
compared at the model's input size (ground-truth masks are resized with nearest-neighbour sampling);
a pixel is polyp when ``sigmoid(logit) >= contract.threshold`` (i.e. ``logit >= logit(threshold)``).
Dice and IoU are per-image means; an image where both masks are empty scores 1.

With ground truth (``--eval-data``, or the held-out part of a ``--data`` split or a ``--mix``) the gate compares
INT8 Dice with FP32 Dice against the truth, on the frames that show a polyp. Without it the FP32 masks are the
reference: FP32 scores 1 by definition and the "Dice drop" is ``1 - Dice(INT8, FP32)``, a stricter measure.
Polyp-free evaluation frames (an empty truth: a mix's polyp-free part) give each model's false-alarm rate -- the
share of them with a reported region at the contract's operating point (:mod:`polyp_live.train.decision`) --
and the gate also bounds how much INT8 raises it over FP32.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polyp_live.engines.onnx_format import INPUT_NAME
from polyp_live.engines.onnxruntime_backend import ort_session
from polyp_live.train.contract import ModelContract

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ModelRow:
    """One model's scores on the evaluation frames."""

    name: str  # "fp32", "int8-cpu", "int8-tensorrt"
    path: str
    latency_ms: float
    dice_vs_fp32: float
    iou_vs_fp32: float
    agreement: float  # fraction of pixels on the same side of the threshold as FP32
    dice_gt: float | None = None
    iou_gt: float | None = None
    is_output: bool = False
    false_alarm_rate: float | None = None  # polyp-free evaluation frames with a reported region (None: none)


@dataclass(frozen=True)
class GateResult:
    max_dice_drop: float
    dice_drop: float
    basis: str  # "ground truth" | "FP32 masks"
    passed: bool
    worst_layers: tuple[str, ...] = ()
    max_false_alarm_rise: float = 0.01
    false_alarm_rise: float = 0.0  # INT8's false-alarm rate minus FP32's (0 without polyp-free frames)


@dataclass(frozen=True)
class ModelInfo:
    checkpoint: str
    contract: ModelContract

    @property
    def title(self) -> str:
        h, w = self.contract.input_size
        return f"PEFNet-{self.contract.variant} {h}x{w}"


@dataclass(frozen=True)
class CalibrationInfo:
    """How the ranges were obtained."""

    method: str
    samples: int
    source: str
    note: str
    cache: str
    cache_hit: bool
    seconds: float  # the calibration pass (0 on a cache hit)
    data_fingerprint: str

    @property
    def ranges_from(self) -> str:
        return f"cache {self.cache} (no calibration pass)" if self.cache_hit else f"computed in {self.seconds:.1f} s"


@dataclass(frozen=True)
class QuantizationInfo:
    """What was written and what was quantized in it."""

    out: str
    target: str
    target_description: str
    quantized_ops: dict[str, int]
    qdq_nodes: int
    keep_float: tuple[str, ...]
    excluded_nodes: tuple[str, ...]


@dataclass(frozen=True)
class EvaluationInfo:
    """The frames and settings the rows were measured with."""

    images: int
    data: str
    ground_truth: bool
    threshold: float
    threads: int
    latency_runs: int

    @property
    def reference(self) -> str:
        return "ground-truth masks" if self.ground_truth else "FP32 masks"


@dataclass(frozen=True)
class CalibrationReport:
    """Everything ``polyp-calibrate`` reports, JSON-serialisable through :meth:`to_dict`."""

    model: ModelInfo
    calibration: CalibrationInfo
    quantization: QuantizationInfo
    evaluation: EvaluationInfo
    rows: tuple[ModelRow, ...]
    gate: GateResult
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"]["contract"] = self.model.contract.to_dict()
        data["calibration"]["ranges_from"] = self.calibration.ranges_from
        data["evaluation"]["reference"] = self.evaluation.reference
        return data


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two boolean masks (both empty: 1, 1)."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    inter = float(np.logical_and(pred, truth).sum())
    total = float(pred.sum() + truth.sum())
    union = total - inter
    if total == 0:
        return 1.0, 1.0
    return 2.0 * inter / total, inter / union


def mean_scores(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> tuple[float, float]:
    scores = [dice_iou(p, t) for p, t in zip(preds, truths, strict=True)]
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


def logit_threshold(contract: ModelContract) -> float:
    t = contract.threshold
    return math.log(t / (1.0 - t))


def run_logits(session: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Batch-1 inference of each ``(1, 3, h, w)`` input -> logits ``(h, w)``."""
    return [np.asarray(session.run(None, {INPUT_NAME: x})[0], dtype=np.float32)[0, 0] for x in inputs]


def interleaved_latency_ms(sessions: Sequence[Any], sample: np.ndarray, runs: int, warmup: int = 2) -> list[float]:
    """Median batch-1 latency of each session, timed round-robin so that load from other processes on a
    shared machine falls on every model alike."""
    for session in sessions:
        for _ in range(warmup):
            session.run(None, {INPUT_NAME: sample})
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(max(1, runs)):
        for index, session in enumerate(sessions):
            start = time.perf_counter()
            session.run(None, {INPUT_NAME: sample})
            times[index].append(time.perf_counter() - start)
    return [float(np.median(t) * 1000.0) for t in times]


def score_models(
    models: Sequence[tuple[str, Path, bool]],
    inputs: Sequence[np.ndarray],
    truths: Sequence[np.ndarray] | None,
    contract: ModelContract,
    *,
    threads: int,
    latency_runs: int,
) -> list[ModelRow]:
    """Score ``(name, path, is_output)`` models; the first one is the FP32 reference."""
    from polyp_live.train.decision import OperatingPoint, decide
    from polyp_live.train.preprocess import sigmoid

    cut = logit_threshold(contract)
    point = OperatingPoint.of(contract)
    sessions = [ort_session(path, threads) for _, path, _ in models]
    all_logits = [run_logits(session, inputs) for session in sessions]
    masks = [[logits >= cut for logits in model_logits] for model_logits in all_logits]
    latencies = interleaved_latency_ms(sessions, inputs[0], latency_runs)
    del sessions
    polyp = [i for i in range(len(inputs)) if truths is None or truths[i].any()]
    free = [i for i in range(len(inputs)) if truths is not None and not truths[i].any()]
    rows: list[ModelRow] = []
    for (name, path, is_output), mask, logits, latency in zip(models, masks, all_logits, latencies, strict=True):
        dice_ref, iou_ref = mean_scores(mask, masks[0])
        agreement = float(np.mean([(m == r).mean() for m, r in zip(mask, masks[0], strict=True)]))
        dice_gt = iou_gt = alarms = None
        if truths is not None and polyp:
            dice_gt, iou_gt = mean_scores([mask[i] for i in polyp], [truths[i] for i in polyp])
        if free:
            alarms = float(np.mean([decide(sigmoid(logits[i]), point).polyp for i in free]))
        rows.append(ModelRow(name, str(path), latency, dice_ref, iou_ref, agreement, dice_gt, iou_gt, is_output,
                             alarms))
        logger.info("%s: %.2f ms, agreement with FP32 %.4f", name, latency, agreement)
    return rows


def gate(rows: Sequence[ModelRow], max_drop: float, max_false_alarm_rise: float = 0.01) -> GateResult:
    """Compare the output INT8 row with FP32 (first row): Dice, and false alarms on polyp-free frames."""
    fp32 = rows[0]
    out = next(r for r in rows if r.is_output)
    if fp32.dice_gt is not None and out.dice_gt is not None:
        drop, basis = fp32.dice_gt - out.dice_gt, "ground truth"
    else:
        drop, basis = 1.0 - out.dice_vs_fp32, "FP32 masks"
    rise = 0.0
    if fp32.false_alarm_rate is not None and out.false_alarm_rate is not None:
        rise = out.false_alarm_rate - fp32.false_alarm_rate
    passed = drop <= max_drop and rise <= max_false_alarm_rise + 1e-12
    return GateResult(max_drop, float(drop), basis, bool(passed), (), max_false_alarm_rise, float(rise))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def to_markdown(report: CalibrationReport) -> str:
    """The report as a Markdown document (also what ``polyp-calibrate`` prints)."""
    cal, quant, ev = report.calibration, report.quantization, report.evaluation
    fp32_ms = report.rows[0].latency_ms
    ops = ", ".join(f"{k} {v}" for k, v in quant.quantized_ops.items()) or "none"
    lines = [
        f"# INT8 calibration report: {report.model.title}",
        "",
        f"- calibration: {cal.method} on {cal.samples} frames from {cal.source} ({cal.note}); ranges {cal.ranges_from}",
        f"- output: `{quant.out}` for target **{quant.target}** ({quant.target_description})",
        f"- quantized nodes: {ops}; {quant.qdq_nodes} Q/DQ nodes",
        f"- kept in float: {', '.join(quant.excluded_nodes) or 'nothing'}",
        f"- evaluation: {ev.images} frames, {ev.data}; reference {ev.reference}; "
        f"latency: ONNX Runtime CPU, batch 1, {ev.threads} threads, median of {ev.latency_runs} interleaved runs",
        "",
        "| model | Dice (GT) | IoU (GT) | false alarms | Dice vs FP32 | IoU vs FP32 | pixel agreement | latency ms | "
        "speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        name = f"**{row.name}** (output)" if row.is_output else row.name
        speed = fp32_ms / row.latency_ms if row.latency_ms > 0 else float("nan")
        alarms = "-" if row.false_alarm_rate is None else f"{100 * row.false_alarm_rate:.1f}%"
        lines.append(
            f"| {name} | {_fmt(row.dice_gt)} | {_fmt(row.iou_gt)} | {alarms} | {_fmt(row.dice_vs_fp32)} | "
            f"{_fmt(row.iou_vs_fp32)} | {100 * row.agreement:.2f}% | {row.latency_ms:.1f} | {speed:.2f}x |"
        )
    g = report.gate
    verdict = "PASSED" if g.passed else "FAILED"
    lines += ["", f"Accuracy gate {verdict}: Dice drop {g.dice_drop:.4f} vs allowed {g.max_dice_drop:.4f} ({g.basis}); "
              f"false alarms rise {g.false_alarm_rise:+.4f} vs allowed {g.max_false_alarm_rise:.4f} (share of the "
              "polyp-free evaluation frames)."]
    if g.worst_layers:
        lines.append(f"Layers adding the most INT8 error: {'; '.join(g.worst_layers)}.")
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def write_report(report: CalibrationReport, json_path: Path | None, md_path: Path | None) -> None:
    if json_path is not None:
        _write(Path(json_path), json.dumps(report.to_dict(), indent=1) + "\n")
    if md_path is not None:
        _write(Path(md_path), to_markdown(report))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    logger.info("wrote %s", path)
