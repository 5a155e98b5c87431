"""On-disk cache of ONNX exports, so a checkpoint on a CPU machine runs on ONNX Runtime.

``$POLYP_LIVE_CACHE`` or ``~/.cache/polyp-live``; files are ``onnx/<sha256[:16]>-<h>x<w>-<precision>.onnx``
keyed by the checkpoint weights' SHA-256 and the input size. A cached file is only reused if its
metadata names the same weights hash and contract; exports go to a temporary name first, so two
processes exporting at once never see a half-written file. The temporary file is removed on every exit
path: by ``finally`` on errors and Ctrl+C, and, where no handler runs (SIGKILL, the OOM killer), by the
next export, which removes partial files of processes that are gone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_live.engines.onnx_export import export_onnx
from polyp_live.engines.onnx_format import read_onnx_metadata
from polyp_live.engines.onnx_passes import GRAPH_PASSES
from polyp_live.train.contract import ModelContract
from polyp_live.train.errors import PolypLiveError

if TYPE_CHECKING:
    from polyp_live.train.checkpoint import CheckpointInfo

logger = logging.getLogger(__name__)

CACHE_ENV = "POLYP_LIVE_CACHE"
CACHE_MAX_BATCH = 16
PARTIAL_SUFFIX = ".partial.onnx"  # NAME.PID.partial.onnx while an export is written


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "polyp-live")


def _checkpoint_info(checkpoint: str | Path | CheckpointInfo) -> CheckpointInfo:
    from polyp_live.train.checkpoint import CheckpointInfo, read_checkpoint

    return checkpoint if isinstance(checkpoint, CheckpointInfo) else read_checkpoint(checkpoint)


def cached_onnx(
    checkpoint: str | Path | CheckpointInfo, *, size: int | tuple[int, int] | None = None, precision: str = "fp32"
) -> Path:
    """The checkpoint (a path, or a :class:`~polyp_live.train.checkpoint.CheckpointInfo` already read) exported to ONNX
    (dynamic batch 1..16), exporting and verifying it on first use."""
    info = _checkpoint_info(checkpoint)
    contract = info.contract
    if size is not None:
        contract = contract.with_size(*(size if isinstance(size, tuple) else (size, size)))
    h, w = contract.input_size
    path = cache_dir() / "onnx" / f"{info.weights_sha256[:16]}-{h}x{w}-{precision}.onnx"
    if _still_valid(path, info.weights_sha256, contract):
        logger.info("using cached ONNX export %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path.parent)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}{PARTIAL_SUFFIX}")
    logger.info("exporting %s to the ONNX cache (%s, %dx%d); this happens once", info.weights_path, precision, h, w)
    try:
        export_onnx(info, tmp, precision=precision, size=(h, w), dynamic_batch=(1, 1, CACHE_MAX_BATCH))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove ``NAME.PID.partial.onnx`` exports whose process is gone: an export killed where no ``finally`` runs
    (SIGKILL, the OOM killer, a power cut, SIGTERM before polyp-live handles it). Returns what was removed."""
    removed = []
    for partial in folder.glob(f"*{PARTIAL_SUFFIX}"):
        pid_text = partial.name.removesuffix(PARTIAL_SUFFIX).rsplit(".", 1)[-1]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
            logger.info("removed %s, left by an export that was killed", partial)
    return removed


def _still_valid(path: Path, sha256: str, contract: ModelContract) -> bool:
    if not path.is_file():
        return False
    try:
        meta = read_onnx_metadata(path)
    except PolypLiveError as exc:
        logger.warning("ignoring a broken cached export (%s); exporting again", exc)
        return False
    if meta.graph_passes != GRAPH_PASSES:
        logger.info("cached export %s predates this version's graph passes (%s); exporting again", path, GRAPH_PASSES)
        return False
    return meta.source_sha256 == sha256 and meta.contract == contract


INT8_SUFFIX = ".int8.onnx"


def companion_path(checkpoint: str | Path) -> Path:
    """Where checkpoint ``NAME.safetensors``'s calibrated INT8 model lies: ``NAME.int8.onnx`` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(checkpoint.suffix) + INT8_SUFFIX)


def calibrated_companion(checkpoint: str | Path | CheckpointInfo) -> Path | None:
    """``NAME.int8.onnx`` beside checkpoint ``NAME.safetensors`` when it is a CPU-target INT8 model that
    ``polyp-calibrate`` made from exactly these weights at this contract; else None (the reason is logged).

    The bundled default ships one, so a CPU machine runs it in INT8 without calibrating anything.
    ``checkpoint`` may be a :class:`~polyp_live.train.checkpoint.CheckpointInfo` already read (not hashed again).
    """
    from polyp_live.train.checkpoint import CheckpointInfo

    weights = checkpoint.weights_path if isinstance(checkpoint, CheckpointInfo) else checkpoint
    companion = companion_path(weights)
    if not companion.is_file():
        return None
    info = _checkpoint_info(checkpoint)
    try:
        meta = read_onnx_metadata(companion)
    except PolypLiveError as exc:
        logger.warning("ignoring %s: %s", companion, exc)
        return None
    problems = [
        text
        for bad, text in (
            (meta.precision != "int8", f"it is {meta.precision}, not int8"),
            (meta.int8_target != "cpu", f"its INT8 target is {meta.int8_target!r}, not 'cpu'"),
            (meta.source_sha256 != info.weights_sha256, "it was calibrated from other weights"),
            (meta.contract != info.contract, "its model contract differs from the checkpoint's"),
        )
        if bad
    ]
    if problems:
        logger.warning("ignoring %s: %s; recalibrate with polyp-calibrate", companion, "; ".join(problems))
        return None
    return companion
