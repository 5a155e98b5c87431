"""``polyp-calibrate``: INT8 post-training quantization from real frames, with an accuracy report.

Examples::

    polyp-calibrate --checkpoint default --data ../shared/data/kvasir-seg --split train --out model.int8.onnx
    polyp-calibrate --checkpoint run/best.safetensors --video clip.mp4 --target tensorrt --out model.trt-int8.onnx
    polyp-calibrate --checkpoint default --images frames/ --eval-data ../shared/data/kvasir-seg --out m.int8.onnx

Exit codes: 0 done, 2 bad input (one error line), 3 the INT8 model failed the accuracy gate (the
model is moved to ``OUT.rejected.onnx``; the report is printed and written anyway).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polyp_live.calibration.layers import DEFAULT_KEEP_FLOAT, KEEP_FLOAT_GROUPS, parse_keep_float
from polyp_live.calibration.pipeline import (
    DEFAULT_EVAL_SAMPLES,
    DEFAULT_SAMPLES,
    MIN_SAMPLES,
    CalibrationConfig,
    SourceSpec,
    calibrate,
    enforce_gate,
)
from polyp_live.calibration.quantize import METHODS, TARGETS, default_target
from polyp_live.calibration.report import to_markdown
from polyp_live.train.cli_utils import make_parser, run_cli, setup_logging

EXAMPLES = (
    "polyp-calibrate --mix train/splits/generalization.json --out model.int8.onnx  # the bundled default's way",
    "polyp-calibrate --data ../shared/data/kvasir-seg --split train --split-file train/splits/kvasir_seg_600_200.json "
    "--out model.int8.onnx",
    "polyp-calibrate --checkpoint runs/atto --video clip.mp4 --target tensorrt --out model_qdq.onnx",
    "polyp-calibrate --images frames/ --eval-data ../shared/data/kvasir-seg --out m.int8.onnx",
)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("polyp-calibrate", "Quantize a PEFNet checkpoint to an INT8 Q/DQ ONNX model calibrated on real "
                    "frames, and report its accuracy and CPU latency against FP32. Exit 3: the INT8 model failed "
                    "the accuracy gate (moved to OUT.rejected.onnx).", EXAMPLES)
    p.add_argument("--checkpoint", default="default",
                   help="bundled model name, polyp-train run folder (its best), or checkpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of calibration images (or DIR/images)")
    src.add_argument("--video", type=Path, help="video file; frames are spread over the whole clip")
    src.add_argument("--data", type=Path, help="dataset folder (images/ + masks/); use with --split")
    src.add_argument("--mix", type=Path, help="a training mix (train/splits/generalization.json): calibrate on its "
                     "train parts, polyp-free frames included, and evaluate on its validation parts")
    p.add_argument("--split", default="train", help="part of the dataset split to calibrate on (default train)")
    p.add_argument("--split-file", type=Path, help="split JSON (default: polyp-train's 60/20/20 split, seed 0)")
    p.add_argument("--data-root", type=Path, help="--mix: the folder its data sets are under (default: "
                   "$POLYP_LIVE_DATA, else ../shared/data)")
    p.add_argument("--out", type=Path, required=True, help="INT8 ONNX file to write (.onnx)")
    p.add_argument("--method", choices=sorted(METHODS), default="entropy", help="range calibration (default entropy)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"calibration frames (default {DEFAULT_SAMPLES}; minimum {MIN_SAMPLES})")
    p.add_argument("--target", choices=sorted(TARGETS), default=None,
                   help="tensorrt: symmetric INT8 activations; cpu: UINT8 activations (default: tensorrt with a "
                   "CUDA GPU, else cpu)")
    p.add_argument("--keep-float", default=DEFAULT_KEEP_FLOAT,
                   help=f"layers kept in float: {', '.join(KEEP_FLOAT_GROUPS)}, an op type, part of a node name, "
                   f"or 'none' (default {DEFAULT_KEEP_FLOAT})")
    p.add_argument("--eval-data", type=Path, help="held-out images/ + masks/ for the accuracy report")
    p.add_argument("--eval-samples", type=int, default=DEFAULT_EVAL_SAMPLES,
                   help=f"frames in the accuracy report (default {DEFAULT_EVAL_SAMPLES})")
    p.add_argument("--max-dice-drop", type=float, default=0.01, help="largest allowed Dice loss vs FP32 (0.01)")
    p.add_argument("--max-false-alarm-rise", type=float, default=0.01,
                   help="largest allowed rise of the false-alarm rate on polyp-free evaluation frames (0.01)")
    p.add_argument("--cache", type=Path,
                   help="calibration cache JSON (default OUT.calib.json; an explicit cache of another model is "
                   "refused)")
    p.add_argument("--report-json", type=Path, help="write the report as JSON")
    p.add_argument("--report-md", type=Path, help="write the report as Markdown")
    p.add_argument("--size", type=int, help="square input size (multiple of 32; default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the frame sampling (default 0)")
    p.add_argument("--threads", type=int,
                   help="ONNX Runtime CPU threads for the latency rows (default: as polyp-live: all cores up to 4)")
    p.add_argument("--latency-runs", type=int, default=20, help="timed runs per model (median; default 20)")
    p.add_argument("--no-compare-targets", action="store_true", help="skip the other target's row in the report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def config_from_args(args: argparse.Namespace) -> CalibrationConfig:
    kind, path = next((k, getattr(args, k)) for k in ("images", "video", "data", "mix") if getattr(args, k) is not None)
    return CalibrationConfig(
        checkpoint=args.checkpoint,
        out=args.out,
        source=SourceSpec(kind, path, args.split, args.split_file, args.data_root),
        method=args.method,
        samples=args.samples,
        target=args.target or default_target(),
        keep_float=parse_keep_float(args.keep_float),
        eval_data=args.eval_data,
        eval_samples=args.eval_samples,
        max_dice_drop=args.max_dice_drop,
        max_false_alarm_rise=args.max_false_alarm_rise,
        cache=args.cache,
        size=args.size,
        seed=args.seed,
        threads=args.threads,
        latency_runs=args.latency_runs,
        compare_targets=not args.no_compare_targets,
        report_json=args.report_json,
        report_md=args.report_md,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    outcome = calibrate(config_from_args(args))
    print(to_markdown(outcome.report))  # noqa: T201 - the CLI's summary table
    enforce_gate(outcome)
    print(f"wrote {outcome.out} ({outcome.quantized.target} INT8)")  # noqa: T201
    return 0


def entry() -> None:
    sys.exit(run_cli(main, prog="polyp-calibrate"))
