"""Datasets: pair discovery (folder, sequences, list file), seeded splits, decoding, and every bad-input error."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from polyp_live.train.contract import ModelContract
from polyp_live.train.data import (
    find_pairs,
    load_cache,
    load_resized,
    load_split,
    make_split,
    parse_ratios,
    read_pair,
    save_split,
    select,
)
from polyp_live.train.errors import DatasetError
from tests.conftest import REPO
from tests.train_helpers import synthetic_dataset

COMMITTED_SPLIT = REPO / "train" / "splits" / "kvasir_seg_600_200.json"


@pytest.fixture
def synth(tmp_path: Path) -> Path:
    return synthetic_dataset(tmp_path / "synth", n=10)


def test_kvasir_pairs(kvasir_dir: Path) -> None:
    pairs = find_pairs(kvasir_dir)
    assert len(pairs) == 800
    assert all(p.image.stem == p.mask.stem == p.key for p in pairs)
    image, mask = read_pair(pairs[0])
    assert image.dtype == np.uint8 and image.shape[2] == 3 and mask.shape == image.shape[:2]
    assert set(np.unique(mask)) <= {0, 1} and 0 < mask.mean() < 1


def test_sequence_folders_are_found(cvc_dir: Path) -> None:
    pairs = find_pairs(cvc_dir)  # no images/ at the top: sub-folders are used
    assert pairs == find_pairs(cvc_dir, recursive=True)
    assert len(pairs) == 199 and pairs[0].key == "seq01/001"
    assert len({p.key for p in pairs}) == len(pairs)


def test_committed_split_is_reproducible(kvasir_dir: Path, tmp_path: Path) -> None:
    committed = json.loads(COMMITTED_SPLIT.read_text())
    assert committed["counts"] == {"train": 600, "val": 200, "test": 0} and committed["seed"] == 0
    pairs = find_pairs(kvasir_dir)
    fresh = save_split(make_split(pairs, parse_ratios("75/25/0"), seed=0, dataset="kvasir-seg"), tmp_path / "s.json")
    assert fresh.read_text() == COMMITTED_SPLIT.read_text()
    split = load_split(COMMITTED_SPLIT)
    assert len(select(pairs, split, "train")) == 600 and len(select(pairs, split, "val")) == 200


def test_split_is_seeded_disjoint_and_complete(synth: Path, tmp_path: Path) -> None:
    pairs = find_pairs(synth)
    a, b = make_split(pairs, (0.6, 0.2, 0.2), seed=1), make_split(pairs, (0.6, 0.2, 0.2), seed=1)
    c = make_split(pairs, (0.6, 0.2, 0.2), seed=2)
    assert a == b and (a.train, a.val) != (c.train, c.val)
    assert (len(a.train), len(a.val), len(a.test)) == (6, 2, 2)
    assert sorted(a.train + a.val + a.test) == sorted(p.key for p in pairs)
    assert load_split(save_split(a, tmp_path / "split.json")) == a


def test_parse_ratios() -> None:
    assert parse_ratios("60/20/20") == pytest.approx((0.6, 0.2, 0.2))
    assert parse_ratios("75/25") == pytest.approx((0.75, 0.25, 0.0))
    for bad in ("abc", "0/50/50", "1/2/3/4", "-1/2/3"):
        with pytest.raises(DatasetError, match="60/20/20"):
            parse_ratios(bad)


def test_list_file(synth: Path) -> None:
    lines = ["image,mask", "# a comment", ""] + [f"images/img{i:03d}.png,masks/img{i:03d}.png" for i in (3, 1)]
    (synth / "pairs.csv").write_text("\n".join(lines) + "\n")
    pairs = find_pairs(synth / "pairs.csv")
    assert [p.key for p in pairs] == ["images/img001.png", "images/img003.png"]
    (synth / "bad.txt").write_text("images/img001.png,masks/nothing.png\n")
    with pytest.raises(DatasetError, match=re.escape(str(synth / "masks" / "nothing.png"))):
        find_pairs(synth / "bad.txt")


def test_cache_and_resized_shapes(synth: Path) -> None:
    pairs = find_pairs(synth)
    contract = ModelContract("atto", (64, 64))
    images, masks = load_cache(pairs, 80, contract, workers=2, progress=False)
    assert images.shape == (10, 80, 80, 3) and masks.shape == (10, 80, 80)
    assert masks.max() == 255 and masks.min() == 0
    val_images, val_masks = load_resized(pairs, contract, workers=2, progress=False)
    assert val_images.shape == (10, 64, 64, 3) and set(np.unique(val_masks)) == {0, 1}
    # the polyp colour is inside the mask: the cache keeps image and mask aligned
    assert images[0][masks[0] > 200].mean(axis=0)[0] > 150 and images[0][masks[0] < 50].mean(axis=0)[0] < 100


# --------------------------------------------------------------------------- bad input


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "absent"))):
        find_pairs(tmp_path / "absent")
    (tmp_path / "only_images" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="mask folder not found"):
        find_pairs(tmp_path / "only_images")


def test_image_without_mask(synth: Path) -> None:
    (synth / "masks" / "img004.png").unlink()
    with pytest.raises(DatasetError, match=r"img004\.png: image has no mask"):
        find_pairs(synth)


def test_unreadable_image(synth: Path) -> None:
    (synth / "images" / "img002.png").write_bytes(b"not a png")
    pairs = find_pairs(synth)
    with pytest.raises(DatasetError, match=r"img002\.png: unreadable image"):
        load_cache(pairs, 32, ModelContract("atto", (32, 32)), workers=2, progress=False)


def test_mask_of_another_size(synth: Path) -> None:
    cv2.imwrite(str(synth / "masks" / "img005.png"), np.zeros((10, 12), np.uint8))
    with pytest.raises(DatasetError, match=r"img005\.png: mask is 12x10 but its image is 80x96"):
        load_resized(find_pairs(synth), ModelContract("atto", (32, 32)), workers=2, progress=False)


def test_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(DatasetError, match="empty dataset"):
        find_pairs(tmp_path / "empty")


def test_split_that_does_not_fit_the_data(synth: Path, tmp_path: Path) -> None:
    split_path = save_split(make_split(find_pairs(synth), (0.5, 0.5, 0.0), seed=0), tmp_path / "split.json")
    other = tmp_path / "other"
    shutil.copytree(synth, other)
    for folder in ("images", "masks"):
        for path in sorted((other / folder).iterdir())[:5]:
            path.unlink()
    with pytest.raises(DatasetError, match="ids are not in the dataset"):
        for name in ("train", "val"):
            select(find_pairs(other), load_split(split_path), name, split_path=split_path)
    (tmp_path / "junk.json").write_text("{]")
    with pytest.raises(DatasetError, match="malformed split file"):
        load_split(tmp_path / "junk.json")
