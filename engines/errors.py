"""Errors of the inference engines; all are one-line :class:`~polyp_live.train.errors.PolypLiveError`s."""

from __future__ import annotations

from polyp_live.train.errors import PolypLiveError


class EngineError(PolypLiveError):
    """An engine file cannot be loaded or run (corrupt, truncated, wrong format)."""


class BackendUnavailableError(EngineError):
    """The runtime a backend needs is not installed or has no usable device here."""


class EngineMismatchError(EngineError):
    """An engine was built for another GPU, runtime version or source model; rebuild it."""


class ExportError(PolypLiveError):
    """Export or parity verification failed."""
