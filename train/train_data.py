"""The training run's data: the pairs of a data set and its split (or of a mix), decoded once into the training
cache and the validation set, on the training device (see :mod:`polyp_live.train.trainer`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from polyp_live.train.contract import ModelContract
from polyp_live.train.data import (
    Pair,
    dataset_fingerprint,
    find_pairs,
    load_cache,
    load_resized,
    load_split,
    make_split,
    save_split,
    select,
)
from polyp_live.train.errors import DatasetError
from polyp_live.train.hashing import sha256_file
from polyp_live.train.mix import load_mix, mix_pairs

if TYPE_CHECKING:
    from polyp_live.train.trainer import TrainConfig

logger = logging.getLogger("polyp_live.train.trainer")


@dataclass
class TrainData:
    train_images: torch.Tensor
    train_masks: torch.Tensor
    val_images: torch.Tensor
    val_masks: torch.Tensor
    split_path: Path
    split_sha256: str
    fingerprint: str
    val_parts: tuple[tuple[str, int, int, bool], ...] = ()  # a mix: (name, start, end, polyp-free) per part
    data_seen: str = ""


def _pairs_and_split(cfg: TrainConfig) -> tuple[list[Pair], list[Pair], Path, str, tuple, str]:
    """Training pairs, validation pairs, the split (or mix) file, the fingerprint, the validation parts and what the
    run sees."""
    if cfg.mix is not None:
        mix = load_mix(cfg.mix)
        data = mix_pairs(mix, Path(cfg.data))
        fingerprint = dataset_fingerprint([*dict.fromkeys(data.train), *data.val])
        return list(data.train), list(data.val), Path(cfg.mix), fingerprint, data.val_parts, mix.data_seen()
    pairs = find_pairs(cfg.data, recursive=cfg.recursive)
    if cfg.split_file is not None:
        split_path = Path(cfg.split_file)
        split = load_split(split_path)
    else:
        split = make_split(pairs, cfg.split, cfg.seed, dataset=Path(cfg.data).resolve().name)
        split_path = save_split(split, Path(cfg.out) / "split.json")
    train_pairs = select(pairs, split, "train", split_path=split_path)
    val_pairs = select(pairs, split, "val", split_path=split_path)
    name = Path(cfg.data).resolve().name
    return train_pairs, val_pairs, split_path, split.fingerprint, ((name, 0, len(val_pairs), False),), ""


def prepare_data(cfg: TrainConfig, contract: ModelContract, device: torch.device, cache_side: int) -> TrainData:
    """Find pairs, make or load the split (or read the mix), decode the train cache and the validation set onto
    ``device``."""
    train_pairs, val_pairs, split_path, fingerprint, val_parts, data_seen = _pairs_and_split(cfg)
    if not train_pairs:
        raise DatasetError(f"{split_path}: the split has no training images")
    logger.info("data: %d train / %d val pairs from %s (split %s)", len(train_pairs), len(val_pairs), cfg.data,
                split_path)
    images, masks = load_cache(train_pairs, cache_side, contract, workers=cfg.workers, desc="decode train",
                                progress=cfg.progress)
    h, w = contract.input_size
    if val_pairs:
        val_images, val_masks = load_resized(val_pairs, contract, workers=cfg.workers, progress=cfg.progress,
                                             mark_padding=True)
    else:
        val_images, val_masks = np.zeros((0, h, w, 3), np.uint8), np.zeros((0, h, w), np.uint8)
    return TrainData(
        train_images=torch.from_numpy(images).to(device),
        train_masks=torch.from_numpy(masks).to(device),
        val_images=torch.from_numpy(val_images).to(device),
        val_masks=torch.from_numpy(val_masks).to(device),
        split_path=split_path,
        split_sha256=sha256_file(split_path),
        fingerprint=fingerprint,
        val_parts=val_parts if val_pairs else (),
        data_seen=data_seen,
    )
