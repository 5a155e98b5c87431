"""The measurements of ``benchmarks/gpu_bench.py``, one function each: frames, FLOPs, parity, latency, preprocessing
agreement, the file-mode pipeline and the live session. Each works on the CPU too (the script's ``--dry-run``);
only the CUDA-event timer, FP16 and the CUDA graphs need a GPU.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections import Counter
from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

logger = logging.getLogger("benchmarks.gpu_measure")

PEAK_TFLOPS = 790.0  # H200 dense BF16/FP16 tensor-core peak as the issue quotes it (~790 TFLOP/s)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# ----------------------------------------------------------------------------- frames


def _images(folder: Path, limit: int) -> list[Path]:
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and "masks" not in p.parts)
    stride = max(1, len(files) // max(1, limit))
    return files[::stride][:limit]


def data_frames(count: int, data: Path | None = None) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` real RGB frames from the data folder (``$POLYP_LIVE_DATA``, e.g. the carried ``.gpu/data``):
    Kvasir-SEG, CVC-ClinicDB and the 1080p HoloHub frames, spread over each; else the bundled 1080p clip's frames
    (and synthetic ones to fill up). The description says which."""
    import cv2

    root = data or common.shared_data_dir()
    pools = [("kvasir-seg", _images(root / "kvasir-seg" / "images", count)),
             ("cvc-clinicdb", _images(root / "cvc-clinicdb", count)),
             ("holohub-1080p", _images(root / "holohub-1080p", count))]
    pools = [(name, files) for name, files in pools if files]
    per_pool = -(-count // max(1, len(pools)))
    loaded = []
    for name, files in pools:
        got = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files[:per_pool]]
        loaded.append((name, [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) for bgr in got if bgr is not None]))
    tagged = [pair for group in zip_longest(*([(name, f) for f in got] for name, got in loaded)) for pair in group
              if pair is not None][:count]  # interleaved: any first N frames mix the sets
    frames = [f for _, f in tagged]
    used = [f"{n} {name}" for name, n in Counter(name for name, _ in tagged).items()]
    if len(frames) < count and common.SAMPLE_CLIP.is_file():
        clip, _ = common.decode_opencv(common.SAMPLE_CLIP, count - len(frames))
        frames += clip
        used.append(f"{len(clip)} frames of {common.SAMPLE_CLIP.name}")
    if len(frames) < count:
        frames += common.synthetic_frames(count - len(frames))
        used.append("synthetic frames")
    return frames[:count], f"{', '.join(used)} (data folder {root})"


# ----------------------------------------------------------------------------- models


def prepare_model(spec: str, size: int, workdir: Path) -> tuple[Path, str]:
    """``random:VARIANT`` at ``size`` with its head bias balanced on real frames (half the pixels polyp: mask
    agreement is then a strict test), or ``default`` re-saved at ``size`` when that differs from its own."""
    if spec.startswith("random:"):
        from polyp_live.engines.gpu_check import prepare_checkpoint

        folder = workdir / f"{spec.partition(':')[2]}-{size}"
        folder.mkdir(parents=True, exist_ok=True)
        variant = spec.partition(":")[2]
        return prepare_checkpoint(spec, size, folder), f"random weights (balanced), PEFNet-{variant} {size}x{size}"
    return common.prepare_checkpoint(spec, size, workdir)


def count_flops(checkpoint: Path) -> float:
    """FLOPs of one frame (batch 1) as ``torch.utils.flop_counter.FlopCounterMode`` counts them (2 per
    multiply-add of convolutions and matrix products), once per model, on the meta device (shapes only)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from polyp_live.train.checkpoint import read_checkpoint
    from polyp_live.train.variants import create_model

    contract = read_checkpoint(checkpoint).contract
    with torch.device("meta"):
        model = create_model(contract.variant).eval()
        x = torch.zeros(1, 3, *contract.input_size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return float(counter.get_total_flops())


def reference_logits(checkpoint: Path, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(CPU-preprocessed batch, eager PyTorch FP32 logits on the CPU): the reference of every parity check."""
    from polyp_live.engines.parity import torch_reference_logits
    from polyp_live.train.checkpoint import load_checkpoint
    from polyp_live.train.preprocess import preprocess_batch

    model, contract, _ = load_checkpoint(checkpoint)
    batch = preprocess_batch(list(frames), contract)
    return batch, torch_reference_logits(model, batch)


def parity(engine: Any, frames: Sequence[np.ndarray], batch: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Mask agreement and logits rel-L2 of ``engine`` vs eager FP32, one frame a call: on the CPU-preprocessed
    inputs (the model alone) and through ``engine.prepare`` (GPU preprocessing on a CUDA engine)."""
    from polyp_live.engines.parity import compare_logits

    threshold = engine.contract.threshold
    model_only = np.concatenate([engine.infer(batch[i : i + 1]) for i in range(len(batch))])
    prepared = np.concatenate([engine.infer(engine.prepare([f])) for f in frames])
    out: dict[str, Any] = {"frames": len(frames)}
    for label, logits in (("cpu_preprocess", model_only), ("engine_prepare", prepared)):
        rel_l2, agreement = compare_logits(reference, logits, threshold)
        out[label] = {"agreement": round(agreement, 6), "rel_l2": float(f"{rel_l2:.3e}")}
    return out


# ----------------------------------------------------------------------------- latency


def time_engine(engine: Any, batch: int, frames: Sequence[np.ndarray], seconds: float,
                flops_per_frame: float | None, warmup: int = 3) -> dict[str, Any]:
    """One row: :func:`benchmarks.bench_engines.time_batch` (CUDA-event medians on a GPU) plus achieved TFLOP/s
    and its share of :data:`PEAK_TFLOPS`."""
    from benchmarks.bench_engines import time_batch

    row = time_batch(engine, batch, frames, seconds, warmup, 5)
    if row.get("status") == "ok" and flops_per_frame:
        tflops = flops_per_frame * batch / (row["median_ms"] / 1000.0) / 1e12
        row.update({"gflop_per_frame": _sig(flops_per_frame / 1e9), "tflops": _sig(tflops),
                    "peak_fraction": _sig(tflops / PEAK_TFLOPS)})
    return row


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


# ----------------------------------------------------------------------------- preprocessing


def preprocessing_agreement(checkpoint: Path, frames: Sequence[np.ndarray], device: str) -> dict[str, Any]:
    """GPU preprocessing (:func:`polyp_live.engines.devices.gpu_prepare`, FP32) vs the CPU's
    (:func:`polyp_live.train.preprocess. preprocess_batch`, OpenCV INTER_AREA) on real frames of their own sizes: the
    inputs' difference in grey levels, and the masks of one FP32 model on ``device`` fed either input."""
    import torch

    from polyp_live.engines.devices import gpu_prepare
    from polyp_live.engines.parity import compare_logits
    from polyp_live.train.checkpoint import load_checkpoint
    from polyp_live.train.preprocess import preprocess_batch

    model, contract, _ = load_checkpoint(checkpoint)
    model = model.to(device).eval()
    std = float(np.mean(contract.std))
    diffs, agreements, sizes = [], [], set()
    with torch.inference_mode():
        for frame in frames:
            cpu = preprocess_batch([frame], contract)
            gpu = gpu_prepare([frame], contract, torch.device(device), torch.float32).contiguous()
            diffs.append(np.abs(gpu.cpu().numpy() - cpu) * std)
            ref = model(torch.from_numpy(cpu).to(device)).float().cpu().numpy()
            got = model(gpu).float().cpu().numpy()
            agreements.append(compare_logits(ref, got, contract.threshold)[1])
            sizes.add(f"{frame.shape[1]}x{frame.shape[0]}")
    grey = np.concatenate([d.ravel() for d in diffs])
    return {"frames": len(frames), "frame_sizes": sorted(sizes), "input_size": list(contract.input_size),
            "device": device, "max_abs_grey": round(float(grey.max()), 4),
            "mean_abs_grey": round(float(grey.mean()), 5),
            "within_1_grey": round(float(np.mean(grey <= 1.0 + 1e-3)), 6),
            "mask_agreement_mean": round(float(np.mean(agreements)), 6),
            "mask_agreement_min": round(float(np.min(agreements)), 6)}


# ----------------------------------------------------------------------------- pipeline


def pipeline_file(engine: Any, note: str, clip: Path, loops: int, max_frames: int | None) -> dict[str, Any]:
    """File mode on ``clip`` (OpenCV decode into memory, JSON Lines out: no PyAV there) played ``loops`` times:
    steady-state frames/s, per-stage p50/p95 alone and in the pipeline, and the stage that bounds it."""
    from benchmarks import bench_pipeline

    argv = ["--input", str(clip), "--decoder", "opencv", "--sink", "jsonl", "--loops", str(loops)]
    argv += ["--max-frames", str(max_frames)] if max_frames else []
    result = bench_pipeline.run(bench_pipeline.build_parser().parse_args(argv), engine=engine, engine_note=note)
    (item,) = result["inputs"]
    stages = {name: {k: s.get(k) for k in ("status", "fps", "p50_ms", "p95_ms", "in_pipeline") if k in s}
              for name, s in item["stages"].items()}
    return {"engine": result["engine"], "engine_note": note, "input": clip.name, "size": item["size"],
            "frames": item["frames"], "loops": loops, "note": result.get("note", ""),
            "pipeline_fps": item["pipeline"]["fps"], "pipeline_wall_fps": item["pipeline"]["wall_fps"],
            "naive_fps": item["naive"]["fps"], "stages_alone": stages,
            "stages_in_pipeline": item["pipeline"]["stage_latency_in_pipeline"],
            "bounding_stage": item["slowest_stage"], "bounding_stage_fps": item["slowest_stage_fps"],
            "pipeline_vs_bound": item["pipeline_vs_slowest"], "verdict": result["verdict"]}


INFERENCE_QUEUES = ("frames", "batches", "inferences")  # live drops there: frames inference had no time for


def pipeline_live(engine: Any, note: str, fps: float, width: int, height: int, seconds: float,
                  warmup_s: float) -> dict[str, Any]:
    """A simulated ``width``x``height`` camera at ``fps`` in live mode: display latency and mask age p95, drops
    (camera ticks not shown, and per queue: those at the inference queues are caused by inference)."""
    from benchmarks.bench_live import live_session

    session = live_session(engine, fps=fps, width=width, height=height, seconds=seconds,
                           window_s=max(0.5, seconds / 4), warmup_s=warmup_s)
    o = session["overall"]
    drops = session["summary_drops"]
    inference_drops = sum(int(drops.get(q, 0)) for q in INFERENCE_QUEUES)
    infer_p95 = o["inference_p95_ms"]
    target = infer_p95 + 2 * o["frame_period_ms"] if math.isfinite(infer_p95) else math.nan
    mask_p95 = o["mask_age"].get("p95_ms", math.inf)
    return {"engine": engine.describe(), "engine_note": note, "camera": f"{width}x{height}@{fps:g}",
            "seconds": seconds, "shown": o["shown"], "camera_ticks": o["camera_ticks"], "drop_rate": o["drop_rate"],
            "display_p50_ms": o["display"].get("p50_ms"), "display_p95_ms": o["display"].get("p95_ms"),
            "mask_age_p50_ms": o["mask_age"].get("p50_ms"), "mask_age_p95_ms": o["mask_age"].get("p95_ms"),
            "inference_p50_ms": o["inference_p50_ms"], "inference_p95_ms": infer_p95,
            "drops": drops, "inference_drops": inference_drops,
            "mask_age_target_ms": round(target, 3) if math.isfinite(target) else None,
            "pass_mask_age": bool(mask_p95 <= target), "pass_no_inference_drops": inference_drops == 0,
            "drift": session["drift"]["any"], "error": session["error"]}


def workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="gpu-bench-")
