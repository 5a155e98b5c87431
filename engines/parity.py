"""Parity between an engine's logits and PyTorch FP32 on the same frames.

The frames are real colonoscopy images (Kvasir-SEG and CVC-ClinicDB under ``../shared/data`` or
``$POLYP_LIVE_DATA``) when present, else synthetic textured frames. Two numbers are reported:
the relative L2 error of the logits, and mask agreement (the fraction of pixels on the same side of
the contract's threshold). Export and the engines' test suite both use these thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.train.contract import ModelContract
from polyp_live.train.media_paths import shared_data_dir
from polyp_live.train.preprocess import preprocess_batch

logger = logging.getLogger(__name__)

# precision -> (minimum mask agreement, maximum relative L2 error of the logits)
PARITY_THRESHOLDS: dict[str, tuple[float, float]] = {
    "fp32": (0.999, 1e-3),
    "fp16": (0.995, 5e-2),
    "int8": (0.97, 0.25),
}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ParityReport:
    """How close an engine's logits are to PyTorch FP32 on ``frames`` frames."""

    precision: str
    frames: int
    source: str  # "kvasir-seg+cvc-clinicdb" or "synthetic"
    rel_l2: float
    agreement: float
    min_agreement: float
    max_rel_l2: float

    @property
    def passed(self) -> bool:
        return self.agreement >= self.min_agreement and self.rel_l2 <= self.max_rel_l2

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"parity {self.precision} vs PyTorch FP32 on {self.frames} {self.source} frames: "
            f"mask agreement {self.agreement * 100:.3f}% (need >= {self.min_agreement * 100:.1f}%), "
            f"logits rel-L2 {self.rel_l2:.2e} (need <= {self.max_rel_l2:.0e}): {verdict}"
        )


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def real_frame_files(count: int) -> list[Path]:
    """Up to ``count`` real frames, alternating Kvasir-SEG and CVC-ClinicDB, spread over each set."""
    data = shared_data_dir()
    kvasir = _image_files(data / "kvasir-seg" / "images")
    cvc_root = data / "cvc-clinicdb"
    cvc = [f for seq in sorted(cvc_root.glob("seq*")) for f in _image_files(seq / "images")]
    pools = [pool for pool in (kvasir, cvc) if pool]
    if not pools:
        return []
    picks: list[Path] = []
    per_pool = -(-count // len(pools))
    for pool in pools:
        stride = max(1, len(pool) // per_pool)
        picks.extend(pool[::stride][:per_pool])
    return picks[:count]


def synthetic_frames(count: int, height: int = 288, width: int = 384, seed: int = 0) -> list[np.ndarray]:
    """Reddish textured frames with a few bright blobs: smooth noise at several scales, RGB uint8."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        canvas = np.zeros((height, width, 3), dtype=np.float32)
        for scale in (4, 16, 64):
            small = rng.uniform(0, 1, size=(max(2, height // scale), max(2, width // scale), 3)).astype(np.float32)
            canvas += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * (scale / 84.0)
        for _ in range(3):
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(canvas, centre, int(rng.integers(10, 60)), (1.0, 0.8, 0.7), -1)
        canvas = cv2.GaussianBlur(canvas, (5, 5), 0) * np.array([230, 120, 100], dtype=np.float32)
        frames.append(np.clip(canvas, 0, 255).astype(np.uint8))
    return frames


def parity_frames(count: int = 4) -> tuple[list[np.ndarray], str]:
    """``count`` RGB uint8 frames and where they came from (real data when present)."""
    files = real_frame_files(count)
    frames = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if len(frames) >= count:
        return frames[:count], "kvasir-seg+cvc-clinicdb"
    logger.info("real frames not found under %s; using synthetic textured frames for parity", shared_data_dir())
    return synthetic_frames(count), "synthetic"


def compare_logits(reference: np.ndarray, candidate: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(relative L2 error, mask agreement)`` of ``candidate`` logits against ``reference`` logits."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"logits shapes differ: reference {ref.shape}, candidate {got.shape}")
    rel_l2 = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12))
    if not np.isfinite(got).all():
        rel_l2 = float("inf")
    cut = float(np.log(threshold / (1.0 - threshold)))  # sigmoid(x) >= t  <=>  x >= logit(t)
    agreement = float(np.mean((ref >= cut) == (got >= cut)))
    return rel_l2, agreement


def parity_report(
    precision: str, reference: np.ndarray, candidate: np.ndarray, contract: ModelContract, source: str
) -> ParityReport:
    min_agreement, max_rel_l2 = PARITY_THRESHOLDS[precision]
    rel_l2, agreement = compare_logits(reference, candidate, contract.threshold)
    return ParityReport(precision, int(reference.shape[0]), source, rel_l2, agreement, min_agreement, max_rel_l2)


def torch_reference_logits(model: object, batch: np.ndarray, chunk: int = 4) -> np.ndarray:
    """PyTorch FP32 logits of a preprocessed batch on the CPU (the reference of every parity check)."""
    import torch

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(batch), chunk):
            outputs.append(model(torch.from_numpy(batch[start : start + chunk])).float().numpy())  # type: ignore[operator]
    return np.concatenate(outputs, axis=0)


def run_in_batches(
    infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, sizes: Sequence[int]
) -> np.ndarray:
    """Run ``infer`` over ``batch`` in chunks whose sizes cycle through ``sizes`` (padding the last chunk)."""
    outputs, start, index = [], 0, 0
    while start < len(batch):
        size = sizes[index % len(sizes)]
        chunk = batch[start : start + size]
        real = len(chunk)
        if real < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - real, axis=0)], axis=0)
        outputs.append(infer(chunk)[:real])
        start, index = start + real, index + 1
    return np.concatenate(outputs, axis=0)


def prepared_parity_batch(contract: ModelContract, count: int = 4) -> tuple[np.ndarray, str]:
    """Preprocessed ``(count, 3, h, w)`` parity batch through the one preprocessing path."""
    frames, source = parity_frames(count)
    return preprocess_batch(frames, contract), source
