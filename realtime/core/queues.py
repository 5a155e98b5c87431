"""Bounded queues between pipeline stages, each with an explicit full-queue policy.

=================  ===============================  ==================================================
class              full-queue policy                used for
=================  ===============================  ==================================================
``BlockingQueue``  ``put`` waits (back-pressure);   FILE mode: every frame is processed and written,
                   never drops                      in order
``LatestQueue``    ``put`` never waits; the oldest  LIVE mode: latest frame wins, stale frames are
                   item is dropped and counted      dropped so latency stays bounded
=================  ===============================  ==================================================

Both are closed by the producer (:meth:`close`: the consumer drains what is left, then gets
:data:`END`) or cancelled by the consumer (:meth:`cancel`: a failed stage tells its producer to stop;
``put`` returns ``False`` from then on). The pipeline's set of queues is :class:`PipelineQueues`
(its capacities are tabled in :mod:`polyp_live.realtime.core.pipeline`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final


class _End:
    def __repr__(self) -> str:
        return "END"


END: Final = _End()
"""Returned by ``get`` once a closed queue is empty."""

EMPTY: Final = object()
"""Returned by ``get`` when ``timeout`` passes with nothing to take."""


class _BoundedQueue:
    policy = "abstract"

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue {name!r} needs a capacity >= 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._cancelled = False
        self.dropped = 0
        self.max_depth = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Producer: no more items; the consumer drains the rest, then gets :data:`END`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """Consumer: stop accepting items (a waiting ``put`` returns ``False``); pending items are dropped."""
        with self._cond:
            self._cancelled = True
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    def _append(self, item: Any) -> None:
        self._items.append(item)
        self.max_depth = max(self.max_depth, len(self._items))
        self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """Next item; :data:`END` when closed and drained; :data:`EMPTY` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    return END
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return EMPTY
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
            return item


class BlockingQueue(_BoundedQueue):
    """FIFO that makes the producer wait when full: back-pressure, never loses an item."""

    policy = "block"

    def put(self, item: Any) -> bool:
        """Wait for room; ``False`` (item not queued) once the queue is closed or cancelled."""
        with self._cond:
            while len(self._items) >= self.capacity and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._append(item)
            return True


class LatestQueue(_BoundedQueue):
    """Latest wins: ``put`` never waits; when full the oldest item is dropped and counted."""

    policy = "drop-oldest"

    def __init__(self, name: str, capacity: int = 1) -> None:
        super().__init__(name, capacity)

    def put(self, item: Any) -> bool:
        """Queue ``item`` at once, dropping (and counting) the oldest items beyond capacity."""
        with self._cond:
            if self._closed:
                return False
            while len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._append(item)
            return True


StageQueue = BlockingQueue | LatestQueue


@dataclass(frozen=True)
class PipelineQueues:
    """The queues between the pipeline's stages, named by what they carry; ``display`` only in live mode."""

    frames: StageQueue  # capture -> preprocess
    batches: StageQueue  # preprocess -> inference
    inferences: StageQueue  # inference -> postprocess
    predictions: StageQueue  # postprocess -> overlay
    results: StageQueue  # overlay -> output
    delivered: StageQueue  # output -> the run's iterator
    display: StageQueue | None = None  # capture -> overlay (live mode: frames shown without waiting for the model)

    @classmethod
    def file(cls, batch: int) -> PipelineQueues:
        """Back-pressure everywhere: every frame is processed and written, in order."""
        return cls(
            frames=BlockingQueue("frames", 2 * batch),
            batches=BlockingQueue("batches", 2),
            inferences=BlockingQueue("inferences", 2 * batch),
            predictions=BlockingQueue("predictions", 4),
            results=BlockingQueue("results", 4),
            delivered=BlockingQueue("delivered", 8),
        )

    @classmethod
    def live(cls) -> PipelineQueues:
        """One slot each, latest wins: stale items are dropped and counted."""
        return cls(
            frames=LatestQueue("frames", 1),
            display=LatestQueue("display", 1),
            batches=LatestQueue("batches", 1),
            inferences=LatestQueue("inferences", 1),
            predictions=LatestQueue("predictions", 1),
            results=LatestQueue("results", 1),
            delivered=LatestQueue("delivered", 1),
        )

    def values(self) -> tuple[StageQueue, ...]:
        """Every queue of the run, in pipeline order."""
        ordered = (self.frames, self.display, self.batches, self.inferences, self.predictions, self.results,
                   self.delivered)
        return tuple(q for q in ordered if q is not None)


class LatestValue:
    """A one-slot, thread-safe holder of the newest value (no queueing; readers never wait)."""

    def __init__(self, value: Any = None) -> None:
        self._lock = threading.Lock()
        self._value = value

    def set(self, value: Any) -> None:
        with self._lock:
            self._value = value

    def get(self) -> Any:
        with self._lock:
            return self._value
