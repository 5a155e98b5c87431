"""On-device augmentation: image and mask stay aligned, the geometry is exact, cutout touches the image only."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyp_live.train.augment import NO_AUGMENT, AugmentConfig, augment_batch
from tests.train_helpers import torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield

STRONG = AugmentConfig(crop_scale=(0.6, 1.0), rotate_deg=45.0, rotate_p=1.0, flip_p=0.5, distort=0.4, distort_p=1.0,
                       cutout_p=0.0)


def _shapes(seed: int, n: int, side: int) -> np.ndarray:
    """``(n, side, side)`` masks of random filled ellipses and rectangles, values 0/255."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, side, side), np.uint8)
    for mask in masks:
        for _ in range(int(rng.integers(1, 4))):
            c = (int(rng.integers(0, side)), int(rng.integers(0, side)))
            if rng.random() < 0.5:
                axes = (int(rng.integers(4, side // 3)), int(rng.integers(4, side // 3)))
                cv2.ellipse(mask, c, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
            else:
                cv2.rectangle(mask, c, (c[0] + int(rng.integers(6, side // 2)), c[1] + int(rng.integers(6, side // 2))),
                              255, -1)
    return masks


def _encoded_images(masks: np.ndarray, seed: int) -> np.ndarray:
    """Images whose red channel IS the mask (255 inside), with noise in green and blue."""
    rng = np.random.default_rng(seed + 1)
    images = rng.integers(0, 256, (*masks.shape, 3), dtype=np.uint8)
    images[..., 0] = masks
    return images


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), side=st.sampled_from([64, 80, 96]), out=st.sampled_from([32, 64, 96]))
def test_augmentation_keeps_image_and_mask_aligned(seed: int, side: int, out: int) -> None:
    masks = _shapes(seed, 4, side)
    images = _encoded_images(masks, seed)
    gen = torch.Generator().manual_seed(seed)
    aug_images, aug_masks = augment_batch(torch.from_numpy(images), torch.from_numpy(masks), (out, out), STRONG, gen)
    assert aug_images.shape == (4, out, out, 3) and aug_images.dtype == torch.uint8
    assert aug_masks.shape == (4, 1, out, out) and set(aug_masks.unique().tolist()) <= {0.0, 1.0}
    from_image = aug_images[..., 0].numpy() >= 128
    from_mask = aug_masks[:, 0].numpy() > 0.5
    for i in range(4):
        # compare away from edges: pixels whose 3x3 neighbourhood is uniform in the image-derived mask
        m = from_image[i].astype(np.uint8)
        interior = cv2.erode(m, np.ones((3, 3), np.uint8)) == cv2.dilate(m, np.ones((3, 3), np.uint8))
        agree = (from_image[i] == from_mask[i])[interior]
        assert agree.size == 0 or agree.mean() >= 0.99


def test_no_augment_at_the_same_size_is_the_identity() -> None:
    masks = _shapes(3, 2, 64)
    images = _encoded_images(masks, 3)
    aug_images, aug_masks = augment_batch(torch.from_numpy(images), torch.from_numpy(masks), (64, 64), NO_AUGMENT)
    assert torch.equal(aug_images, torch.from_numpy(images))
    assert torch.equal(aug_masks[:, 0] > 0.5, torch.from_numpy(masks) > 127)


def test_flips_flip_both() -> None:
    masks = _shapes(4, 1, 64)
    images = _encoded_images(masks, 4)
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), rotate_p=0.0, flip_p=1.0, distort_p=0.0, cutout_p=0.0)
    aug_images, aug_masks = augment_batch(torch.from_numpy(images), torch.from_numpy(masks), (64, 64), cfg)
    assert torch.equal(aug_images[0], torch.from_numpy(images[0]).flip(0).flip(1))
    assert torch.equal(aug_masks[0, 0] > 0.5, torch.from_numpy(masks[0] > 127).flip(0).flip(1))


def test_resize_only_matches_a_plain_resize() -> None:
    masks = _shapes(5, 1, 128)
    images = _encoded_images(masks, 5)
    aug_images, _ = augment_batch(torch.from_numpy(images), torch.from_numpy(masks), (64, 64), NO_AUGMENT)
    reference = cv2.resize(images[0], (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(aug_images[0].numpy().astype(int) - reference.astype(int)).max() <= 1


def test_cutout_zeroes_the_image_only() -> None:
    masks = _shapes(6, 8, 64)
    images = np.full((8, 64, 64, 3), 200, np.uint8)
    with_cutout = AugmentConfig(cutout_p=1.0, cutout_holes=3, cutout_size=0.3)
    without = AugmentConfig(cutout_p=0.0, cutout_holes=3, cutout_size=0.3)
    a_img, a_mask = augment_batch(torch.from_numpy(images), torch.from_numpy(masks), (64, 64), with_cutout,
                                  torch.Generator().manual_seed(9))
    b_img, b_mask = augment_batch(torch.from_numpy(images), torch.from_numpy(masks), (64, 64), without,
                                  torch.Generator().manual_seed(9))
    assert torch.equal(a_mask, b_mask)  # same geometry, mask untouched by cutout
    changed = (a_img != b_img).any(dim=-1)
    assert bool(changed.any(dim=(1, 2)).all())  # every image got holes
    assert bool((a_img[changed] == 0).all())  # holes are black, nothing else changed


def test_seeded_generator_is_deterministic_and_bad_input_is_refused() -> None:
    masks = torch.from_numpy(_shapes(7, 2, 64))
    images = torch.from_numpy(_encoded_images(_shapes(7, 2, 64), 7))
    a = augment_batch(images, masks, (32, 32), AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(images, masks, (32, 32), AugmentConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(images.float(), masks, (32, 32), AugmentConfig())
    with pytest.raises(ValueError, match="do not match"):
        augment_batch(images, masks[:, :32], (32, 32), AugmentConfig())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_the_alignment_property() -> None:
    masks = _shapes(8, 4, 96)
    images = _encoded_images(masks, 8)
    dev = torch.device("cuda")
    aug_images, aug_masks = augment_batch(torch.from_numpy(images).to(dev), torch.from_numpy(masks).to(dev), (64, 64),
                                          STRONG, torch.Generator(device=dev).manual_seed(0))
    agree = ((aug_images[..., 0] >= 128) == (aug_masks[:, 0] > 0.5)).float().mean()
    assert float(agree) >= 0.99


def test_colour_jitter_changes_the_image_only() -> None:

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(30, 220, (6, 32, 32, 3), dtype=torch.uint8)
    masks = (torch.rand(6, 32, 32) > 0.5).to(torch.uint8) * 255
    plain_img, plain_mask = augment_batch(images, masks, (32, 32), NO_AUGMENT, gen)
    cfg = dataclasses.replace(NO_AUGMENT, color_jitter=0.3, color_p=1.0)
    jit_img, jit_mask = augment_batch(images, masks, (32, 32), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(plain_img, images) and torch.equal(jit_mask, plain_mask)
    changed = (jit_img.float() - images.float()).abs().mean(dim=(1, 2, 3))
    assert bool((changed > 1.0).all())
    assert "colour jitter" in cfg.describe() and "colour" not in NO_AUGMENT.describe()


def test_white_balance_moves_the_hue_and_leaves_the_mask() -> None:
    """Per-channel gains change the ratio between channels (a colour cast, unlike the jitter), within the range."""
    images = torch.full((8, 16, 16, 3), 100, dtype=torch.uint8)
    masks = (torch.rand(8, 16, 16) > 0.5).to(torch.uint8) * 255
    _, plain_mask = augment_batch(images, masks, (16, 16), NO_AUGMENT, torch.Generator().manual_seed(1))
    cfg = dataclasses.replace(NO_AUGMENT, white_balance=0.2, color_p=1.0)
    out, out_mask = augment_batch(images, masks, (16, 16), cfg, torch.Generator().manual_seed(1))
    assert torch.equal(out_mask, plain_mask)
    channel_means = out.float().mean(dim=(1, 2))  # (8, 3)
    assert bool((channel_means >= 80 - 1e-3).all()) and bool((channel_means <= 120 + 1e-3).all())
    casts = (channel_means.max(dim=1).values - channel_means.min(dim=1).values)
    assert bool((casts > 1.0).all())  # every sample got a cast: R, G, B no longer equal
    assert bool((out[:, 0, 0] == out[:, 7, 9]).all())  # one gain per channel and sample, not per pixel
    assert "white balance" in cfg.describe()
