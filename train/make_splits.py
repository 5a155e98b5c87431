"""``python -m polyp_live.train.make_splits``: the split files of the generalization mix, made once and committed.

* NeoPolyp-Small: near-duplicate groups (:mod:`polyp_live.train.groups`), then a seeded 80/20 train/val cut by
  group, never by frame (the groups of more than one frame are listed in the file);
* PolypGen negatives: by sequence, never by frame: a seeded choice of about ``--negative-val-sequences`` of the 12
  sequences, stratified by frame size (each tower layout gives validation its share), is validation, the rest
  training;
* CVC-ClinicDB: by sequence the same way (about ``--cvc-val-sequences`` of its 9 sequences for validation), for the
  mix that trains on CVC and holds NeoPolyp out whole (``generalization-neopolyp-out.json``).

Kvasir-SEG keeps its 600/200 split (``kvasir_seg_600_200.json``); ``generalization.json`` holds CVC-ClinicDB out
whole (the cross-hospital check). Example::

    python -m polyp_live.train.make_splits --data-root ../shared/data --out train/splits
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polyp_live.train.cli_utils import make_parser, run_cli, setup_logging
from polyp_live.train.data import Pair, Split, dataset_fingerprint, find_negatives, find_pairs, read_image
from polyp_live.train.groups import group_near_duplicates, image_features
from polyp_live.train.progress import progress as progress_bar

logger = logging.getLogger(__name__)

PROG = "python -m polyp_live.train.make_splits"
NEOPOLYP_FILE = "neopolyp_small_grouped_80_20.json"
NEGATIVES_FILE = "polypgen_negatives_by_sequence.json"
CVC_FILE = "cvc_clinicdb_by_sequence.json"


def grouped_split(pairs: Sequence[Pair], groups: Sequence[int], val_fraction: float, seed: int,
                  dataset: str) -> tuple[Split, list[list[str]]]:
    """Whole groups to validation, in a seeded order, until ``val_fraction`` of the frames are there."""
    members: dict[int, list[str]] = defaultdict(list)
    for pair, group in zip(pairs, groups, strict=True):
        members[group].append(pair.key)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    val: list[str] = []
    for group in order:
        if len(val) >= round(val_fraction * len(pairs)):
            break
        val += members[group]
    chosen = set(val)
    train = sorted(p.key for p in pairs if p.key not in chosen)
    split = Split(seed, (round(1 - val_fraction, 6), round(val_fraction, 6), 0.0), tuple(train), tuple(sorted(val)),
                  (), dataset_fingerprint(pairs), dataset)
    return split, sorted(sorted(m) for m in members.values() if len(m) > 1)


def sequence_split(pairs: Sequence[Pair], val_sequences: int, seed: int, dataset: str) -> tuple[Split, list[str]]:
    """A seeded choice of whole sequences for validation, stratified by frame size (a frame size is a tower and
    its layout: each size with two or more sequences gives validation its share, at least one)."""
    strata: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for sequence in sorted({p.sequence for p in pairs}):
        first = next(p for p in pairs if p.sequence == sequence)
        strata[read_image(first.image).shape].append(sequence)
    total = sum(len(s) for s in strata.values())
    rng = random.Random(seed)
    chosen: list[str] = []
    for shape in sorted(strata):
        members = strata[shape]
        rng.shuffle(members)
        share = max(1, round(val_sequences * len(members) / total)) if len(members) > 1 else 0
        chosen += members[:share]
    chosen = sorted(chosen)
    val = sorted(p.key for p in pairs if p.sequence in chosen)
    train = sorted(p.key for p in pairs if p.sequence not in chosen)
    fraction = round(len(val) / len(pairs), 6)
    split = Split(seed, (round(1 - fraction, 6), fraction, 0.0), tuple(train), tuple(val), (),
                  dataset_fingerprint(pairs), dataset)
    return split, chosen


def _write(split: Split, path: Path, extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**split.to_dict(), **extra}, indent=1) + "\n", encoding="utf-8")
    logger.info("%s: %d train / %d val", path, len(split.train), len(split.val))


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Make the split files of the generalization mix: NeoPolyp by near-duplicate group, the "
                    "polyp-free PolypGen frames and CVC-ClinicDB by sequence.",
                    [f"{PROG} --data-root ../shared/data --out train/splits"])
    p.add_argument("--data-root", type=Path, required=True, help="folder holding neopolyp-small/, cvc-clinicdb/ and "
                   "polypgen-negatives/")
    p.add_argument("--out", type=Path, default=Path("train/splits"), help="where the split files go")
    p.add_argument("--seed", type=int, default=0, help="seed of every cut")
    p.add_argument("--neopolyp-val", type=float, default=0.2, help="NeoPolyp validation fraction (by group)")
    p.add_argument("--negative-val-sequences", type=int, default=4, help="polyp-free sequences for validation")
    p.add_argument("--cvc-val-sequences", type=int, default=3, help="CVC-ClinicDB sequences for validation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    neo = find_pairs(args.data_root / "neopolyp-small")
    features = [image_features(read_image(p.image)) for p in
                progress_bar(neo, desc="features", unit="img", enabled=not args.no_progress, leave=False)]
    groups = group_near_duplicates(features)
    split, multi = grouped_split(neo, groups, args.neopolyp_val, args.seed, "neopolyp-small")
    _write(split, args.out / NEOPOLYP_FILE, {
        "method": f"{PROG}: near-duplicate groups (polyp_live.train.groups: ORB + RANSAC homography, linked at "
                  f">= 12 inliers), whole groups to validation in a seeded order (seed {args.seed}) until "
                  f"{args.neopolyp_val:.0%} of the frames",
        "group_count": len(set(groups)), "groups": multi})
    negatives = find_negatives(args.data_root / "polypgen-negatives")
    split, chosen = sequence_split(negatives, args.negative_val_sequences, args.seed, "polypgen-negatives")
    _write(split, args.out / NEGATIVES_FILE, {
        "method": f"{PROG}: by sequence, never by frame: about {args.negative_val_sequences} of "
                  f"{len({p.sequence for p in negatives})} sequences for validation, a seeded choice (seed "
                  f"{args.seed}) stratified by frame size (tower), each size its share",
        "val_sequences": chosen})
    cvc = find_pairs(args.data_root / "cvc-clinicdb")
    split, chosen = sequence_split(cvc, args.cvc_val_sequences, args.seed, "cvc-clinicdb")
    _write(split, args.out / CVC_FILE, {
        "method": f"{PROG}: by sequence, never by frame: {len(chosen)} of {len({p.sequence for p in cvc})} "
                  f"sequences for validation, a seeded choice (seed {args.seed})",
        "val_sequences": chosen})
    return 0


def entry() -> None:
    sys.exit(run_cli(main, prog=PROG))


if __name__ == "__main__":
    entry()
