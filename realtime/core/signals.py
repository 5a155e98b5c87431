"""SIGINT/SIGTERM as stop requests, one home for polyp-live and polyp-batch.

The first signal asks to stop gracefully (polyp-live: stop capture and let the pipeline drain; polyp-batch: no new
videos, the running ones finish). Copies that arrive within :data:`SIGNAL_BURST_S` of it are the same request:
``timeout -s INT``, a service manager or a terminal signal the process *and* its process group, so two copies
arrive milliseconds apart, and counting the second as "Ctrl+C again" lost the summary. A SIGINT after the window
aborts at once (``KeyboardInterrupt``); a later SIGTERM is taken as "already stopping".
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SIGNAL_BURST_S = 0.5  # SIGINT/SIGTERM copies within this of the first are one stop request
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """The signal handler: ``stop`` and ``announce`` run once, at the first signal; copies within ``burst_s`` are
    counted in :attr:`copies`; a SIGINT after that raises ``KeyboardInterrupt``."""

    def __init__(self, stop: Callable[[], None], announce: Callable[[], None] = lambda: None,
                 burst_s: float = SIGNAL_BURST_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.stop, self.announce, self.burst_s, self.clock = stop, announce, burst_s, clock
        self.first: float | None = None  # when the first signal came (clock)
        self.copies = 0  # signals taken as part of the first request

    @property
    def requested(self) -> bool:
        return self.first is not None

    def __call__(self, signum: int, _frame: Any = None) -> None:
        now = self.clock()
        if self.first is None:
            self.first = now
            self.announce()
            self.stop()
        elif now - self.first <= self.burst_s or signum != signal.SIGINT:
            self.copies += 1  # the same request (or a SIGTERM while stopping: already stopping)
        else:
            raise KeyboardInterrupt


@contextmanager
def handling_stop_signals(requests: StopRequests) -> Iterator[StopRequests]:
    """``requests`` handles SIGINT and SIGTERM inside the block; the previous handlers come back after it.

    A block that ends inside a stop request's burst window (a fast drain) keeps the handler until the window has
    passed: a copy of the signal that arrives then is the same request, not a ``KeyboardInterrupt`` from Python's
    default handler while the process exits (a traceback after a clean stop).
    """
    previous = {sig: signal.signal(sig, requests) for sig in STOP_SIGNALS}
    try:
        yield requests
    finally:
        if requests.first is not None:
            left = requests.burst_s - (requests.clock() - requests.first)
            if 0.0 < left <= requests.burst_s:
                time.sleep(left)
        for sig, old in previous.items():
            signal.signal(sig, old)
