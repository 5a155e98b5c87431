"""Progress for every command: a tqdm bar on a terminal, a plain log line every few seconds anywhere else.

A bar written to a pipe or a CI log is hundreds of carriage-return updates in one line; :func:`progress`
returns a tqdm bar only when stderr is a terminal, and otherwise a :class:`LineProgress` with the same
interface (``update``, ``set_postfix``, ``close``, iteration, ``with``) that logs ``desc: n/total (p%), rate``
at most every ``every_s`` seconds and once at the end. ``lines=False`` logs nothing off a terminal (for loops
that log their own line, such as one per training epoch).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

logger = logging.getLogger("polyp_live.progress")

LINE_EVERY_S = 5.0


def on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class LineProgress:
    """tqdm's interface, written as a log line every ``every_s`` seconds (and at the end) instead of a bar."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", every_s: float = LINE_EVERY_S, quiet: bool = False) -> None:
        self.iterable, self.desc, self.unit, self.every_s, self.quiet = iterable, desc, unit, every_s, quiet
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n = total, 0
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._say(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._start, 1e-9)
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        if self.total:
            done += f" ({100 * self.n / self.total:.0f}%)"
        parts = [f"{self.desc}: {done} {self.unit}", f"{self.n / elapsed:.1f} {self.unit}/s", f"{elapsed:.0f} s"]
        return ", ".join([*parts, *([self.postfix] if self.postfix else [])])

    def _say(self, now: float) -> None:
        if not self.quiet:
            logger.info("%s", self.line(now))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n:
                self._say(time.monotonic())


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, lines: bool = True, **bar_options: Any) -> Any:
    """A tqdm bar on a terminal, else a :class:`LineProgress` (silent when ``not lines`` or ``not enabled``)."""
    if enabled and on_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, **bar_options)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, quiet=not (enabled and lines))
