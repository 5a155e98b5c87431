"""What the pipeline needs of a source and of a sink, stated once as :class:`typing.Protocol` s.

:class:`polyp_live.realtime.sources.base.Source` is the base class of the bundled sources and implements
:class:`Source`; the bundled sinks (:mod:`polyp_live.realtime.sinks.writers`, the viewer's display) derive from
:class:`SinkBase` for the defaults of the parts most sinks do not need (no file written, nothing dropped). Anything else
with these members works too (tests wrap sources, benchmarks add their own sinks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from polyp_live.realtime.types import Frame, Result, SourceInfo


class Source(Protocol):
    """Frames in: open, ``read`` until ``None``, close; ``stop`` may come from any thread.

    Optional (read with :func:`source_startup_s` / :func:`source_stale_dropped`, which look through wrappers
    such as ``ReconnectingSource`` and default to ``None`` / ``0``): a live source may expose
    ``startup_s: float | None`` (seconds from opening to its first fresh frame) and ``stale_dropped: int``
    (frames it discarded as older than the live policy allows; never taken, so not in the run's "in").
    """

    decode_errors: int  # packets that could not be decoded and were skipped

    @property
    def opened(self) -> bool: ...

    @property
    def info(self) -> SourceInfo: ...

    def open(self) -> SourceInfo: ...

    def read(self) -> Frame | None: ...

    def stop(self) -> None:
        """The run is ending: a ``read`` waiting for the input (a reconnect back-off) gives up soon."""

    def close(self) -> None: ...


class Sink(Protocol):
    """Receives every result in the output thread; ``close`` is called once, from the same thread.

    Optional (read with :func:`sink_recorded`, default ``None``): ``recorded: int | None``, the frames a
    sink wrote to a video file (the summary's "recorded").
    """

    @property
    def name(self) -> str:
        """Short label in the run summary (``drops``)."""

    @property
    def path(self) -> Path | None:
        """The file or folder it writes (listed in the run summary), or ``None``."""

    @property
    def dropped(self) -> int:
        """Results it let go unwritten (a display that shows only the newest); 0 for most sinks."""

    def write(self, result: Result) -> None: ...

    def close(self) -> None: ...


class SinkBase:
    """Defaults of :class:`Sink`'s optional parts: writes no file, drops nothing."""

    name: str = "sink"
    path: Path | None = None
    dropped: int = 0
    recorded: int | None = None


def _through_wrappers(source: Any, name: str) -> Any:
    """``source.name``, or that of the source it wraps (``.source``, a few levels); ``None`` if none has it."""
    for _ in range(8):
        value = getattr(source, name, None)
        if value is not None:
            return value
        source = getattr(source, "source", None)
        if source is None:
            break
    return None


def source_startup_s(source: Any) -> float | None:
    """A live source's start-up delay (opening to its first fresh frame), or ``None`` where it has none."""
    value = _through_wrappers(source, "startup_s")
    return None if value is None else float(value)


def source_stale_dropped(source: Any) -> int:
    """Frames the source discarded as stale before they were taken (0 for sources that never do)."""
    return int(_through_wrappers(source, "stale_dropped") or 0)


def sink_recorded(sink: Any) -> int | None:
    """Frames a sink wrote to a video file, or ``None`` (sinks without ``recorded``, or that write no video)."""
    value = getattr(sink, "recorded", None)
    return None if value is None else int(value)


def sink_files(sink: Sink) -> tuple[Path, ...]:
    """The files a sink wrote: its ``files`` where it writes several (segments), else its ``path``."""
    files = getattr(sink, "files", None)
    if files:
        return tuple(Path(f) for f in files)
    return (sink.path,) if sink.path is not None else ()
