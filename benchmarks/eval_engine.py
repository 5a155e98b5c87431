"""``polyp-eval`` through polyp-live's own engines: the accuracy of the model as a user's run computes it (ONNX
Runtime on the CPU with the bundled INT8 companion, or any backend), with every option and output of polyp-eval.

    python benchmarks/eval_engine.py --mix train/splits/generalization.json --backend onnxruntime --precision int8 \\
        --video --markdown eval-int8.md --json eval-int8.json

polyp-eval itself lives in ``polyp_live.train`` (the base package), which imports no engine; this script hands it
a runtime made with :func:`polyp_live.engines.registry.open_engine`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polyp_live.train import cli_eval
from polyp_live.train.cli_utils import run_cli


def engine_runtime(path: Path, args: argparse.Namespace) -> tuple[Any, Any, str]:
    from polyp_live.engines.registry import open_engine

    engine = open_engine(path, backend=args.backend, device=args.device, precision=args.precision)
    step = max(1, engine.info.max_batch)

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([engine.infer(batch[i : i + step]) for i in range(0, len(batch), step)])

    return predict, engine.contract, f"{engine.info.backend} {engine.info.precision}"


def build_parser() -> argparse.ArgumentParser:
    parser = cli_eval.build_parser()
    parser.prog = "python benchmarks/eval_engine.py"
    parser.add_argument("--backend", default="onnxruntime", choices=("auto", "onnxruntime", "torch", "tensorrt"),
                        help="polyp-live's runtime (default onnxruntime: the CPU default)")
    parser.add_argument("--precision", help="fp32, fp16 or int8 (default: the engine's own; the bundled model runs "
                        "its INT8 companion on the CPU)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli_eval.main(argv, runtime_factory=engine_runtime, parser=build_parser())


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="eval_engine"))
