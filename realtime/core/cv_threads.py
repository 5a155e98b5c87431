"""OpenCV's own thread pool while a pipeline runs: one thread, because the stages already run in parallel.

Every stage of :class:`polyp_live.realtime.core.pipeline.Pipeline` is a thread, and the engine has its own threads
(ONNX Runtime: one per core). OpenCV's default pool (one worker per core) then splits each resize or colour
conversion across cores that are already busy, and a stage waits for a worker that another stage's thread holds.
Measured with ``benchmarks/bench_pipeline.py --repeat 2`` on the 1440x1080 clip, 2-core VM, two rounds each:
37.4 / 42.2 / 36.3 / 37.0 frames/s with OpenCV's default pool, 43.1 / 41.9 / 43.5 / 39.4 with one thread.

The setting is process-wide, so it is taken while the first pipeline starts and given back when the last one
closes (a viewer or evaluation in the same process gets OpenCV's default again).
"""

from __future__ import annotations

import logging
import threading

import cv2

logger = logging.getLogger(__name__)

PIPELINE_CV_THREADS = 1

_lock = threading.Lock()
_users = 0
_saved: int | None = None


def acquire() -> None:
    """A pipeline starts: OpenCV on :data:`PIPELINE_CV_THREADS` thread(s) (the first one saves the setting)."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = cv2.getNumThreads()
            cv2.setNumThreads(PIPELINE_CV_THREADS)
            logger.debug("OpenCV threads %d -> %d while the pipeline runs", _saved, PIPELINE_CV_THREADS)
        _users += 1


def release() -> None:
    """A pipeline closed: the last one gives OpenCV its saved setting back. Extra calls are ignored."""
    global _users, _saved
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0 and _saved is not None:
            cv2.setNumThreads(_saved)
            _saved = None
