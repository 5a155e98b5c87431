"""Calibration frame sources: an image folder, a video, or a dataset split.

Every source returns a :class:`FrameSet` of :class:`CalibrationFrame` s whose pixels are RGB
``uint8`` already resized to the model's input size with :func:`polyp_live.train.preprocess.resize_frame`.
Resizing first keeps hundreds of frames small in memory and changes nothing downstream:
:func:`polyp_live.train.preprocess.preprocess` of a frame at the input size skips the resize, so the
calibration inputs are exactly what the runtime feeds the model.

* Images: a seeded random sample of the folder (``DIR`` or ``DIR/images``).
* Video: frames spread over the whole clip (every k-th frame, k from the frame count), decoded with
  PyAV; near-duplicates (mean absolute difference of 32x32 grey thumbnails below
  :data:`DUPLICATE_DIFF` against any frame already kept) are skipped, so a looped or frozen clip does
  not weigh its repeated frames twice.
* Dataset split: the train package's split tools when present, else a seeded sample of the folder.

Verified in ``tests/test_calibration_frames.py`` on the real Kvasir-SEG images and the CVC-ClinicDB
and 1080p clips.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.calibration.errors import CalibrationError
from polyp_live.train.contract import ModelContract
from polyp_live.train.media_paths import ffmpeg_local
from polyp_live.train.preprocess import binarize_mask, plan_frame, resize_frame, resize_mask_planned

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DUPLICATE_DIFF = 1.0  # grey levels (0-255), mean absolute difference of 32x32 thumbnails; real motion is >= 1.5
_THUMB = 32


@dataclass(frozen=True)
class CalibrationFrame:
    """One frame at the model's input size: RGB ``uint8`` ``(h, w, 3)``, optional ``{0, 1}`` mask ``(h, w)``."""

    name: str
    pixels: np.ndarray
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class FrameSet:
    """Frames from one source, with a description of how they were chosen."""

    source: str
    frames: tuple[CalibrationFrame, ...]
    note: str = ""

    def __len__(self) -> int:
        return len(self.frames)

    def pixels(self) -> list[np.ndarray]:
        return [frame.pixels for frame in self.frames]

    def fingerprint(self) -> str:
        """SHA-256 of the frame names and pixels: equal exactly when the calibration inputs are equal."""
        digest = hashlib.sha256()
        for frame in self.frames:
            digest.update(frame.name.encode("utf-8"))
            digest.update(np.ascontiguousarray(frame.pixels).tobytes())
        return digest.hexdigest()

    def subset(self, start: int, stop: int | None = None) -> FrameSet:
        return FrameSet(self.source, self.frames[start:stop], self.note)


def read_rgb(path: Path) -> np.ndarray:
    """An image file -> RGB ``uint8``; unreadable files raise :class:`CalibrationError`."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise CalibrationError(f"cannot read image {path}: not a readable image file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_images(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` (or in ``folder/images`` when the folder itself holds none), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"image folder not found: {folder}")
    for candidate in (folder, folder / "images"):
        if candidate.is_dir():
            files = sorted(p for p in candidate.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                return files
    raise CalibrationError(
        f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)} files there and in {folder / 'images'})"
    )


def seeded_sample(paths: Sequence[Path], count: int, seed: int) -> list[Path]:
    """Up to ``count`` of ``paths`` chosen at random with a fixed seed (the order is part of the sample)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(paths))[: max(0, count)]
    return [paths[i] for i in order]


def frames_from_images(folder: str | Path, count: int, contract: ModelContract, *, seed: int = 0) -> FrameSet:
    """A seeded sample of ``count`` images from a folder, resized to the model's input size."""
    paths = seeded_sample(list_images(folder), count, seed)
    frames = tuple(CalibrationFrame(p.name, resize_frame(read_rgb(p), contract)) for p in paths)
    return FrameSet(f"images {folder}", frames, f"seeded sample (seed {seed}) of {len(frames)} images")


def frames_from_video(
    path: str | Path, count: int, contract: ModelContract, *, min_diff: float = DUPLICATE_DIFF
) -> FrameSet:
    """About ``count`` frames spread over the whole clip, near-duplicates skipped."""
    import av

    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"video not found: {path}")
    try:
        container = av.open(ffmpeg_local(path))  # the local file, never an FFmpeg protocol ('file:x', 'a:b')
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read video {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise CalibrationError(f"cannot read video {path}: it has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = _frame_count(stream)
        step = max(1, total // max(1, count)) if total else 1
        try:
            frames, seen, skipped = _decode_spread(container, stream, path.name, step, count, contract, min_diff)
        except (av.error.FFmpegError, OSError) as exc:
            raise CalibrationError(f"cannot decode video {path}: {exc}") from None
    if seen == 0:
        raise CalibrationError(f"cannot read video {path}: no frame could be decoded")
    note = (
        f"one frame in {step} of {seen} decoded frames, {skipped} near-duplicates skipped "
        f"(thumbnail difference < {min_diff} grey levels)"
    )
    logger.info("video %s: %s -> %d frames", path.name, note, len(frames))
    return FrameSet(f"video {path}", tuple(frames), note)


def _frame_count(stream: object) -> int:
    frames = int(getattr(stream, "frames", 0) or 0)
    if frames > 0:
        return frames
    duration, time_base, rate = stream.duration, stream.time_base, stream.average_rate  # type: ignore[attr-defined]
    if duration and time_base and rate:
        return int(float(duration * time_base) * float(rate))
    return 0


def _decode_spread(
    container: object, stream: object, name: str, step: int, count: int, contract: ModelContract, min_diff: float
) -> tuple[list[CalibrationFrame], int, int]:
    kept: list[CalibrationFrame] = []
    thumbs: list[np.ndarray] = []
    seen = skipped = 0
    for index, frame in enumerate(container.decode(stream)):  # type: ignore[attr-defined]
        seen = index + 1
        if index % step or len(kept) >= count:
            continue
        rgb = frame.to_ndarray(format="rgb24")
        thumb = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (_THUMB, _THUMB), interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.float32)
        if thumbs and float(np.abs(np.stack(thumbs) - thumb).mean(axis=(1, 2)).min()) < min_diff:
            skipped += 1
            continue
        thumbs.append(thumb)
        kept.append(CalibrationFrame(f"{name}#frame={index}", resize_frame(rgb, contract)))
    return kept, seen, skipped


def mask_path_for(image: Path, masks_dir: Path) -> Path | None:
    """The mask of ``image`` in ``masks_dir``: same stem, any image suffix."""
    for suffix in (image.suffix, *IMAGE_SUFFIXES):
        candidate = masks_dir / (image.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def masked_frames(folder: str | Path, count: int, contract: ModelContract, *, seed: int = 0) -> FrameSet:
    """A seeded sample of image/mask pairs from ``folder/images`` and ``folder/masks`` (for the accuracy report)."""
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise CalibrationError(f"evaluation data {folder} must hold images/ and masks/ folders")
    pairs = [(p, mask_path_for(p, masks_dir)) for p in list_images(images_dir)]
    missing = [p.name for p, m in pairs if m is None]
    if missing:
        raise CalibrationError(f"{len(missing)} images in {images_dir} have no mask in {masks_dir}, e.g. {missing[0]}")
    chosen = seeded_sample([p for p, _ in pairs], count, seed)
    frames = tuple(_masked_frame(p, mask_path_for(p, masks_dir), contract) for p in chosen)
    return FrameSet(f"images+masks {folder}", frames, f"seeded sample (seed {seed}) of {len(frames)} pairs")


def _masked_frame(image: Path, mask_path: Path | None, contract: ModelContract) -> CalibrationFrame:
    data = np.fromfile(str(mask_path), dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if pixels is None:
        raise CalibrationError(f"cannot read mask {mask_path}: not a readable image file")
    rgb = read_rgb(image)
    plan = plan_frame(rgb, contract)  # the image's own crop and letterbox, for the mask too
    mask = resize_mask_planned(binarize_mask(pixels[..., :3] if pixels.ndim == 3 else pixels), plan)
    return CalibrationFrame(image.name, resize_frame(rgb, contract, plan), mask)


def frames_from_split(
    data: str | Path,
    split: str,
    split_file: str | Path | None,
    count: int,
    contract: ModelContract,
    *,
    seed: int = 0,
    with_masks: bool = False,
) -> FrameSet:
    """A seeded sample of one part of a dataset split (:mod:`polyp_live.train.data`), with masks if asked.

    Without ``split_file`` the split is the one ``polyp-train`` makes by default (60/20/20, seed 0),
    so ``--split train`` calibrates on the training images of a default training run.
    """
    from polyp_live.train.data import find_pairs, load_split, make_split, read_pair, select

    pairs = find_pairs(data)
    parts = load_split(split_file) if split_file is not None else make_split(pairs, (0.6, 0.2, 0.2), 0)
    chosen = select(pairs, parts, split, split_path=split_file or "default split")
    if not chosen:
        return FrameSet(f"{split} split of {data}", (), "empty split")
    order = np.random.default_rng(seed).permutation(len(chosen))[: max(0, count)]
    frames = []
    for i in order:
        image, mask = read_pair(chosen[i])
        plan = plan_frame(image, contract)
        resized_mask = resize_mask_planned(mask, plan) if with_masks else None
        frames.append(CalibrationFrame(chosen[i].key, resize_frame(image, contract, plan), resized_mask))
    origin = f"split file {split_file}" if split_file is not None else "default 60/20/20 split, seed 0"
    note = f"seeded sample (seed {seed}) of {len(frames)} of the {len(chosen)} {split} pairs ({origin})"
    return FrameSet(f"{split} split of {data}", tuple(frames), note)


def frames_from_mix(mix_file: str | Path, root: str | Path | None, part: str, count: int, contract: ModelContract, *,
                    seed: int = 0, with_masks: bool = False) -> FrameSet:
    """A seeded sample of one part (``train`` or ``val``) of every data set of a training mix
    (:mod:`polyp_live.train.mix`), polyp-free frames included (empty masks), each data set in proportion to its
    size; frames and masks through the contract's geometry."""
    from polyp_live.train.data import read_pair
    from polyp_live.train.media_paths import shared_data_dir
    from polyp_live.train.mix import load_mix

    mix = load_mix(mix_file)
    folder = Path(root) if root is not None else shared_data_dir()
    pools = [(p.name, p.select(folder, part)) for p in mix.parts]
    total = sum(len(pairs) for _, pairs in pools)
    rng = np.random.default_rng(seed)
    frames, parts = [], []
    for name, pairs in pools:
        take = min(len(pairs), max(1, round(count * len(pairs) / max(total, 1))))
        parts.append(f"{take} {name}")
        for i in sorted(rng.permutation(len(pairs))[:take]):
            image, mask = read_pair(pairs[i])
            plan = plan_frame(image, contract)
            frames.append(CalibrationFrame(f"{name}/{pairs[i].key}", resize_frame(image, contract, plan),
                                           resize_mask_planned(mask, plan) if with_masks else None))
    note = f"seeded sample (seed {seed}) of the {part} parts of {Path(mix_file).name}: {', '.join(parts)}"
    return FrameSet(f"{part} parts of mix {Path(mix_file).name}", tuple(frames), note)
