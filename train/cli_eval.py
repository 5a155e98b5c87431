"""``polyp-eval``: score a checkpoint as the product decides, on several data sets in one run (one table).

Data sets: ``--data [NAME=]DIR`` (image/mask pairs: an ``images/`` + ``masks/`` folder, a folder of such sequences,
or a CSV list; ``--split-file``/``--split`` pick one part of a single ``--data``), ``--negatives [NAME=]DIR``
(polyp-free frames, no masks; a folder of sequence folders is fine), and ``--mix FILE`` (every part of a training
mix at ``--split``, default ``val``, plus its held-out data sets whole, under ``--data-root``). Every frame goes
through the model contract's geometry and operating point (:mod:`polyp_live.train.evaluation`); the scores are at
each frame's own resolution (``--resolution input``: at the model's). ``--choose-operating-point`` picks the
frame-level decision for ``--min-specificity`` on the polyp-free frames at the best sensitivity, from the mix's
parts only (never a held-out set) or, without a mix, from every set given; ``--write-operating-point`` stores it in
the checkpoint's contract. ``--markdown``, ``--json`` and ``--curve`` (PNG) write the results.

:func:`evaluate_frames` takes any ``predict(batch) -> logits`` callable, so other runtimes can reuse it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polyp_live.train.alarm import DEFAULT_OFF_FRAMES, DEFAULT_ON_FRAMES
from polyp_live.train.cli_utils import make_parser, run_cli, setup_logging
from polyp_live.train.contract import ModelContract
from polyp_live.train.data import SPLIT_NAMES, Pair, find_negatives, find_pairs, load_split, read_pair, select
from polyp_live.train.decision import OperatingPoint
from polyp_live.train.devices import resolve_device
from polyp_live.train.errors import DatasetError, PolypLiveError
from polyp_live.train.evaluation import FrameScore, natural_key, score_frame
from polyp_live.train.preprocess import plan_frame, preprocess_batch
from polyp_live.train.progress import progress as progress_bar

logger = logging.getLogger("polyp_live.eval")

Predict = Callable[[np.ndarray], np.ndarray]
RESOLUTIONS = ("original", "input")
MIX_PARTS = ("train", "val", "all")


@dataclass(frozen=True)
class EvalSet:
    """One data set to score: its frames, and whether it may choose the operating point."""

    name: str
    pairs: tuple[Pair, ...]
    chooses: bool = True


def _frames(pairs: Sequence[Pair], workers: int) -> Iterator[tuple[Pair, np.ndarray, np.ndarray]]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from ((pair, *decoded) for pair, decoded in zip(pairs, pool.map(read_pair, pairs), strict=True))


def _orders(pairs: Sequence[Pair]) -> dict[str, int]:
    by_sequence: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_sequence.setdefault(pair.sequence, []).append(pair)
    return {p.key: i for members in by_sequence.values()
            for i, p in enumerate(sorted(members, key=lambda p: natural_key(p.key)))}


def evaluate_frames(predict: Predict, contract: ModelContract, point: OperatingPoint, pairs: Sequence[Pair], *,
                    batch_size: int = 8, resolution: str = "original", progress: bool = True,
                    workers: int | None = None, desc: str = "evaluate") -> list[FrameScore]:
    """Score ``predict`` (float32 ``(N, 3, h, w)`` -> logits ``(N, 1, h, w)``) on ``pairs``, one
    :class:`FrameScore` per frame."""
    if resolution not in RESOLUTIONS:
        raise PolypLiveError(f"resolution {resolution!r} is not one of {', '.join(RESOLUTIONS)}")
    if not pairs:
        raise DatasetError("nothing to evaluate: no frames")
    orders = _orders(pairs)
    scores: list[FrameScore] = []
    bar = progress_bar(total=len(pairs), desc=desc, unit="img", enabled=progress, leave=False)
    batch: list[tuple[Pair, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        plans = [plan_frame(image, contract) for _, image, _ in batch]
        logits = np.asarray(predict(preprocess_batch([image for _, image, _ in batch], contract, plans)),
                            np.float32).reshape(len(batch), *contract.input_size)
        for (pair, _, mask), plan, logit in zip(batch, plans, logits, strict=True):
            scores.append(score_frame(logit, mask, plan, point, pair.key, pair.sequence, orders[pair.key],
                                      resolution=resolution))
        bar.update(len(batch))
        batch.clear()

    for item in _frames(pairs, workers or min(8, os.cpu_count() or 1)):
        batch.append(item)
        if len(batch) == max(batch_size, 1):
            flush()
    if batch:
        flush()
    bar.close()
    return scores


def torch_predictor(model: torch.nn.Module, device: torch.device) -> Predict:
    """A :data:`Predict` running a PyTorch model (float32, inference mode) on ``device``."""

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return predict


EXAMPLES = (
    "polyp-eval --data ../shared/data/cvc-clinicdb          # the bundled model on every CVC-ClinicDB sequence",
    "polyp-eval --mix train/splits/generalization.json --markdown eval.md --json eval.json --curve eval.png",
    "polyp-eval --data kvasir=../shared/data/kvasir-seg --split-file train/splits/kvasir_seg_600_200.json "
    "--split val --negatives ../shared/data/polypgen-negatives",
    "polyp-eval --checkpoint runs/gen/best --mix train/splits/generalization.json --choose-operating-point "
    "--write-operating-point",
)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("polyp-eval", "Score a PEFNet checkpoint as the product decides (field-of-view crop, operating "
                    "point): Dice, IoU, per-frame sensitivity, missed frames, false alarms on polyp-free frames, "
                    "per-sequence rows and per-polyp sensitivity, several data sets in one table.", EXAMPLES)
    p.add_argument("--checkpoint", default="default",
                   help="bundled model name, polyp-train run folder (its best), or checkpoint (NAME[.safetensors])")
    p.add_argument("--data", action="append", default=[], metavar="[NAME=]DIR",
                   help="image/mask pairs: images/+masks/ folder, folder of such sequences, or a CSV list "
                        "(repeatable)")
    p.add_argument("--negatives", action="append", default=[], metavar="[NAME=]DIR",
                   help="polyp-free frames without masks, or a folder of sequence folders of them (repeatable)")
    p.add_argument("--mix", type=Path, help="a training mix file: its parts at --split, its held-out sets whole")
    p.add_argument("--data-root", type=Path, help="where the mix's folders are (default: $POLYP_LIVE_DATA, "
                   "else ../shared/data beside the repository)")
    p.add_argument("--split-file", type=Path, help="score only one part of this split (one --data)")
    p.add_argument("--split", help="which part: with --split-file train/val/test (default test); with --mix "
                   "train/val/all (default val)")
    p.add_argument("--recursive", action="store_true", help="DATA holds sub-folders with images/ + masks/")
    p.add_argument("--size", type=int, help="input side (default: the checkpoint's contract)")
    p.add_argument("--no-crop", action="store_true", help="no field-of-view crop (the whole frame, still letterboxed "
                   "if the model was trained so)")
    p.add_argument("--threshold", type=float, help="pixel threshold (default: the contract's operating point)")
    p.add_argument("--min-area", type=float, help="smallest reported region, fraction of the field of view")
    p.add_argument("--min-score", type=float, help="lowest reported region score (mean probability)")
    p.add_argument("--choose-operating-point", action="store_true",
                   help="choose threshold/min area/min score for --min-specificity at the best sensitivity")
    p.add_argument("--min-specificity", type=float, default=0.97, help="specificity the chosen point must reach")
    p.add_argument("--write-operating-point", action="store_true",
                   help="store the chosen operating point in the checkpoint's contract (its JSON)")
    p.add_argument("--video", action="store_true", help="also the video metrics of every set of sequences: the POLYP "
                   "alarm's per-polyp sensitivity, first detection, switches and false alarms per minute, with the "
                   "filter and without")
    p.add_argument("--fps", type=float, default=25.0, help="--video: the frame rate sequences are played at")
    p.add_argument("--alarm-on", type=int, default=DEFAULT_ON_FRAMES, help="--video: frames with a region before "
                   "the alarm turns on")
    p.add_argument("--alarm-off", type=int, default=DEFAULT_OFF_FRAMES, help="--video: frames without before it "
                   "turns off")
    p.add_argument("--alarm-grid", action="store_true", help="--video: every on/off pair of a small grid, what the "
                   "defaults are chosen from")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--resolution", choices=RESOLUTIONS, default="original",
                   help="score at each frame's original size or at the model's input size")
    p.add_argument("--json", type=Path, help="write the results (tables, per-frame scores, the sweep) as JSON")
    p.add_argument("--markdown", type=Path, help="write the table as Markdown")
    p.add_argument("--curve", type=Path, help="draw the sensitivity/specificity curve as a PNG")
    p.add_argument("--workers", type=int, help="decoding threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _named(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if sep and name and not Path(spec).exists():
        return name, Path(path)
    return Path(spec).name or spec, Path(spec)


def _data_root(args: argparse.Namespace) -> Path:
    from polyp_live.train.media_paths import shared_data_dir

    return args.data_root or shared_data_dir()


def eval_sets(args: argparse.Namespace) -> list[EvalSet]:
    """The data sets of the command line, in order: ``--data``, ``--negatives``, then the mix's."""
    if args.split_file is not None and len(args.data) != 1:
        raise PolypLiveError("--split-file needs exactly one --data")
    sets: list[EvalSet] = []
    for spec in args.data:
        name, path = _named(spec)
        pairs = find_pairs(path, recursive=args.recursive)
        if args.split_file is not None:
            part = args.split or "test"
            if part not in SPLIT_NAMES:
                raise PolypLiveError(f"--split {part!r}: with --split-file choose one of {', '.join(SPLIT_NAMES)}")
            pairs = select(pairs, load_split(args.split_file), part, split_path=args.split_file)
            if not pairs:
                raise DatasetError(f"{args.split_file}: the {part} split is empty; choose another with --split")
            name = f"{name} ({part})"
        elif args.split is not None and args.mix is None:
            raise PolypLiveError("--split needs --split-file or --mix")
        sets.append(EvalSet(name, tuple(pairs)))
    for spec in args.negatives:
        name, path = _named(spec)
        sets.append(EvalSet(name, tuple(find_negatives(path))))
    if args.mix is not None:
        from polyp_live.train.mix import load_mix

        mix, root, part = load_mix(args.mix), _data_root(args), args.split or "val"
        if part not in MIX_PARTS:
            raise PolypLiveError(f"--split {part!r}: with --mix choose one of {', '.join(MIX_PARTS)}")
        sets += [EvalSet(f"{p.name} ({part})", tuple(p.select(root, part))) for p in mix.parts]
        sets += [EvalSet(f"{p.name} (held out)", tuple(p.select(root, "all")), chooses=False) for p in mix.held_out]
    if not sets:
        raise PolypLiveError("nothing to evaluate: give --data, --negatives or --mix")
    return sets


RuntimeFactory = Callable[[Path, argparse.Namespace], tuple[Predict, ModelContract, str]]


def main(argv: list[str] | None = None, runtime_factory: RuntimeFactory | None = None,
         parser: argparse.ArgumentParser | None = None) -> int:
    """``polyp-eval``; ``runtime_factory(path, args) -> (predict, contract, label)`` runs the model another way
    than PyTorch (the engines are above this package: their caller passes them in)."""
    args = (parser or build_parser()).parse_args(argv)
    setup_logging(args.verbose)
    from polyp_live.train.checkpoint import load_checkpoint
    from polyp_live.train.eval_report import report_results
    from polyp_live.train.zoo import resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    sets = eval_sets(args)
    if runtime_factory is None:
        device = torch.device(resolve_device(args.device))
        model, contract, _ = load_checkpoint(path, device=device)
        if args.size is not None:
            contract = contract.with_size(args.size)
        predict, runtime = torch_predictor(model, device), "PyTorch fp32"
    else:  # another runtime (benchmarks/eval_engine.py: polyp-live's own engines)
        predict, contract, runtime = runtime_factory(path, args)
    if args.no_crop:
        contract = contract.with_geometry(False, contract.keep_aspect)
    point = OperatingPoint.of(contract, threshold=args.threshold, min_area=args.min_area, min_score=args.min_score)
    results = {s.name: evaluate_frames(predict, contract, point, s.pairs, batch_size=args.batch_size,
                                       resolution=args.resolution, progress=not args.no_progress,
                                       workers=args.workers, desc=s.name) for s in sets}
    stem = Path(path).with_suffix("").name
    name = f"PEFNet-{contract.variant} {contract.height}x{contract.width} ({stem}, {runtime})"
    return report_results(args, path, name, contract, point, sets, results)


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
