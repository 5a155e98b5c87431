"""The calibration cache: computed ranges, keyed by the model and the calibration data.

A JSON file holding ``format``, ``model_sha256`` (SHA-256 of the checkpoint weights' hash, the input
size -- the same weights at another size have other activation ranges -- and the ONNX Runtime version),
``data_fingerprint`` (SHA-256 of the calibration frames' names and resized pixels, see
:meth:`polyp_live.calibration.frames.FrameSet.fingerprint`), ``method``, ``samples`` and ``ranges``
(tensor name -> ``[min, max]``, the calibrator's histogram-derived range for entropy / percentile).

Policy (see :func:`load_cache`):

* same model, same data, same method: the ranges are reused and the calibration pass is skipped;
* same model but other data, method or sample count: the cache is stale; it is recomputed and
  overwritten (logged);
* another model: with an explicit ``--cache FILE`` this is refused (:class:`CalibrationError`,
  exit 2), since the user named a file that belongs to something else; with the automatic cache
  beside the output it is ignored with a warning and overwritten.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyp_live.calibration.errors import CalibrationError
from polyp_live.calibration.quantize import METHODS, TensorRanges
from polyp_live.train.hashing import sha256_bytes
from polyp_live.train.jsonfile import read_json_file

logger = logging.getLogger(__name__)

CACHE_FORMAT = "polyp-live.calibration-cache/1"
_KEYS = {"format", "model_sha256", "data_fingerprint", "method", "samples", "ranges", "model"}


@dataclass(frozen=True)
class CacheKey:
    """What a cache entry must match to be reused."""

    model_sha256: str
    data_fingerprint: str
    method: str
    samples: int
    model: str = ""  # human-readable description, not compared


def model_key(weights_sha256: str, input_size: tuple[int, int], tool: str = "") -> str:
    """SHA-256 identifying a checkpoint exported at one input size (and prepared by one ``tool`` version,
    since ORT's graph optimisation decides the tensor names the ranges are keyed by)."""
    return sha256_bytes(f"{weights_sha256}:{input_size[0]}x{input_size[1]}:{tool}".encode())


def save_cache(path: str | Path, key: CacheKey, ranges: TensorRanges) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CACHE_FORMAT,
        "model": key.model,
        "model_sha256": key.model_sha256,
        "data_fingerprint": key.data_fingerprint,
        "method": ranges.method,
        "samples": ranges.samples,
        "ranges": {name: [low, high] for name, (low, high) in sorted(ranges.ranges.items())},
    }
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)
    logger.info("wrote calibration cache %s (%d tensors)", path, len(ranges.ranges))
    return path


def read_cache(path: str | Path) -> dict[str, Any]:
    """Parse and validate a cache file; malformed files raise :class:`CalibrationError`."""
    path = Path(path)
    data = read_json_file(path, what="calibration cache", error=CalibrationError, hint="delete it")
    problem = _problem(data)
    if problem:
        raise CalibrationError(f"calibration cache {path} is malformed ({problem}); delete it")
    return data


def _problem(data: Any) -> str:
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != CACHE_FORMAT:
        return f"format {data.get('format')!r}, expected {CACHE_FORMAT!r}"
    missing = sorted(_KEYS - {"model"} - set(data))
    if missing:
        return f"missing {missing}"
    if data["method"] not in METHODS or not isinstance(data["samples"], int) or not isinstance(data["ranges"], dict):
        return "bad method, samples or ranges"
    for name, value in data["ranges"].items():
        if not (isinstance(value, list) and len(value) == 2 and all(_finite(v) for v in value)):
            return f"range of {name!r} is not [min, max]"
    return ""


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_cache(path: str | Path | None, key: CacheKey, *, explicit: bool) -> TensorRanges | None:
    """The cached ranges when ``path`` holds a matching entry, else ``None`` (see the module policy)."""
    if path is None or not Path(path).is_file():
        return None
    data = read_cache(path)
    if data["model_sha256"] != key.model_sha256:
        message = (
            f"calibration cache {path} was computed for another model ({data.get('model') or 'unknown'}, "
            f"sha256 {data['model_sha256'][:12]}...), not {key.model or 'this model'} ({key.model_sha256[:12]}...)"
        )
        if explicit:
            raise CalibrationError(f"{message}; pass another --cache file or delete it")
        logger.warning("%s; ignoring it and recalibrating", message)
        return None
    stale = [
        what
        for what, cached, wanted in (
            ("data", data["data_fingerprint"], key.data_fingerprint),
            ("method", data["method"], key.method),
            ("samples", data["samples"], key.samples),
        )
        if cached != wanted
    ]
    if stale:
        logger.info("calibration cache %s is for other %s; recalibrating", path, " and ".join(stale))
        return None
    ranges = {name: (float(v[0]), float(v[1])) for name, v in data["ranges"].items()}
    logger.info("calibration ranges loaded from cache %s (%d tensors): no calibration pass", path, len(ranges))
    return TensorRanges(data["method"], data["samples"], ranges)
