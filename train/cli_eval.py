"""``polyp-eval``: score a checkpoint on a folder of image/mask pairs (the paper's IoU / Dice table).

Every pair in ``--data`` is scored unless ``--split-file`` names a split (``--split`` test by default).
``--data`` may also be a folder of sequences (``seqNN/images`` + ``seqNN/masks``, as CVC-ClinicDB):
they are found automatically, or with ``--recursive``. Images go through :mod:`polyp_live.train.preprocess`;
by default the logits are resized (bilinear) to each mask's ORIGINAL resolution before thresholding
(``--resolution input`` scores at the model's input size instead, masks resized nearest). Scores are
per image, averaged over the set (:mod:`polyp_live.train.metrics`). CPU by default; ``--device cuda`` optional.

:func:`evaluate` takes any ``predict(batch) -> logits`` callable, so other runtimes can reuse it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from polyp_live.train.cli_utils import make_parser, run_cli, setup_logging
from polyp_live.train.contract import ModelContract
from polyp_live.train.data import SPLIT_NAMES, Pair, find_pairs, load_split, read_pair, select
from polyp_live.train.devices import resolve_device
from polyp_live.train.errors import DatasetError, PolypLiveError
from polyp_live.train.metrics import METRIC_NAMES, per_image_scores
from polyp_live.train.preprocess import preprocess_batch, resize_mask
from polyp_live.train.progress import progress as progress_bar

logger = logging.getLogger("polyp_live.eval")

Predict = Callable[[np.ndarray], np.ndarray]
RESOLUTIONS = ("original", "input")


@dataclass(frozen=True)
class EvalResult:
    """Mean per-image scores over ``images`` pairs, and each image's scores."""

    model: str
    images: int
    iou: float
    dice: float
    precision: float
    recall: float
    resolution: str
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(pairs: Sequence[Pair], size: int, workers: int) -> Iterator[list[tuple[Pair, np.ndarray, np.ndarray]]]:
    """Decoded ``(pair, image, mask)`` batches, read ahead by a thread pool."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        batch: list[tuple[Pair, np.ndarray, np.ndarray]] = []
        for pair, (image, mask) in zip(pairs, pool.map(read_pair, pairs), strict=True):
            batch.append((pair, image, mask))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def _score(logit: np.ndarray, mask: np.ndarray, level: float, resolution: str) -> dict[str, float]:
    if resolution == "original":
        if logit.shape != mask.shape:
            logit = cv2.resize(logit, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
    else:
        mask = resize_mask(mask, *logit.shape)
    scores = per_image_scores(torch.from_numpy(logit >= level)[None], torch.from_numpy(mask > 0)[None])
    return {k: float(v[0]) for k, v in scores.items()}


def evaluate(predict: Predict, contract: ModelContract, pairs: Sequence[Pair], *, batch_size: int = 8,
             resolution: str = "original", model_name: str = "", progress: bool = True,
             workers: int | None = None) -> EvalResult:
    """Score ``predict`` (float32 ``(N, 3, h, w)`` -> logits ``(N, 1, h, w)`` or ``(N, h, w)``) on ``pairs``."""
    if resolution not in RESOLUTIONS:
        raise PolypLiveError(f"resolution {resolution!r} is not one of {', '.join(RESOLUTIONS)}")
    if not pairs:
        raise DatasetError("nothing to evaluate: no image/mask pairs")
    level = float(np.log(contract.threshold / (1.0 - contract.threshold)))
    per_image: dict[str, dict[str, float]] = {}
    bar = progress_bar(total=len(pairs), desc="evaluate", unit="img", enabled=progress, leave=False)
    for batch in _batches(pairs, max(batch_size, 1), workers or min(8, os.cpu_count() or 1)):
        logits = np.asarray(predict(preprocess_batch([image for _, image, _ in batch], contract)), np.float32)
        logits = logits.reshape(len(batch), *contract.input_size)
        for (pair, _, mask), logit in zip(batch, logits, strict=True):
            per_image[pair.key] = _score(logit, mask, level, resolution)
        bar.update(len(batch))
    bar.close()
    means = {name: float(np.mean([s[name] for s in per_image.values()])) for name in METRIC_NAMES}
    return EvalResult(model=model_name, images=len(per_image), resolution=resolution, per_image=per_image, **means)


def torch_predictor(model: torch.nn.Module, device: torch.device) -> Predict:
    """A :data:`Predict` running a PyTorch model (float32, inference mode) on ``device``."""

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return predict


def format_table(results: Sequence[EvalResult]) -> str:
    """The paper's table form: Model | IoU | Dice, plus precision, recall and the image count."""
    lines = ["| Model | IoU | Dice | Precision | Recall | Images |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.model} | {r.iou:.4f} | {r.dice:.4f} | {r.precision:.4f} | {r.recall:.4f} | {r.images} |")
    return "\n".join(lines)


EXAMPLES = (
    "polyp-eval --data ../shared/data/cvc-clinicdb          # the bundled model on every CVC-ClinicDB sequence",
    "polyp-eval --checkpoint runs/atto --data ../shared/data/kvasir-seg "
    "--split-file train/splits/kvasir_seg_600_200.json --split val --json val.json",
    "polyp-eval --checkpoint runs/atto/last --data images_and_masks/ --size 256 --resolution input",
)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("polyp-eval", "Score a PEFNet checkpoint: per-image IoU and Dice (the paper's table form) on "
                    "image/mask pairs.", EXAMPLES)
    p.add_argument("--checkpoint", default="default",
                   help="bundled model name, polyp-train run folder (its best), or checkpoint (NAME[.safetensors])")
    p.add_argument("--data", type=Path, required=True, help="images/+masks/ folder, folder of such, or a CSV list")
    p.add_argument("--split-file", type=Path, help="score only one part of this split (see --split)")
    p.add_argument("--split", choices=SPLIT_NAMES, help="which part of --split-file (default test)")
    p.add_argument("--recursive", action="store_true", help="DATA holds sub-folders with images/ + masks/")
    p.add_argument("--size", type=int, help="input side (default: the checkpoint's contract)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--resolution", choices=RESOLUTIONS, default="original",
                   help="score at each mask's original size or at the model's input size")
    p.add_argument("--json", type=Path, help="also write the results (and per-image scores) to this JSON file")
    p.add_argument("--workers", type=int, help="decoding threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _pairs(args: argparse.Namespace) -> list[Pair]:
    pairs = find_pairs(args.data, recursive=args.recursive)
    if args.split_file is None:
        if args.split is not None:
            raise PolypLiveError("--split needs --split-file")
        return pairs
    name = args.split or "test"
    chosen = select(pairs, load_split(args.split_file), name, split_path=args.split_file)
    if not chosen:
        raise DatasetError(f"{args.split_file}: the {name} split is empty; choose another with --split")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from polyp_live.train.checkpoint import load_checkpoint
    from polyp_live.train.zoo import resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    device = torch.device(resolve_device(args.device))
    model, contract, _ = load_checkpoint(path, device=device)
    if args.size is not None:
        contract = contract.with_size(args.size)
    pairs = _pairs(args)
    name = f"PEFNet-{contract.variant} {contract.height}x{contract.width} ({Path(path).with_suffix('').name})"
    result = evaluate(torch_predictor(model, device), contract, pairs, batch_size=args.batch_size,
                      resolution=args.resolution, model_name=name, progress=not args.no_progress,
                      workers=args.workers)
    print(format_table([result]))  # noqa: T201
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"checkpoint": str(path), "data": str(args.data), "split_file": str(args.split_file or ""),
                   "split": args.split or ("test" if args.split_file else "all"), **result.to_dict()}
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return 0


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
