"""On-disk cache of ONNX exports, so a checkpoint on a CPU machine runs on ONNX Runtime.

``$POLYP_LIVE_CACHE`` or ``~/.cache/polyp-live``; files are ``onnx/<sha256[:16]>-<h>x<w>-<precision>.onnx``
keyed by the checkpoint weights' SHA-256 and the input size. A cached file is only reused if its
metadata names the same weights hash and contract; exports go to a temporary name first, so two
processes exporting at once never see a half-written file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engines.onnx_export import export_onnx, read_onnx_metadata
from train.contract import ModelContract
from train.errors import PolypLiveError

logger = logging.getLogger(__name__)

CACHE_ENV = "POLYP_LIVE_CACHE"
CACHE_MAX_BATCH = 16


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "polyp-live")


def cached_onnx(checkpoint: str | Path, *, size: int | tuple[int, int] | None = None, precision: str = "fp32") -> Path:
    """The checkpoint exported to ONNX (dynamic batch 1..16), exporting and verifying it on first use."""
    from train.checkpoint import read_checkpoint

    info = read_checkpoint(checkpoint)
    contract = info.contract
    if size is not None:
        contract = contract.with_size(*(size if isinstance(size, tuple) else (size, size)))
    h, w = contract.input_size
    path = cache_dir() / "onnx" / f"{info.weights_sha256[:16]}-{h}x{w}-{precision}.onnx"
    if _still_valid(path, info.weights_sha256, contract):
        logger.info("using cached ONNX export %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.partial.onnx")
    logger.info("exporting %s to the ONNX cache (%s, %dx%d); this happens once", info.weights_path, precision, h, w)
    try:
        export_onnx(info.weights_path, tmp, precision=precision, size=(h, w), dynamic_batch=(1, 1, CACHE_MAX_BATCH))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _still_valid(path: Path, sha256: str, contract: ModelContract) -> bool:
    if not path.is_file():
        return False
    try:
        meta = read_onnx_metadata(path)
    except PolypLiveError as exc:
        logger.warning("ignoring a broken cached export (%s); exporting again", exc)
        return False
    return meta.source_sha256 == sha256 and meta.contract == contract
