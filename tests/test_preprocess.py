"""The GPU preprocessing path (torch) feeds the model the same pixels as the OpenCV path."""

from __future__ import annotations

import glob

import cv2
import numpy as np
import pytest
import torch

from polyp_live.train.contract import ModelContract
from polyp_live.train.preprocess import preprocess, preprocess_batch, preprocess_torch, resize_weights
from tests.conftest import CVC, HOLOHUB, KVASIR
from tests.media import tissue_frames


def real_frames() -> list[np.ndarray]:
    """One 1080p, one CVC-ClinicDB and three Kvasir-SEG frame when the real data is present (generated
    colonoscopy-like frames of those sizes otherwise), plus two random frames of odd sizes."""
    files = sorted(glob.glob(str(HOLOHUB / "*.png")))[:1] + sorted(glob.glob(str(CVC / "seq01/images/*")))[:1]
    files += sorted(glob.glob(str(KVASIR / "images/*")))[:3]
    frames = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files]
    if not files:
        sizes = [(1920, 1080), (384, 288), (622, 529), (1350, 1064), (332, 487)]
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC)
                  for f, size in zip(tissue_frames(5, seed=2), sizes, strict=True)]
    rng = np.random.default_rng(1)  # plus odd sizes, up and down, so every resize branch is exercised
    frames += [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in ((288, 384, 3), (300, 200, 3))]
    return frames


@pytest.mark.parametrize("mode", ["area", "linear"])
@pytest.mark.parametrize("size", [(256, 256), (352, 352), (320, 256)])
def test_torch_preprocessing_matches_opencv(mode: str, size: tuple[int, int]) -> None:
    contract = ModelContract("atto", size, resize=mode)
    for frame in real_frames():
        expected = preprocess(frame, contract)
        got = preprocess_torch(torch.from_numpy(frame)[None], contract)[0].numpy()
        grey_levels = np.abs(expected - got) * 127.5
        assert grey_levels.max() <= 1.0 + 1e-3, (frame.shape, float(grey_levels.max()))
        # shrinking with INTER_AREA is an exact weighted sum; two-tap resampling (INTER_LINEAR, and
        # INTER_AREA when an axis grows) uses OpenCV's 11-bit fixed-point weights, which round some
        # pixels the other way
        shrinks = frame.shape[0] >= size[0] and frame.shape[1] >= size[1]
        limit = 1e-3 if mode == "area" and shrinks else 0.2
        assert (grey_levels > 1e-3).mean() <= limit


@pytest.mark.parametrize(("n_in", "n_out"), [(1920, 256), (288, 352), (384, 352), (7, 3)])
@pytest.mark.parametrize("mode", ["area", "area-up", "linear"])
def test_resize_weights_rows_sum_to_one(n_in: int, n_out: int, mode: str) -> None:
    weights = resize_weights(n_in, n_out, mode)
    assert weights.shape == (n_out, n_in)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert (weights >= 0).all()


def test_batch_equals_single_frames() -> None:
    contract = ModelContract("atto", (64, 96))
    frames = real_frames()[:3]
    assert len({f.shape for f in frames}) == 3  # three sizes: each frame is resized on its own
    batch = preprocess_batch(frames, contract)
    assert batch.shape == (3, 3, 64, 96) and batch.dtype == np.float32
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(batch[i], preprocess(frame, contract))
    assert batch.min() >= -1.0 and batch.max() <= 1.0


@pytest.mark.parametrize("mode", ["area", "linear"])
def test_torch_preprocessing_crops_and_letterboxes_as_the_cpu_path(mode: str) -> None:
    """With the field-of-view crop and the letterbox (the GPU engines' path, run here on CPU tensors): the same
    pixels as the OpenCV path, padding included, for frames whose plans differ within one batch."""
    from polyp_live.train.preprocess import plan_frame

    contract = ModelContract("atto", (256, 256), resize=mode, field_of_view=True, keep_aspect=True)
    frames = real_frames()
    for frame in frames:
        plan = plan_frame(frame, contract)
        expected = preprocess(frame, contract, plan)
        got = preprocess_torch(torch.from_numpy(frame)[None], contract, plans=[plan])[0].numpy()
        grey_levels = np.abs(expected - got) * 127.5
        assert grey_levels.max() <= 1.0 + 1e-3, (frame.shape, plan, float(grey_levels.max()))
        (top, left), _ = plan.offset, plan.size
        assert np.allclose(got[:, :top, :], -1.0) and np.allclose(got[:, :, :left], -1.0)  # black padding
    same = [frames[0], frames[0][::-1].copy()]
    plans = [plan_frame(f, contract) for f in same]
    batch = preprocess_torch(torch.from_numpy(np.stack(same)), contract, plans=plans).numpy()
    assert np.abs(batch - preprocess_batch(same, contract, plans)).max() * 127.5 <= 1.0 + 1e-3
