"""GPU check of the torch backend (and TensorRT when asked): parity with CPU FP32 and CUDA-event latency.

Run on a CUDA machine (no TensorRT, av or PyQt6 needed)::

    python -m polyp_live.engines.gpu_check --checkpoint default --size 352 --out gpu_check.json
    python -m polyp_live.engines.gpu_check --checkpoint random:atto --variants fp32,fp16,fp16-graphs,fp16-compile \
        --out x.json

``--checkpoint random:VARIANT`` makes a seeded random-weight checkpoint (head bias set so half the
pixels are polyp, which makes mask agreement a strict test). Each variant is opened through
:func:`polyp_live.engines.registry.open_engine`; its masks are compared with PyTorch FP32 on the CPU on the
same frames (GPU preprocessing through ``prepare`` and, separately, the CPU-preprocessed batch),
and latency is measured with CUDA events (host->device, inference, device->host). A failing
variant is recorded in the JSON and does not stop the others. Exit code 1 if any variant failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from polyp_live.engines.parity import PARITY_THRESHOLDS, compare_logits, parity_frames, torch_reference_logits
from polyp_live.engines.registry import open_engine
from polyp_live.train.preprocess import preprocess_batch

logger = logging.getLogger("polyp_live.engines.gpu_check")

VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"backend": "torch", "precision": "fp32"},
    "fp16": {"backend": "torch", "precision": "fp16"},
    "fp16-graphs": {"backend": "torch", "precision": "fp16", "cuda_graphs": True},
    "fp16-compile": {"backend": "torch", "precision": "fp16", "compile": "max-autotune-no-cudagraphs"},
    "fp16-compile-ro": {"backend": "torch", "precision": "fp16", "compile": "reduce-overhead"},
    "tensorrt-fp16": {"backend": "tensorrt", "precision": "fp16"},
}
DEFAULT_VARIANTS = "fp32,fp16,fp16-graphs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m polyp_live.engines.gpu_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default", help="checkpoint path, bundled name, or random:VARIANT")
    parser.add_argument("--size", type=int, help="input size (default: the checkpoint's)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--batches", default="1,4", help="batch sizes to time (1,4)")
    parser.add_argument("--iterations", type=int, default=100, help="timed iterations per batch size")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls before timing")
    parser.add_argument("--frames", type=int, default=8, help="parity frames (real data when present)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run of fp32")
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    return parser


def prepare_checkpoint(spec: str, size: int | None, workdir: Path) -> Path:
    """A checkpoint at the requested size: ``random:VARIANT`` is made here; others are re-saved if resized."""
    import torch

    from polyp_live.train.checkpoint import load_checkpoint, save_checkpoint
    from polyp_live.train.contract import ModelContract
    from polyp_live.train.variants import create_model
    from polyp_live.train.zoo import resolve_checkpoint

    if spec.startswith("random:"):
        torch.manual_seed(0)
        model = create_model(spec.partition(":")[2]).eval()
        contract = ModelContract(spec.partition(":")[2], (size or 352, size or 352))
        batch = preprocess_batch(parity_frames(2)[0], contract)
        with torch.no_grad():
            model.head.bias -= float(np.median(torch_reference_logits(model, batch)))
        return save_checkpoint(workdir / "random", model, contract)
    path = resolve_checkpoint(spec)
    model, contract, _ = load_checkpoint(path)
    if size is None or contract.input_size == (size, size):
        return path
    return save_checkpoint(workdir / f"resized{size}", model, contract.with_size(size))


def time_calls(fn: Any, iterations: int, device: str, warmup: int = 10) -> dict[str, float]:
    """Median / p90 / mean milliseconds of ``fn()`` after ``warmup`` calls: CUDA events on a GPU,
    ``perf_counter`` on the CPU (``--device cpu`` is a dry run of this script)."""
    for _ in range(warmup):
        fn()
    times = [cuda_event_ms(fn) if device.startswith("cuda") else _wall_ms(fn) for _ in range(iterations)]
    values = np.asarray(times)
    return {"median_ms": float(np.median(values)), "p90_ms": float(np.percentile(values, 90)),
            "mean_ms": float(values.mean())}


def cuda_event_ms(fn: Any) -> float:
    """Milliseconds of ``fn()`` on the current CUDA stream, timed with CUDA events."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end))


def _wall_ms(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def run_variant(name: str, checkpoint: Path, frames: list[np.ndarray], reference: np.ndarray,
                batches: list[int], iterations: int, workdir: Path, device: str = "cuda",
                warmup: int = 10) -> dict[str, Any]:
    options = dict(VARIANTS[name])
    backend = options.pop("backend")
    source = _tensorrt_engine(checkpoint, workdir, max(batches)) if backend == "tensorrt" else checkpoint
    start = time.perf_counter()
    engine = open_engine(source, backend=backend, device=device, batch=max(batches), **options)
    result: dict[str, Any] = {"describe": engine.describe(), "load_s": round(time.perf_counter() - start, 2)}
    threshold = engine.contract.threshold
    gpu_logits = engine.infer_frames(frames)
    cpu_logits = np.concatenate([engine.infer(preprocess_batch(frames[i : i + 1], engine.contract))
                                 for i in range(len(frames))])
    min_agreement, max_rel_l2 = PARITY_THRESHOLDS[engine.info.precision]
    for label, logits in (("gpu_preprocess", gpu_logits), ("cpu_preprocess", cpu_logits)):
        rel_l2, agreement = compare_logits(reference, logits, threshold)
        result[f"parity_{label}"] = {"agreement": agreement, "rel_l2": rel_l2,
                                     "passed": agreement >= min_agreement and rel_l2 <= max_rel_l2}
    result["latency"] = {}
    for batch in batches:
        chunk = [frames[i % len(frames)] for i in range(batch)]
        prepared = engine.prepare(chunk)
        result["latency"][f"b{batch}_infer"] = time_calls(
            lambda p=prepared: engine.infer(p), iterations, device, warmup
        )
        result["latency"][f"b{batch}_prepare_infer"] = time_calls(
            lambda c=chunk: engine.infer(engine.prepare(c)), iterations, device, warmup
        )
    engine.close()
    result["passed"] = all(result[f"parity_{k}"]["passed"] for k in ("gpu_preprocess", "cpu_preprocess"))
    return result


def _tensorrt_engine(checkpoint: Path, workdir: Path, max_batch: int) -> Path:
    from polyp_live.engines.onnx_export import export_onnx
    from polyp_live.engines.tensorrt_build import build_engine

    dynamic = (1, 1, max_batch) if max_batch > 1 else None
    onnx_path = export_onnx(checkpoint, workdir / "model16.onnx", precision="fp16", dynamic_batch=dynamic).path
    return build_engine(onnx_path, workdir / "model16.engine", workspace_mb=2048, source=str(checkpoint)).path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        logger.error("no CUDA GPU visible to torch; run this on a GPU machine (or --device cpu for a dry run)")
        return 2
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        logger.error("unknown variants %s; valid: %s", unknown, ", ".join(VARIANTS))
        return 2
    batches = [int(b) for b in args.batches.split(",")]
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "none",
        "device": args.device, "torch": torch.__version__, "checkpoint": args.checkpoint,
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        workdir = Path(tmp)
        checkpoint = prepare_checkpoint(args.checkpoint, args.size, workdir)
        frames, source = parity_frames(args.frames)
        from polyp_live.train.checkpoint import load_checkpoint

        model, contract, _ = load_checkpoint(checkpoint)
        reference = torch_reference_logits(model, preprocess_batch(frames, contract))
        report.update({"size": list(contract.input_size), "frames": f"{len(frames)} {source}"})
        for name in names:
            logger.info("variant %s", name)
            try:
                report["variants"][name] = run_variant(name, checkpoint, frames, reference, batches,
                                                       args.iterations, workdir, args.device, args.warmup)
            except Exception as exc:  # record and go on: one broken variant must not hide the others
                logger.exception("variant %s failed", name)
                report["variants"][name] = {"error": f"{type(exc).__name__}: {exc}", "passed": False}
            _write(args.out, report)
    ok = all(v.get("passed") for v in report["variants"].values())
    logger.info("wrote %s (%s)", args.out, "all passed" if ok else "FAILURES")
    return 0 if ok else 1


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
