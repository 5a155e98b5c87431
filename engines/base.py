"""The one inference interface every runtime implements.

An :class:`Engine` takes a batch of preprocessed frames (``float32`` ``(N, 3, h, w)``, see
:mod:`polyp_live.train.preprocess`) and returns logits ``float32`` ``(N, 1, h, w)`` on the host. Backends
that run on a GPU may also preprocess there: :meth:`Engine.prepare` turns RGB ``uint8`` frames into
the backend's native input (a NumPy batch by default, a CUDA tensor for GPU backends), and
:meth:`Engine.infer` accepts either form. Nothing here imports a runtime; each backend lives in
its own module and is loaded through :mod:`polyp_live.engines.registry`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyp_live.train.contract import ModelContract
from polyp_live.train.preprocess import InputPlan, preprocess_batch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is, for logs, summaries and benchmark tables."""

    backend: str  # "onnxruntime" | "torch" | "tensorrt"
    device: str  # "cpu", "cuda:0", ...
    precision: str  # "fp32" | "fp16" | "int8"
    source: str  # the file it was loaded from
    contract: ModelContract
    max_batch: int = 1  # largest batch one infer() call accepts
    preferred_batch: int = 1  # the batch size the backend is fastest per frame at
    gpu_preprocess: bool = False  # prepare() resizes and normalizes on the device
    detail: str = ""  # runtime version, providers, options

    def describe(self) -> str:
        h, w = self.contract.input_size
        text = f"{self.backend} {self.precision} on {self.device}, PEFNet-{self.contract.variant} {h}x{w}"
        return f"{text} ({self.detail})" if self.detail else text


class Engine(ABC):
    """Load once, warm up, infer batches, close. Usable as a context manager."""

    name: str = "abstract"

    def __init__(self, info: EngineInfo) -> None:
        self.info = info
        self._closed = False

    @property
    def contract(self) -> ModelContract:
        return self.info.contract

    @classmethod
    def unavailable_reason(cls, device: str = "auto") -> str | None:
        """Why this backend cannot run on ``device`` here (missing runtime, no GPU), or None if it can."""
        return None

    @classmethod
    @abstractmethod
    def load(cls, path: Path, *, device: str = "auto", **options: Any) -> Engine:
        """Open ``path`` (a file this backend reads) on ``device``."""

    @abstractmethod
    def infer(self, batch: Any) -> np.ndarray:
        """``(N, 3, h, w)`` input (NumPy ``float32`` or this backend's prepared form) -> logits ``(N, 1, h, w)``."""

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """One-line :class:`~polyp_live.engines.errors.EngineError` unless ``shape`` is ``(N, 3, h, w)`` with N in
        1..max_batch."""
        from polyp_live.engines.errors import EngineError

        expected = (3, *self.contract.input_size)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            want = "(N, {}, {}, {})".format(*expected)
            raise EngineError(f"engine input must be {want}, got {tuple(shape)}")
        if not 1 <= shape[0] <= self.info.max_batch:
            raise EngineError(f"a batch of {shape[0]} frames is outside this engine's 1..{self.info.max_batch}")

    def prepare(self, frames: Sequence[np.ndarray], plans: Sequence[InputPlan] | None = None) -> Any:
        """RGB ``uint8`` frames -> this backend's input, each through its plan (crop, resize, letterbox; default:
        :func:`polyp_live.train.preprocess.plan_frame`). CPU default:
        :func:`polyp_live.train.preprocess.preprocess_batch`."""
        return preprocess_batch(frames, self.contract, plans)

    def infer_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Convenience: prepare then infer, splitting into chunks of at most ``max_batch``."""
        outputs = []
        step = max(1, self.info.max_batch)
        for start in range(0, len(frames), step):
            outputs.append(self.infer(self.prepare(frames[start : start + step])))
        return np.concatenate(outputs, axis=0)

    def warmup(self, iterations: int = 2) -> None:
        """Run a few inferences on varied data so the first real frame is not slow."""
        h, w = self.contract.input_size
        rng = np.random.default_rng(0)
        for _ in range(iterations):
            self.infer(rng.uniform(-1.0, 1.0, size=(1, 3, h, w)).astype(np.float32))

    def describe(self) -> str:
        return self.info.describe()

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
