"""``polyp-export``: checkpoint -> ONNX (FP32 / FP16) or TensorRT engine (FP16 / INT8 from a Q/DQ ONNX).

Examples::

    polyp-export --checkpoint default --format onnx --out model.onnx
    polyp-export --checkpoint default --format onnx-fp16 --dynamic-batch 1:4:8 --out model16.onnx
    polyp-export --checkpoint default --format engine --target sm86,sm89,sm120 --out model.engine
    polyp-export --checkpoint default --format engine --precision int8 --onnx model_qdq.onnx --out int8.engine

Every ONNX export is checked (``onnx.checker``) and compared with PyTorch FP32 on real frames;
failing parity exits non-zero. Engines get a sidecar ``PLAN.json`` (``model.engine.json``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from polyp_live.engines.errors import ExportError
from polyp_live.engines.onnx_export import ExportResult, export_onnx
from polyp_live.engines.tensorrt_build import DEFAULT_WORKSPACE_MB, BuildResult, build_engine
from polyp_live.train.cli_utils import make_parser, run_cli, setup_logging

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "onnx-fp16", "engine")
EXAMPLES = (
    "polyp-export --format onnx --out model.onnx                  # the bundled model, FP32",
    "polyp-export --checkpoint runs/atto --format onnx-fp16 --dynamic-batch 1:4:8 --out model16.onnx",
    "polyp-export --format engine --target sm86,sm89,sm120 --out model.engine",
    "polyp-export --format engine --precision int8 --onnx model_qdq.onnx --out int8.engine",
)
ENGINE_PRECISIONS = ("fp16", "fp32", "int8")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("polyp-export", "Export a checkpoint to ONNX (FP32 / FP16, parity-checked against PyTorch) "
                         "or build a TensorRT engine (FP16, or INT8 from a Q/DQ ONNX).", EXAMPLES)
    parser.add_argument("--checkpoint", help="bundled model name, polyp-train run folder (its best), or checkpoint "
                        "(default: default, the bundled model; with --onnx: none needed)")
    parser.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    parser.add_argument("--out", required=True, type=Path, help="output .onnx or .engine path")
    parser.add_argument("--precision", choices=ENGINE_PRECISIONS, default="fp16", help="engine precision")
    parser.add_argument("--size", help="input size S or HxW, a multiple of 32 (default: the checkpoint's)")
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=1, help="static batch size")
    batch.add_argument("--dynamic-batch", metavar="MIN:OPT:MAX", help="dynamic batch profile, e.g. 1:4:8")
    parser.add_argument("--onnx", type=Path, help="build the engine from this ONNX (INT8: the Q/DQ ONNX)")
    parser.add_argument("--io-dtype", choices=("float32", "float16"), default="float32", help="FP16 model I/O dtype")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument("--no-verify", action="store_true", help="skip the parity check (not recommended)")
    parser.add_argument("--flavour", default="auto", choices=("auto", "tensorrt", "tensorrt_rtx"),
                        help="TensorRT package to build with (auto: the one installed)")
    parser.add_argument("--target", help="TensorRT-RTX compute capabilities, e.g. sm86,sm89,sm120")
    parser.add_argument("--workspace-mb", type=int, default=DEFAULT_WORKSPACE_MB, help="TensorRT builder workspace")
    parser.add_argument("--timing-cache", type=Path, help="TensorRT timing cache file, reused across builds")
    parser.add_argument("--no-progress", action="store_true", help="no builder progress")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def parse_size(text: str | None) -> int | tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ExportError(f"--size must be S or HxW, e.g. 352 or 288x384; got {text!r}")
    values = [int(p) for p in parts]
    return values[0] if len(values) == 1 else (values[0], values[1])


def parse_dynamic_batch(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise ExportError(f"--dynamic-batch must be MIN:OPT:MAX, e.g. 1:4:8; got {text!r}")
    low, opt, high = (int(p) for p in parts)
    return low, opt, high


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.format != "engine" and args.onnx:
        raise ExportError("--onnx is only for --format engine")
    if args.format == "engine":
        result = _engine(args)
        side = result.sidecar
        print(  # noqa: T201 - the command's summary
            f"engine: {result.path} ({result.plan_bytes / 1e6:.1f} MB, {side.precision}, {side.flavour} "
            f"{side.trt_version}, targets {', '.join(side.targets)}, built in {result.seconds:.1f} s); "
            f"sidecar: {result.sidecar_path}"
        )
        return 0
    exported = _export(args, args.out, "fp16" if args.format == "onnx-fp16" else "fp32")
    print(f"onnx: {exported.path} ({exported.path.stat().st_size / 1e6:.1f} MB, {exported.precision})")  # noqa: T201
    return 0


def _export(args: argparse.Namespace, out: Path, precision: str) -> ExportResult:
    result = export_onnx(
        args.checkpoint or "default",
        out,
        precision=precision,
        size=parse_size(args.size),
        batch=args.batch,
        dynamic_batch=parse_dynamic_batch(args.dynamic_batch),
        io_dtype=args.io_dtype if precision == "fp16" else "float32",
        opset=args.opset,
        verify=not args.no_verify,
    )
    if result.parity is not None:
        print(result.parity.summary())  # noqa: T201 - the command's summary
    return result


def _engine(args: argparse.Namespace) -> BuildResult:
    build = {
        "flavour": args.flavour,
        "targets": args.target,
        "workspace_mb": args.workspace_mb,
        "timing_cache": args.timing_cache,
        "source": args.checkpoint or "",
        "progress": not args.no_progress,
    }
    if args.onnx is not None:
        return _engine_from_onnx(args, build)
    if args.precision == "int8":
        raise ExportError("INT8 engines are built from a Q/DQ ONNX: run polyp-calibrate, then pass --onnx QDQ.onnx")
    with tempfile.TemporaryDirectory(prefix="polyp-export-") as tmp:
        onnx_path = _export(args, Path(tmp) / "model.onnx", args.precision).path
        return build_engine(onnx_path, args.out, **build)


def _engine_from_onnx(args: argparse.Namespace, build: dict) -> BuildResult:
    from polyp_live.engines.onnx_format import read_onnx_metadata

    found = read_onnx_metadata(args.onnx).precision
    if found != args.precision:
        fix = {"int8": "run polyp-calibrate to make a Q/DQ ONNX", "fp16": "export one with --format onnx-fp16"}
        raise ExportError(
            f"{args.onnx} is a {found} ONNX but --precision {args.precision} was asked for; "
            f"{fix.get(args.precision, 'export one with --format onnx')}"
        )
    return build_engine(args.onnx, args.out, **build)


def entry() -> None:
    sys.exit(run_cli(main))
