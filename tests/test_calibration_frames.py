"""Calibration frame sources, --keep-float selection, the cache policy and the report metrics (no calibration pass)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from polyp_live.calibration.cache import CacheKey, load_cache, model_key, save_cache
from polyp_live.calibration.errors import CalibrationError
from polyp_live.calibration.frames import (
    DUPLICATE_DIFF,
    frames_from_images,
    frames_from_split,
    frames_from_video,
    masked_frames,
)
from polyp_live.calibration.layers import parse_keep_float, select_keep_float
from polyp_live.calibration.quantize import TensorRanges
from polyp_live.calibration.report import dice_iou
from polyp_live.train.contract import ModelContract
from polyp_live.train.preprocess import preprocess, preprocess_batch
from tests.conftest import KVASIR
from tests.train_helpers import synthetic_dataset

CONTRACT = ModelContract("atto", (64, 64))


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kvasir-SEG (images/ + masks/) when the real data is present, else a generated set in its layout."""
    if (KVASIR / "images").is_dir():
        return KVASIR
    return synthetic_dataset(tmp_path_factory.mktemp("pairs"), n=24, size=(120, 150))


def _thumb(pixels: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def test_image_sample_is_seeded_resized_and_preprocesses_like_the_runtime(pairs_dir: Path) -> None:
    a = frames_from_images(pairs_dir, 6, CONTRACT, seed=3)
    b = frames_from_images(pairs_dir, 6, CONTRACT, seed=3)
    c = frames_from_images(pairs_dir, 6, CONTRACT, seed=4)
    assert [f.name for f in a.frames] == [f.name for f in b.frames] != [f.name for f in c.frames]
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert all(f.pixels.shape == (64, 64, 3) and f.pixels.dtype == np.uint8 for f in a.frames)
    original = cv2.cvtColor(cv2.imread(str(pairs_dir / "images" / a.frames[0].name)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(preprocess_batch(a.pixels()[:1], CONTRACT)[0], preprocess(original, CONTRACT))


def test_video_frames_spread_over_the_clip(cvc_clip: Callable[[str], Path]) -> None:
    from tests.realtime_fakes import probe

    clip = cvc_clip("seq01")
    frames = frames_from_video(clip, 8, CONTRACT)
    indices = [int(f.name.split("=")[1]) for f in frames.frames]
    total = probe(clip)["frames"]
    assert len(indices) == 8 and indices == sorted(indices)
    step = total // 8
    assert indices == list(range(0, 8 * step, step))  # every k-th frame, k from the frame count
    assert indices[-1] >= total // 2  # not just the start of the clip


def test_video_near_duplicates_are_skipped() -> None:
    """The bundled clip holds 10 distinct frames (two of them identical) played three times."""
    from tests.conftest import SAMPLE_CLIP

    if not SAMPLE_CLIP.is_file():
        pytest.skip(f"sample clip missing: {SAMPLE_CLIP}")
    frames = frames_from_video(SAMPLE_CLIP, 30, CONTRACT)
    assert 8 <= len(frames) <= 10, frames.note
    assert "near-duplicates skipped" in frames.note
    thumbs = [_thumb(f.pixels) for f in frames.frames]
    for i in range(len(thumbs)):
        for j in range(i):
            assert np.abs(thumbs[i] - thumbs[j]).mean() >= DUPLICATE_DIFF * 0.5  # thumbnails at 64x64 differ a bit


def test_split_source_uses_the_train_split_and_masks(pairs_dir: Path) -> None:
    from polyp_live.train.data import find_pairs, make_split

    split = make_split(find_pairs(pairs_dir), (0.6, 0.2, 0.2), 0)
    train = frames_from_split(pairs_dir, "train", None, 5, CONTRACT)
    val = frames_from_split(pairs_dir, "val", None, 5, CONTRACT, with_masks=True)
    assert {f.name for f in train.frames} <= set(split.train)
    assert {f.name for f in val.frames} <= set(split.val)
    assert all(f.mask is None for f in train.frames)
    assert all(f.mask is not None and f.mask.shape == (64, 64) and set(np.unique(f.mask)) <= {0, 1} for f in val.frames)


def test_masked_frames_pair_images_and_masks(pairs_dir: Path, tmp_path: Path) -> None:
    frames = masked_frames(pairs_dir, 4, CONTRACT)
    assert len(frames) == 4 and all(f.mask is not None and f.mask.any() for f in frames.frames)
    with pytest.raises(CalibrationError, match="must hold images/ and masks/"):
        masked_frames(tmp_path, 4, CONTRACT)


def test_unreadable_image_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CalibrationError, match=r"cannot read image .*broken\.jpg"):
        frames_from_images(tmp_path, 4, CONTRACT)


def test_missing_video_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="video not found"):
        frames_from_video(tmp_path / "nope.mp4", 4, CONTRACT)
    with pytest.raises(CalibrationError, match="image folder not found"):
        frames_from_images(tmp_path / "nope", 4, CONTRACT)


# ----------------------------------------------------------------------------- --keep-float


@pytest.fixture(scope="module")
def prepared(atto_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from polyp_live.calibration.quantize import prepare_model
    from polyp_live.engines.onnx_export import export_onnx

    work = tmp_path_factory.mktemp("keepfloat")
    fp32 = export_onnx(atto_checkpoint, work / "fp32.onnx", verify=False).path
    return prepare_model(fp32, work / "prepared.onnx")


@pytest.fixture(scope="module")
def exported(prepared: Path):
    import onnx

    return onnx.load(str(prepared))


def test_percentile_ranges_lie_inside_minmax_ranges(prepared: Path, pairs_dir: Path) -> None:
    """MinMax covers every value seen; the 99.999th percentile clips outliers, so it lies inside."""
    from polyp_live.calibration.quantize import compute_ranges

    frames = frames_from_images(pairs_dir, 16, CONTRACT, seed=5).pixels()
    minmax = compute_ranges(prepared, frames, CONTRACT, "minmax", progress=False)
    percentile = compute_ranges(prepared, frames, CONTRACT, "percentile", progress=False)
    assert minmax.samples == percentile.samples == 16
    shared = set(minmax.ranges) & set(percentile.ranges)
    assert len(shared) > 100
    tol = 1e-5
    for name in shared:
        (lo_m, hi_m), (lo_p, hi_p) = minmax.ranges[name], percentile.ranges[name]
        assert lo_m - tol <= lo_p <= hi_p <= hi_m + tol, name
    assert any(hi_p < hi_m - 1e-3 for (_, hi_p), (_, hi_m) in
               ((percentile.ranges[n], minmax.ranges[n]) for n in shared)), "percentile clipped nothing"


def test_keep_float_groups_found_by_structure(exported) -> None:
    nodes = list(exported.graph.node)
    chosen = select_keep_float(exported, parse_keep_float("first-conv,head,layernorm,ConvTranspose"))
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert chosen["first-conv"] == (convs[0].name,) and convs[0].input[0] == exported.graph.input[0].name
    assert chosen["head"][0] == convs[-1].name
    by_name = {n.name: n for n in nodes}
    assert exported.graph.output[0].name in by_name[chosen["head"][-1]].output  # up to the logits
    assert {by_name[n].op_type for n in chosen["layernorm"]} == {"LayerNormalization"}
    assert len(chosen["ConvTranspose"]) == 4
    assert parse_keep_float("none") == () and parse_keep_float("") == ()


def test_keep_float_unknown_name_is_refused(exported) -> None:
    with pytest.raises(CalibrationError, match="matches no node"):
        select_keep_float(exported, ["no-such-layer"])


# ----------------------------------------------------------------------------- cache policy


def _key(**changes: object) -> CacheKey:
    base = {"model_sha256": model_key("a" * 64, (64, 64)), "data_fingerprint": "d" * 64, "method": "entropy",
            "samples": 16, "model": "PEFNet-atto 64x64"}
    base.update(changes)
    return CacheKey(**base)  # type: ignore[arg-type]


def test_cache_round_trip_and_policy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.json"
    ranges = TensorRanges("entropy", 16, {"x": (-1.5, 2.25), "y": (0.0, 6.0)})
    save_cache(path, _key(), ranges)
    assert load_cache(path, _key(), explicit=True) == ranges
    assert load_cache(path, _key(data_fingerprint="e" * 64), explicit=True) is None  # stale data: recompute
    assert load_cache(path, _key(method="minmax"), explicit=True) is None
    other = _key(model_sha256=model_key("b" * 64, (64, 64)))
    with pytest.raises(CalibrationError, match="another model"):
        load_cache(path, other, explicit=True)
    with caplog.at_level(logging.WARNING):
        assert load_cache(path, other, explicit=False) is None
    assert "another model" in caplog.text
    assert model_key("a" * 64, (64, 64)) != model_key("a" * 64, (96, 96))


def test_malformed_cache_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_cache(path, _key(), explicit=True)
    save_cache(path, _key(), TensorRanges("entropy", 16, {"x": (0.0, 1.0)}))
    data = json.loads(path.read_text())
    data["ranges"]["x"] = [0.0]
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="malformed"):
        load_cache(path, _key(), explicit=True)


# ----------------------------------------------------------------------------- metrics


def test_dice_and_iou_by_hand() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert dice_iou(a, b) == (1.0, 1.0)
    a[0, :2] = True  # 2 pixels
    b[0, 1:4] = True  # 3 pixels, 1 shared
    dice, iou = dice_iou(a, b)
    assert dice == pytest.approx(2 * 1 / 5) and iou == pytest.approx(1 / 4)


def test_data_split_calibrates_on_train_and_evaluates_on_val_with_masks(kvasir_dir: Path) -> None:
    from polyp_live.calibration.pipeline import CalibrationConfig, SourceSpec, _split_frames
    from polyp_live.train.data import load_split
    from polyp_live.train.zoo import WEIGHTS_DIR

    split_file = WEIGHTS_DIR.parent / "splits" / "kvasir_seg_600_200.json"
    if not split_file.is_file():
        pytest.skip(f"committed split missing: {split_file}")
    split = load_split(split_file)
    config = CalibrationConfig(checkpoint="unused", out=Path("unused.onnx"), samples=16, eval_samples=4,
                               source=SourceSpec("data", kvasir_dir, "train", split_file))
    calib, evaluation, notes = _split_frames(config, CONTRACT)
    assert len(calib) == 16 and {f.name for f in calib.frames} <= set(split.train)
    assert all(f.mask is None for f in calib.frames)
    assert len(evaluation) == 4 and {f.name for f in evaluation.frames} <= set(split.val)
    assert all(f.mask is not None for f in evaluation.frames) and "val split" in notes[0]
