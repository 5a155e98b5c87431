"""Checks on output paths, made before anything is opened: writable, never an input, never each other.

Every output is a local file (:func:`polyp_live.train.media_paths.local_path`; the MP4 writer hands FFmpeg
``file:/abs/path``, so ``--output file:case.mp4`` is the file named ``file:case.mp4``, not ``case.mp4``).
Two outputs that name the same file (``--output x.mp4 --jsonl x.mp4``, ``--jsonl x --stats x``, a file
output that is the masks folder or one of its mask PNGs) would silently overwrite each other and are refused.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from polyp_live.realtime.errors import OutputError
from polyp_live.train.media_paths import local_path, url_scheme

VIDEO_SUFFIX = ".mp4"  # what the H.264 writer produces; a name without a suffix (/dev/full, a FIFO) gets MP4 too
MASK_PATTERN = re.compile(r"frame_\d{6,}\.png")
SEGMENT_DIGITS = 3  # --segment-minutes: rec.mp4 -> rec_000.mp4, rec_001.mp4, ... (more digits past 999)


def mask_name(index: int) -> str:
    """The file name of frame ``index``'s mask PNG inside ``--masks DIR``."""
    return f"frame_{index:06d}.png"


def segment_path(path: str | Path, index: int) -> Path:
    """Segment ``index`` (0-based) of the recording ``path``: ``rec.mp4`` -> ``rec_000.mp4`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}_{index:0{SEGMENT_DIGITS}d}{path.suffix or VIDEO_SUFFIX}")


def is_segment_of(candidate: str | Path, path: str | Path) -> bool:
    """``candidate`` is (or would be) one of the segment files of the recording ``path``."""
    candidate, path = local_path(candidate), local_path(path)
    pattern = re.compile(re.escape(path.stem) + rf"_\d{{{SEGMENT_DIGITS},}}" + re.escape(path.suffix or VIDEO_SUFFIX))
    return _same(candidate.parent, path.parent) and pattern.fullmatch(candidate.name) is not None


def check_segment_outputs(path: str | Path, others: Sequence[tuple[str, str]],
                          inputs: Sequence[str | Path] = ()) -> None:
    """``--segment-minutes``: no segment of ``path`` may be an input or another output (``(flag, path)``)."""
    for item in inputs:
        if is_segment_of(item, path) or is_segment_of(os.path.realpath(item), path):  # also through a symlink
            raise OutputError(f"refusing to overwrite the input {item}: it is named like a segment of "
                              f"--output {path}; choose another output path")
    for flag, text in others:
        if is_segment_of(text, path):
            raise OutputError(f"{flag} {text} collides with the segment files of --output {path} "
                              f"({segment_path(path, 0).name}, ...); give it another name")


def check_video_suffix(path: str | Path) -> None:
    """The video writer makes H.264 MP4 only: any other suffix (``.webm``, ``.mkv``, ``.avi``) is refused."""
    suffix = Path(path).suffix.lower()
    if suffix and suffix != VIDEO_SUFFIX:
        raise OutputError(f"cannot write {path}: the annotated video is H.264 in an MP4 container; give a "
                          f"{VIDEO_SUFFIX} name ({suffix} and other containers such as WebM or MKV are not supported)")


def _same(a: Path, b: Path) -> bool:
    """The same file: equal after resolving symlinks, or (both existing) one inode under two names."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def check_output_path(path: str | Path, inputs: Sequence[str | Path] = (), *, folder: bool = False) -> Path:
    """Fail early, with one line, if ``path`` cannot be written or is one of the local ``inputs``."""
    if url_scheme(str(path)) is not None and not Path(path).exists():
        raise OutputError(f"cannot write {path}: outputs are local files, not URLs")
    path = Path(path)
    # samefile: the same file under any spelling, through a symlink or a hard link; abspath also folds
    # 'new/..' (a folder that mkdir would create first, so the path itself does not exist yet)
    target = local_path(path)
    for item in inputs:
        if Path(item).exists() and _same(target, Path(item)):
            raise OutputError(f"refusing to overwrite the input {item}; choose another output path")
    if folder:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {path}: {exc.strerror}") from None
        if not os.access(path, os.W_OK):
            raise OutputError(f"cannot write into {path}: permission denied")
        return path
    if path.is_dir():
        raise OutputError(f"output {path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        why = "is a file, not a folder" if parent.exists() else "does not exist"
        raise OutputError(f"cannot write {path}: folder {parent} {why}")
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {path}: permission denied")
    return path


def check_distinct_outputs(files: Sequence[tuple[str, str]], masks: str | None = None) -> None:
    """``files``: ``(flag, path)`` of the file outputs. No two name the same file; none is the masks folder
    or a mask PNG inside it."""
    seen: list[tuple[str, str, Path]] = []
    for flag, text in files:
        path = local_path(text)
        for other_flag, other_text, other in seen:
            if _same(path, other):
                raise OutputError(f"{other_flag} {other_text} and {flag} {text} name the same file; "
                                  "give each output its own path")
        seen.append((flag, text, path))
    if masks is None:
        return
    folder = local_path(masks)
    for flag, text, path in seen:
        if _same(path, folder) or (_same(path.parent, folder) and MASK_PATTERN.fullmatch(path.name)):
            raise OutputError(f"{flag} {text} collides with the mask PNGs of --masks {masks}; "
                              "give it a path outside that folder's frame_NNNNNN.png names")


def write_text_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` under a temporary name beside it, then renamed: the path holds the whole file or
    what it held before, never a half-written one (a run killed mid-way, two writers)."""
    tmp = path.with_name(f".{path.name}.partial-{secrets.token_hex(4)}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
