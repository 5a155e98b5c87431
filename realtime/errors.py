"""Errors of the realtime pipeline; each is one actionable line for the user."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyp_live.train.errors import PolypLiveError

if TYPE_CHECKING:
    from polyp_live.realtime.types import RunSummary


class SourceError(PolypLiveError):
    """An input (file, URL, image folder, capture device) is missing, unreadable or failed."""


class SourceUnavailable(SourceError):
    """A live source is not there (yet): nothing answers, no such device, no signal; it may come up later (a tower
    that boots after the PC), so :class:`~polyp_live.realtime.sources.reconnect.ReconnectingSource` retries it."""


class SourceDisconnected(SourceError):
    """A live source stopped delivering frames (device unplugged, stream dropped); it may come back."""


class OutputError(PolypLiveError):
    """An output path cannot be written (would overwrite the input, no permission, no such folder)."""


class PipelineError(PolypLiveError):
    """A stage failed during a run; ``summary`` describes what was processed before it did."""

    def __init__(self, message: str, summary: RunSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class OptionError(PolypLiveError):
    """A command-line option has a value that cannot be used (out of range, malformed)."""
