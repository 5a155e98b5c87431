"""A training mix: several data sets, each with its own split, and the data sets training never touches.

A mix file (``train/splits/generalization.json``) names folders under a data root (``polyp-train --data ROOT --mix
FILE``; ``polyp-eval --mix FILE``), each with a split file beside the mix file, and the folders held out whole::

    {"schema": "polyp-live.mix/1",
     "parts": [{"name": "kvasir-seg", "folder": "kvasir-seg", "split": "kvasir_seg_600_200.json"},
               {"name": "polypgen-negatives", "folder": "polypgen-negatives",
                "split": "polypgen_negatives_by_sequence.json", "negatives": true}],
     "held_out": [{"name": "cvc-clinicdb", "folder": "cvc-clinicdb", "why": "..."}]}

Training takes every part's ``train`` ids; validation scores every part's ``val`` ids on its own (a polyp-free part
scores the frames with no predicted pixel). Splits are by sequence or by near-duplicate group where the data needs
it (:mod:`polyp_live.train.make_splits`); a ``negatives`` part is a folder of polyp-free frames without masks
(:func:`polyp_live.train.data.find_negatives`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyp_live.train.data import Pair, Split, find_negatives, find_pairs, load_split, select
from polyp_live.train.errors import DatasetError
from polyp_live.train.jsonfile import read_json_file

MIX_SCHEMA = "polyp-live.mix/1"


@dataclass(frozen=True)
class MixPart:
    """One data set of a mix: ``folder`` under the data root, its ``split`` file, polyp-free or not."""

    name: str
    folder: str
    split: Path | None
    negatives: bool = False
    terms: str = ""
    repeat: int = 1  # training draws this part's frames this many times per epoch (the polyp-free frames: 2);
    # 0: validation only (an ablation that keeps the best-epoch choice the same)

    def pairs(self, root: Path) -> list[Pair]:
        folder = root / self.folder
        return find_negatives(folder) if self.negatives else find_pairs(folder)

    def load_split(self) -> Split:
        if self.split is None:
            raise DatasetError(f"mix part {self.name} has no split file")
        return load_split(self.split)

    def select(self, root: Path, part: str) -> list[Pair]:
        """This data set's pairs of one part of its split (``train``, ``val``) or all of them (``all``)."""
        pairs = self.pairs(root)
        return pairs if part == "all" else select(pairs, self.load_split(), part, split_path=self.split or "")


@dataclass(frozen=True)
class Mix:
    path: Path
    parts: tuple[MixPart, ...]
    held_out: tuple[MixPart, ...]
    description: str = ""

    def part(self, name: str) -> MixPart:
        for part in (*self.parts, *self.held_out):
            if part.name == name:
                return part
        raise DatasetError(f"{self.path}: no part named {name!r} (parts: {', '.join(p.name for p in self.parts)})")

    def terms(self) -> str:
        """The data terms of every part, for the checkpoint's licence text."""
        return "; ".join(p.terms for p in self.parts if p.terms)

    def data_seen(self) -> str:
        """What training on this mix sees, for the checkpoint's JSON."""
        seen = "; ".join(
            f"{p.name}: {'validation only, the val ids of' if p.repeat == 0 else 'the train ids of'} "
            f"{p.split.name if p.split else '-'}" for p in self.parts)
        held = ", ".join(p.name for p in self.held_out)
        return seen + (f"; held out whole (never seen): {held}" if held else "")


def _part(entry: Any, base: Path, where: str) -> MixPart:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(
            entry.get("folder"), str):
        raise DatasetError(f"{where}: each part needs a 'name' and a 'folder' (strings)")
    split = entry.get("split")
    if split is not None and not isinstance(split, str):
        raise DatasetError(f"{where}: part {entry['name']}: 'split' must be a file name")
    repeat = entry.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 0 <= repeat <= 10:
        raise DatasetError(f"{where}: part {entry['name']}: 'repeat' must be a whole number 0..10 (0: validation only)")
    return MixPart(entry["name"], entry["folder"], base / split if split else None, bool(entry.get("negatives")),
                   str(entry.get("terms", "")), repeat)


def load_mix(path: str | Path) -> Mix:
    """Read and check a mix file (one :class:`DatasetError` line for anything wrong)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"mix file not found: {path}")
    data = read_json_file(path, what="mix file", error=DatasetError)
    if not isinstance(data, dict) or data.get("schema") != MIX_SCHEMA:
        raise DatasetError(f"{path}: not a mix file (expected schema {MIX_SCHEMA!r})")
    parts = tuple(_part(e, path.parent, str(path)) for e in data.get("parts") or [])
    held = tuple(_part(e, path.parent, str(path)) for e in data.get("held_out") or [])
    if not parts:
        raise DatasetError(f"{path}: the mix has no parts")
    for part in parts:
        if part.split is None:
            raise DatasetError(f"{path}: part {part.name} has no split file (training needs a validation part)")
    return Mix(path, parts, held, str(data.get("description", "")))


@dataclass(frozen=True)
class MixData:
    """The pairs a training run takes from a mix: training pairs (repeats included) and each part's validation
    pairs, in order (``val_parts``: name, first index, end index, polyp-free)."""

    train: tuple[Pair, ...]
    val: tuple[Pair, ...]
    val_parts: tuple[tuple[str, int, int, bool], ...]
    split_files: tuple[Path, ...]


def mix_pairs(mix: Mix, root: Path) -> MixData:
    train: list[Pair] = []
    val: list[Pair] = []
    parts: list[tuple[str, int, int, bool]] = []
    for part in mix.parts:
        pairs = part.pairs(root)
        split = part.load_split()
        train += select(pairs, split, "train", split_path=part.split or "") * part.repeat
        chosen = select(pairs, split, "val", split_path=part.split or "")
        parts.append((part.name, len(val), len(val) + len(chosen), part.negatives))
        val += chosen
    return MixData(tuple(train), tuple(val), tuple(parts), tuple(p.split for p in mix.parts if p.split))
