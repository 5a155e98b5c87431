"""Model-only latency and throughput: backend x precision x mode x batch x model x input size.

    python benchmarks/bench_engines.py                                   # CPU defaults, a few minutes
    python benchmarks/bench_engines.py --variants small --sizes 352 --precisions fp16 --modes eager,graphs
    python benchmarks/bench_engines.py --checkpoint default --backends onnxruntime --precisions fp32,int8

Each configuration is opened through :func:`polyp_live.engines.registry.open_engine`, warmed up, then timed for
``--seconds`` (at least ``--min-runs`` calls) on inputs that rotate between several different batches
of real Kvasir-SEG frames (synthetic textured frames when the data is absent), already prepared with
``engine.prepare`` (model-only: on a GPU the input is already on the device; the logits are copied
back to the host, as the pipeline needs them). Time: ``perf_counter`` on the CPU, CUDA events on the
GPU. INT8 is a Q/DQ model from :mod:`calibration` (ranges from real frames, cached). Combinations
that cannot run here (no GPU, TensorRT missing, torch has no INT8) are listed with the reason.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_engines.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks import common

logger = logging.getLogger("benchmarks.bench_engines")

SCRIPT = "bench_engines"
MODES: dict[str, dict[str, Any]] = {  # engine options per timing mode (torch only beyond "eager")
    "eager": {},
    "graphs": {"cuda_graphs": True},
    "compile": {"compile": "max-autotune-no-cudagraphs"},
    "compile-default": {"compile": "default"},
}
INPUT_ROTATION = 4  # distinct batches the timed calls rotate through
CALIBRATION_FRAMES = 16
INT8_METHOD = "minmax"  # the range method does not change speed; minmax calibrates fastest


# ----------------------------------------------------------------------------- model files per backend


def int8_onnx(checkpoint: Path, target: str = "cpu", frames: Sequence[np.ndarray] | None = None) -> tuple[Path, str]:
    """A Q/DQ INT8 ONNX (dynamic batch 1..16) of ``checkpoint`` for ``target``, made once and cached."""
    import onnx

    from polyp_live.calibration.layers import DEFAULT_KEEP_FLOAT, parse_keep_float, select_keep_float
    from polyp_live.calibration.quantize import compute_ranges, prepare_model, quantize_model
    from polyp_live.engines.onnx_export import export_onnx
    from polyp_live.engines.onnx_format import read_onnx_props
    from polyp_live.train.checkpoint import read_checkpoint
    from polyp_live.train.preprocess import resize_frame

    info = read_checkpoint(checkpoint)
    h, w = info.contract.input_size
    out = common.bench_cache_dir() / f"{info.weights_sha256[:16]}-{h}x{w}-int8-{target}.onnx"
    if out.is_file():
        return out, f"cached {out.name}"
    if frames is None:
        frames, origin = common.real_frames(CALIBRATION_FRAMES, seed=1)
    else:
        origin = f"{len(frames)} given frames"
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        work = Path(tmp)
        fp32 = export_onnx(checkpoint, work / "fp32.onnx", dynamic_batch=(1, 1, 16), verify=False).path
        prepared = prepare_model(fp32, work / "prepared.onnx")
        keep = select_keep_float(onnx.load(str(prepared), load_external_data=False),
                                 parse_keep_float(DEFAULT_KEEP_FLOAT))
        exclude = tuple(dict.fromkeys(name for names in keep.values() for name in names))
        pixels = [resize_frame(frame, info.contract) for frame in frames]  # at the input size, as calibration does
        ranges = compute_ranges(prepared, pixels, info.contract, INT8_METHOD, progress=False)
        quantize_model(prepared, out, ranges, target, exclude=exclude, metadata=read_onnx_props(fp32))
    return out, f"calibrated ({INT8_METHOD}, {origin}, keep-float {DEFAULT_KEEP_FLOAT})"


def tensorrt_plan(checkpoint: Path, precision: str, max_batch: int) -> tuple[Path, str]:
    """A TensorRT plan built (once, cached) from the checkpoint's ONNX of ``precision``."""
    from polyp_live.engines.onnx_export import export_onnx
    from polyp_live.engines.tensorrt_build import build_engine
    from polyp_live.train.checkpoint import read_checkpoint

    info = read_checkpoint(checkpoint)
    h, w = info.contract.input_size
    stem = common.bench_cache_dir() / f"{info.weights_sha256[:16]}-{h}x{w}-{precision}-b{max_batch}"
    plan = stem.with_suffix(".engine")
    if plan.is_file():
        return plan, f"cached {plan.name}"
    dynamic = (1, 1, max_batch) if max_batch > 1 else None
    if precision == "int8":
        onnx_path, _ = int8_onnx(checkpoint, "tensorrt")  # note: a static/dynamic 1..16 Q/DQ model
    else:
        onnx_path = export_onnx(checkpoint, stem.with_suffix(".onnx"), precision=precision,
                                dynamic_batch=dynamic, verify=False).path
    build_engine(onnx_path, plan, workspace_mb=2048, source=str(checkpoint), progress=False)
    return plan, f"built {plan.name}"


def engine_source(checkpoint: Path, backend: str, precision: str, max_batch: int) -> tuple[Path, str]:
    """The file ``open_engine`` gets for this backend/precision, and how it was made."""
    if backend == "onnxruntime" and precision == "int8":
        return int8_onnx(checkpoint, "cpu")
    if backend == "tensorrt":
        return tensorrt_plan(checkpoint, precision, max_batch)
    return checkpoint, "checkpoint" if backend == "torch" else f"cached ONNX export ({precision})"


def precheck(backend: str, precision: str, mode: str, device: str, available: dict[str, str | None]) -> str | None:
    """Why this combination cannot run, known before opening anything (None: try it)."""
    if available.get(backend):
        return available[backend]
    if backend == "torch" and precision == "int8":
        return "the torch backend has no INT8 path (INT8 runs on ONNX Runtime or TensorRT from a Q/DQ ONNX)"
    if mode != "eager" and backend != "torch":
        return f"mode {mode} is a torch option ({backend} is timed in its own default mode)"
    return None


# ----------------------------------------------------------------------------- one configuration


def _cuda_reset(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _cuda_peak_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def bench_case(
    checkpoint: Path, *, backend: str, precision: str, mode: str = "eager", batches: Sequence[int] = (1,),
    seconds: float = 2.0, device: str = "auto", threads: int | None = None,
    frames: Sequence[np.ndarray] | None = None, warmup: int = 3, min_runs: int = 5,
    available: dict[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """Rows (one per batch size) for one backend/precision/mode of one checkpoint; never raises for a
    combination that cannot run (the row says why)."""
    from polyp_live.engines.registry import available_backends, open_engine
    from polyp_live.train.checkpoint import read_checkpoint
    from polyp_live.train.errors import PolypLiveError

    contract = read_checkpoint(checkpoint).contract
    base = {"variant": contract.variant, "size": f"{contract.input_size[0]}x{contract.input_size[1]}",
            "backend": backend, "precision": precision, "mode": mode, "requested_device": device}
    available = available if available is not None else available_backends(device)
    reason = precheck(backend, precision, mode, device, available)
    if reason:
        return [{**base, "batch": b, "status": "unavailable", "reason": reason} for b in batches]
    frames = frames if frames is not None else common.real_frames(INPUT_ROTATION * max(batches))[0]
    gc.collect()
    start = time.perf_counter()
    try:
        source, made = engine_source(checkpoint, backend, precision, max(batches))
        _cuda_reset(device)
        engine = open_engine(source, backend=backend, device=device, precision=precision, batch=max(batches),
                             threads=threads, **MODES[mode])
    except PolypLiveError as exc:
        return [{**base, "batch": b, "status": "unavailable", "reason": str(exc)} for b in batches]
    except Exception as exc:  # a runtime failure of one combination must not stop the others
        logger.exception("opening %s %s %s failed", backend, precision, mode)
        return [{**base, "batch": b, "status": "error", "reason": f"{type(exc).__name__}: {exc}"} for b in batches]
    load_s = time.perf_counter() - start
    rows = []
    try:
        for batch in batches:
            rows.append({**base, **time_batch(engine, batch, frames, seconds, warmup, min_runs),
                         "load_s": round(load_s, 2), "model_file": made, "describe": engine.describe()})
    finally:
        engine.close()
        del engine
        gc.collect()
    return rows


def time_batch(engine: Any, batch: int, frames: Sequence[np.ndarray], seconds: float, warmup: int,
                min_runs: int) -> dict[str, Any]:
    if batch > engine.info.max_batch:
        return {"batch": batch, "status": "unavailable",
                "reason": f"engine takes at most {engine.info.max_batch} frames per call"}
    device = engine.info.device
    chunks = [[frames[(j * batch + i) % len(frames)] for i in range(batch)] for j in range(INPUT_ROTATION)]
    inputs = [engine.prepare(chunk) for chunk in chunks]
    _cuda_reset(device)
    try:
        times = common.time_rotating(engine.infer, inputs, seconds=seconds, warmup=warmup, min_runs=min_runs,
                                     cuda=device.startswith("cuda"))
    except Exception as exc:
        logger.exception("timing batch %d failed", batch)
        return {"batch": batch, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    stats = common.percentiles(times)
    median = stats["p50_ms"]
    return {
        "batch": batch, "status": "ok", "device": device, "runs": stats["count"],
        "median_ms": median, "p95_ms": stats["p95_ms"], "mean_ms": stats["mean_ms"],
        "ms_per_frame": round(median / batch, 4), "fps": round(1000.0 * batch / median, 2),
        "rss_mb": round(common.rss_mb(), 1), "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "cuda_max_alloc_mb": _cuda_peak_mb(device), "timer": "cuda-events" if device.startswith("cuda") else "wall",
    }


# ----------------------------------------------------------------------------- report


HEADERS = ("model", "backend", "precision", "mode", "batch", "status", "median ms", "p95 ms", "ms/frame", "fps",
           "RSS MB", "CUDA MB", "note")


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        ok = r.get("status") == "ok"
        out.append([f"{r['variant']} {r['size']}", r["backend"], r["precision"], r["mode"], r["batch"], r["status"],
                    r.get("median_ms") if ok else None, r.get("p95_ms") if ok else None,
                    r.get("ms_per_frame") if ok else None, r.get("fps") if ok else None,
                    r.get("rss_mb") if ok else None, r.get("cuda_max_alloc_mb") if ok else None,
                    r.get("reason", "") if not ok else r.get("timer", "")])
    return out


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Engine benchmark ({report['machine']['tag']})", "", common.machine_line(report["machine"]), ""]
    lines += [f"Models: {'; '.join(report['models'])}. Inputs: {report['inputs']}. "
              f"{report['seconds_per_config']} s per configuration; medians/p95 per call.", ""]
    lines.append(common.markdown_table(HEADERS, table_rows(report["rows"])))
    lines += ["", f"Load average at the end: {report['machine'].get('load_average_end')}"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_engines.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint path or 'default' (else random weights per --variants)")
    parser.add_argument("--variants", default="atto,femto", help="PEFNet variants with random weights (atto,femto)")
    parser.add_argument("--sizes", default="256", help="input sizes, comma list (256)")
    parser.add_argument("--backends", default="torch,onnxruntime,tensorrt", help="backends to try (all)")
    parser.add_argument("--precisions", default="auto", help="fp32,fp16,int8 (auto: fp32,int8 on CPU, fp32,fp16 GPU)")
    parser.add_argument("--modes", default="auto", help="eager,graphs,compile (auto: eager on CPU, eager,graphs GPU)")
    parser.add_argument("--batches", default="1,4", help="batch sizes (1,4)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per configuration (2)")
    parser.add_argument("--min-runs", type=int, default=5, help="at least this many timed calls (5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing (3)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, help="CPU threads per engine (default: the backend's)")
    common.add_output_args(parser, SCRIPT)
    return parser


def resolve_axes(args: argparse.Namespace, on_gpu: bool) -> tuple[list[str], list[str]]:
    precisions = _csv(args.precisions) if args.precisions != "auto" else (
        ["fp32", "fp16"] if on_gpu else ["fp32", "int8"])
    modes = _csv(args.modes) if args.modes != "auto" else (["eager", "graphs"] if on_gpu else ["eager"])
    from polyp_live.train.errors import PolypLiveError

    bad = [p for p in precisions if p not in ("fp32", "fp16", "int8")] + [m for m in modes if m not in MODES]
    if bad:
        raise PolypLiveError(f"unknown precision/mode {bad}; precisions: fp32, fp16, int8; modes: {', '.join(MODES)}")
    return precisions, modes


def run(args: argparse.Namespace, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    from polyp_live.engines.registry import available_backends
    from polyp_live.train.devices import resolve_device

    device = resolve_device(args.device)
    on_gpu = device.startswith("cuda")
    precisions, modes = resolve_axes(args, on_gpu)
    batches = [int(b) for b in _csv(args.batches)]
    specs = [args.checkpoint] if args.checkpoint else [f"random:{v}" for v in _csv(args.variants)]
    sizes = [int(s) for s in _csv(args.sizes)] if args.sizes else [None]
    frames, origin = common.real_frames(INPUT_ROTATION * max(batches))
    available = available_backends(device)
    report: dict[str, Any] = {"kind": SCRIPT, "machine": common.machine_info(device), "device": device,
                              "inputs": f"{origin}, rotating {INPUT_ROTATION} batches",
                              "seconds_per_config": args.seconds, "available_backends": available,
                              "models": [], "rows": []}
    for spec in specs:
        for size in sizes:
            checkpoint, note = common.prepare_checkpoint(spec, size)
            report["models"].append(note)
            for backend in _csv(args.backends):
                for precision in precisions:
                    for mode in modes:
                        if mode != "eager" and backend != "torch":
                            continue  # modes are torch options; listed once per torch row instead
                        rows = bench_case(checkpoint, backend=backend, precision=precision, mode=mode,
                                          batches=batches, seconds=args.seconds, device=device,
                                          threads=args.threads, frames=frames, warmup=args.warmup,
                                          min_runs=args.min_runs, available=available)
                        for row in rows:
                            row["model"] = note
                            report["rows"].append(row)
                            if on_row:
                                on_row(row)
    report["machine"]["load_average_end"] = common.load_average()
    return report


def print_row(row: dict[str, Any]) -> None:
    if row["status"] == "ok":
        print(f"{row['variant']:>6} {row['size']:>7} {row['backend']:>11} {row['precision']:>4} {row['mode']:>7} "
              f"b{row['batch']:<3} {row['median_ms']:8.2f} ms (p95 {row['p95_ms']:.2f})  {row['fps']:8.1f} fps  "
              f"{row['ms_per_frame']:.2f} ms/frame", flush=True)
    else:
        print(f"{row['variant']:>6} {row['size']:>7} {row['backend']:>11} {row['precision']:>4} {row['mode']:>7} "
              f"b{row['batch']:<3} {row['status']}: {row.get('reason', '')}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    report = run(args, on_row=print_row)
    common.write_report(SCRIPT, args, report, to_markdown(report))
    failed = [r for r in report["rows"] if r["status"] == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
