"""The source base class: open, read frames until ``None``, close; and the one input locator.

Every source yields :class:`~polyp_live.realtime.types.Frame` objects with an index, the stream timestamp and the
local capture time, and never makes up a frame: a read that fails is either skipped and counted
(``decode_errors``, files) or raised (:class:`~polyp_live.realtime.errors.SourceDisconnected` for live sources,
which :class:`~polyp_live.realtime.sources.reconnect.ReconnectingSource` turns into a reconnect with back-off).
``read()`` returns ``None`` at the end.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path

from polyp_live.realtime.errors import SourceError
from polyp_live.realtime.types import Frame, SourceInfo
from polyp_live.train.media_paths import MediaLocation, UnsupportedUrl, locate

logger = logging.getLogger(__name__)


class Source(ABC):
    """Open, read frames until ``None``, close (:class:`polyp_live.realtime.ports.Source`). Usable as a context
    manager."""

    def __init__(self) -> None:
        self.decode_errors = 0
        self._info: SourceInfo | None = None

    @property
    def opened(self) -> bool:
        return self._info is not None

    @property
    def info(self) -> SourceInfo:
        if self._info is None:
            raise SourceError(f"{type(self).__name__} is not open")
        return self._info

    @abstractmethod
    def open(self) -> SourceInfo:
        """Open the input (raises :class:`SourceError` with a one-line reason)."""

    @abstractmethod
    def read(self) -> Frame | None:
        """Next frame, or ``None`` at the end of the input."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """The run is ending (any thread): a ``read`` waiting for the input gives up soon."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the input; safe to call twice."""

    def __enter__(self) -> Source:
        if self._info is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def locate_input(spec: str | Path | MediaLocation) -> MediaLocation:
    """The input named ``spec`` (see :func:`polyp_live.train.media_paths.locate`), as a :class:`SourceError` if
    unusable."""
    if isinstance(spec, MediaLocation):
        return spec
    try:
        return locate(spec)
    except UnsupportedUrl as exc:
        raise SourceError(str(exc)) from None
