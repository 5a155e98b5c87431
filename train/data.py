"""Segmentation data: finding image/mask pairs, seeded splits, and decoding into uint8 caches.

A dataset is one of:

* a Kvasir-SEG style folder ``DIR/images`` + ``DIR/masks``, pairs matched by file stem (jpg/png/...);
* a folder of such folders (``DIR/seqNN/images`` + ``DIR/seqNN/masks``, as CVC-ClinicDB), found
  with ``recursive=True`` or automatically when ``DIR`` has no ``images/`` of its own; pair ids are
  then ``seqNN/stem``;
* a ``.csv`` / ``.txt`` list with one ``image,mask`` pair per line (paths relative to the list's
  folder; blank lines and ``#`` comments are skipped; a header line ``image,mask`` is allowed).

Masks are binarized at 128 with :func:`polyp_live.train.preprocess.binarize_mask`. Every problem (missing
folder, image without mask, unreadable file, mask of another size, empty dataset, split file that
does not fit) raises :class:`polyp_live.train.errors.DatasetError` with one line naming the file.

Splits are seeded permutations of the sorted pair ids, stored as JSON (seed, ratios, the id lists
and a fingerprint of the dataset: SHA-256 over the sorted ids, file names and byte sizes).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polyp_live.train.contract import ModelContract
from polyp_live.train.errors import DatasetError
from polyp_live.train.preprocess import binarize_mask
from polyp_live.train.progress import progress as progress_bar

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
LIST_SUFFIXES = (".csv", ".txt")
SPLIT_SCHEMA = "polyp-live.split/1"
SPLIT_NAMES = ("train", "val", "test")
PADDING = 255  # load_resized(mark_padding=True): mask value of the letterbox's padding (not part of the frame)


@dataclass(frozen=True)
class Pair:
    """One image and its mask; ``key`` is the id used in split files (stem, or ``sub/stem``). ``mask`` is ``None``
    for a polyp-free frame (an empty mask)."""

    key: str
    image: Path
    mask: Path | None

    @property
    def sequence(self) -> str:
        """The sequence (sub-folder) the frame belongs to, or ``""`` for a flat data set."""
        return self.key.rpartition("/")[0]


@dataclass(frozen=True)
class Split:
    """A seeded train/val/test partition of a dataset's pair ids."""

    seed: int
    ratios: tuple[float, float, float]
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    fingerprint: str
    dataset: str = ""

    def keys(self, name: str) -> tuple[str, ...]:
        if name not in SPLIT_NAMES:
            raise DatasetError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SPLIT_SCHEMA,
            "seed": self.seed,
            "ratios": list(self.ratios),
            "dataset": self.dataset,
            "fingerprint": self.fingerprint,
            "counts": {name: len(self.keys(name)) for name in SPLIT_NAMES},
            **{name: list(self.keys(name)) for name in SPLIT_NAMES},
        }


# --------------------------------------------------------------------------- finding pairs


def find_pairs(root: str | Path, *, recursive: bool = False) -> list[Pair]:
    """All pairs of a dataset folder or list file, sorted by key (see the module docstring)."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() in LIST_SUFFIXES:
        pairs = _pairs_from_list(root)
    elif not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    elif not recursive and (root / "images").is_dir():
        pairs = _pairs_from_folder(root, prefix="")
    else:
        subs = sorted(p for p in root.iterdir() if (p / "images").is_dir())
        if (root / "images").is_dir():
            subs.insert(0, root)
        if not subs:
            raise DatasetError(f"{root}: no images/ folder (expected {root}/images and {root}/masks, or sub-folders)")
        pairs = []
        for sub in subs:
            pairs += _pairs_from_folder(sub, prefix="" if sub == root else f"{sub.name}/")
    if not pairs:
        raise DatasetError(f"{root}: empty dataset (no image/mask pairs)")
    return sorted(pairs, key=lambda p: p.key)


def find_negatives(root: str | Path) -> list[Pair]:
    """Polyp-free frames: every image in ``root`` or in its sub-folders (one level: sequences), with empty masks;
    ids are ``stem`` or ``sequence/stem``. A folder without images raises :class:`DatasetError`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"polyp-free folder not found: {root}")
    pairs = [Pair(stem, path, None) for stem, path in _images_by_stem(root).items()]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        pairs += [Pair(f"{sub.name}/{stem}", path, None) for stem, path in _images_by_stem(sub).items()]
    if not pairs:
        raise DatasetError(f"{root}: no images (expected polyp-free frames in it or in its sequence folders)")
    return sorted(pairs, key=lambda p: p.key)


def _images_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in found:
                raise DatasetError(f"{path}: two files with the stem {path.stem!r} ({found[path.stem].name})")
            found[path.stem] = path
    return found


def _pairs_from_folder(root: Path, prefix: str) -> list[Pair]:
    masks_dir = root / "masks"
    if not masks_dir.is_dir():
        raise DatasetError(f"mask folder not found: {masks_dir}")
    images, masks = _images_by_stem(root / "images"), _images_by_stem(masks_dir)
    for stem, path in images.items():
        if stem not in masks:
            raise DatasetError(f"{path}: image has no mask (expected {masks_dir}/{stem}.*)")
    for stem, path in masks.items():
        if stem not in images:
            raise DatasetError(f"{path}: mask has no image (expected {root / 'images'}/{stem}.*)")
    return [Pair(prefix + stem, images[stem], masks[stem]) for stem in images]


def _pairs_from_list(list_path: Path) -> list[Pair]:
    base = list_path.parent
    pairs: list[Pair] = []
    with open(list_path, newline="", encoding="utf-8") as handle:
        for lineno, row in enumerate(csv.reader(handle), start=1):
            cells = [c.strip() for c in row]
            if not cells or not cells[0] or cells[0].startswith("#"):
                continue
            if [c.lower() for c in cells] == ["image", "mask"]:
                continue
            if len(cells) != 2:
                raise DatasetError(f"{list_path}:{lineno}: expected 'image,mask', got {','.join(cells)!r}")
            image, mask = base / cells[0], base / cells[1]
            for path, what in ((image, "image"), (mask, "mask")):
                if not path.is_file():
                    raise DatasetError(f"{list_path}:{lineno}: {what} not found: {path}")
            pairs.append(Pair(cells[0], image, mask))
    keys = [p.key for p in pairs]
    if len(set(keys)) != len(keys):
        raise DatasetError(f"{list_path}: the same image is listed twice")
    return pairs


def dataset_fingerprint(pairs: Sequence[Pair]) -> str:
    """SHA-256 over the sorted pair ids, file names and byte sizes (cheap: reads no pixels)."""
    digest = hashlib.sha256()
    for pair in sorted(pairs, key=lambda p: p.key):
        mask = f"{pair.mask.name}|{pair.mask.stat().st_size}" if pair.mask is not None else "-|0"
        line = f"{pair.key}|{pair.image.name}|{pair.image.stat().st_size}|{mask}\n"
        digest.update(line.encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- splits


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"60/20/20"`` or ``"75/25"`` (test 0) -> fractions summing to 1."""
    try:
        parts = [float(p) for p in text.replace(",", "/").split("/")]
    except ValueError:
        raise DatasetError(f"split {text!r} must look like 60/20/20 (train/val/test)") from None
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0 or parts[0] <= 0:
        raise DatasetError(f"split {text!r} must be 2 or 3 non-negative numbers with train > 0, e.g. 60/20/20")
    total = sum(parts)
    return (parts[0] / total, parts[1] / total, parts[2] / total)


def make_split(pairs: Sequence[Pair], ratios: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0,
               dataset: str = "") -> Split:
    """Shuffle the sorted ids with ``random.Random(seed)`` and cut them by ``ratios`` (val/test rounded)."""
    keys = sorted(p.key for p in pairs)
    random.Random(seed).shuffle(keys)
    n = len(keys)
    n_val = round(n * ratios[1])
    n_test = round(n * ratios[2])
    n_train = n - n_val - n_test
    if n_train <= 0:
        raise DatasetError(f"split {ratios} leaves no training images out of {n}")
    return Split(
        seed=int(seed),
        ratios=tuple(round(r, 6) for r in ratios),  # type: ignore[arg-type]
        train=tuple(sorted(keys[:n_train])),
        val=tuple(sorted(keys[n_train : n_train + n_val])),
        test=tuple(sorted(keys[n_train + n_val :])),
        fingerprint=dataset_fingerprint(pairs),
        dataset=dataset,
    )


def save_split(split: Split, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def load_split(path: str | Path) -> Split:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SPLIT_SCHEMA:
            raise DatasetError(f"{path}: not a split file (schema {data.get('schema')!r}, expected {SPLIT_SCHEMA!r})")
        lists = {name: tuple(str(k) for k in data[name]) for name in SPLIT_NAMES}
        return Split(seed=int(data["seed"]), ratios=tuple(float(r) for r in data["ratios"]),  # type: ignore[arg-type]
                     fingerprint=str(data["fingerprint"]), dataset=str(data.get("dataset", "")), **lists)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError,
            RecursionError) as exc:
        raise DatasetError(f"{path}: malformed split file ({type(exc).__name__}: {exc})") from None


def select(pairs: Sequence[Pair], split: Split, name: str, *, split_path: str | Path = "split") -> list[Pair]:
    """The pairs of one part of a split; ids the dataset lacks raise :class:`DatasetError`."""
    by_key = {p.key: p for p in pairs}
    wanted = split.keys(name)
    missing = [k for k in wanted if k not in by_key]
    if missing:
        raise DatasetError(f"{split_path}: {len(missing)} {name} ids are not in the dataset, e.g. {missing[0]!r}")
    if split.fingerprint != dataset_fingerprint(pairs):
        logger.warning("%s: dataset fingerprint differs from the split's (files were added or changed)", split_path)
    return [by_key[k] for k in wanted]


# --------------------------------------------------------------------------- decoding


def read_image(path: Path) -> np.ndarray:
    """An image file -> RGB ``uint8`` ``(H, W, 3)``; unreadable files raise :class:`DatasetError`."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path}: unreadable image (missing, empty or not an image file)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """A mask file -> ``uint8`` ``{0, 1}`` ``(H, W)``: its brightest channel binarized at 128 (grey masks, JPEG
    masks and colour-coded masks alike: a red (255, 0, 0) polyp is 76 in grey and would be lost)."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise DatasetError(f"{path}: unreadable mask (missing, empty or not an image file)")
    if pixels.ndim == 3:
        pixels = pixels[..., :3]  # no alpha
    return binarize_mask(pixels)


def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """RGB image and ``{0, 1}`` mask of one pair (empty for a polyp-free frame); a mask of another size raises
    :class:`DatasetError`."""
    image = read_image(pair.image)
    if pair.mask is None:
        return image, np.zeros(image.shape[:2], np.uint8)
    mask = read_mask(pair.mask)
    if image.shape[:2] != mask.shape:
        raise DatasetError(
            f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {image.shape[1]}x{image.shape[0]}"
        )
    return image, mask


def _square(pair: Pair, side: int, contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    from polyp_live.train.preprocess import plan_frame, resize_frame

    image, mask = read_pair(pair)
    plan = plan_frame(image, contract, size=(side, side))
    # the mask keeps its anti-aliased edge (0..255) so the augmentation can resample it smoothly; it goes through
    # the image's own transform (crop, resize, letterbox) as a grey image
    soft = resize_frame(np.repeat((mask * np.uint8(255))[..., None], 3, axis=2), contract, plan)[..., 0]
    return resize_frame(image, contract, plan), soft


def load_cache(pairs: Sequence[Pair], side: int, contract: ModelContract, *, workers: int | None = None,
               desc: str = "decode", progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode every pair once (threads) into ``uint8`` ``(N, side, side, 3)`` images and ``(N, side, side)`` masks.

    Images go through the contract's geometry into a ``side`` square (crop to the field of view and letterbox when
    the contract asks for it) with its resize mode; masks go the same way from ``{0, 255}`` and are stored as
    ``0..255`` (threshold at 128 for a binary mask).
    """
    if not pairs:
        raise DatasetError("empty dataset: no pairs to load")
    images = np.empty((len(pairs), side, side, 3), dtype=np.uint8)
    masks = np.empty((len(pairs), side, side), dtype=np.uint8)
    workers = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda p: _square(p, side, contract), pairs)
        bar = progress_bar(jobs, total=len(pairs), desc=desc, unit="img", enabled=progress, leave=False)
        for i, (image, mask) in enumerate(bar):
            images[i], masks[i] = image, mask
    return images, masks


def load_resized(pairs: Sequence[Pair], contract: ModelContract, *, workers: int | None = None,
                 desc: str = "decode val", progress: bool = True,
                 mark_padding: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validation data at the contract's size: images through :mod:`polyp_live.train.preprocess` (the contract's
    geometry), masks the same way with nearest-neighbour sampling.

    Returns ``uint8`` ``(N, h, w, 3)`` images and ``{0, 1}`` ``(N, h, w)`` masks. The letterbox's padding (no part
    of the frame) is :data:`PADDING` in the masks when ``mark_padding`` is on, so that scores can leave it out.
    """
    from polyp_live.train.preprocess import plan_frame, resize_frame, resize_mask_planned

    height, width = contract.input_size

    def one(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        image, mask = read_pair(pair)
        plan = plan_frame(image, contract)
        small = resize_mask_planned(mask, plan)
        if mark_padding and not plan.squashes_whole_frame:
            inside = np.zeros_like(small, dtype=bool)
            plan.content(inside)[...] = True
            small[~inside] = PADDING
        return resize_frame(image, contract, plan), small

    images = np.empty((len(pairs), height, width, 3), dtype=np.uint8)
    masks = np.empty((len(pairs), height, width), dtype=np.uint8)
    workers = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        bar = progress_bar(pool.map(one, pairs), total=len(pairs), desc=desc, unit="img", enabled=progress,
                           leave=False)
        for i, (image, mask) in enumerate(bar):
            images[i], masks[i] = image, mask
    return images, masks
