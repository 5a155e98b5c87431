"""What the pipeline needs of a source and of a sink, stated once as :class:`typing.Protocol` s.

:class:`realtime.sources.Source` is the base class of the bundled sources and implements :class:`Source`;
the bundled sinks (:mod:`realtime.sinks`, the viewer's display) derive from :class:`SinkBase` for the
defaults of the parts most sinks do not need (no file written, nothing dropped). Anything else with these
members works too (tests wrap sources, benchmarks add their own sinks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from realtime.types import Frame, Result, SourceInfo


class Source(Protocol):
    """Frames in: open, ``read`` until ``None``, close; ``stop`` may come from any thread."""

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
    """Receives every result in the output thread; ``close`` is called once, from the same thread."""

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


def sink_files(sink: Sink) -> tuple[Path, ...]:
    """The files a sink wrote: its ``files`` where it writes several (segments), else its ``path``."""
    files = getattr(sink, "files", None)
    if files:
        return tuple(Path(f) for f in files)
    return (sink.path,) if sink.path is not None else ()
