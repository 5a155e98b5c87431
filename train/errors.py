"""Exceptions shared by every polyp-live package.

Every error a user can cause derives from :class:`PolypLiveError`; the command-line
entry points turn it into one line on stderr and a non-zero exit code
(see :mod:`polyp_live.train.cli_utils`). Messages say what was wrong and what to do about it.
"""

from __future__ import annotations


class PolypLiveError(Exception):
    """Base class of every error that is reported to the user as one line."""

    exit_code: int = 2


class ContractError(PolypLiveError, ValueError):
    """A model contract is malformed or incompatible (bad size, unknown key, wrong type)."""


class UnknownVariantError(PolypLiveError, KeyError):
    """A model variant name that the factory does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain line
        return str(self.args[0]) if self.args else ""


class CheckpointError(PolypLiveError):
    """A checkpoint is missing, malformed, pickled, or does not fit the model."""


class DatasetError(PolypLiveError):
    """A dataset folder or split file is missing, empty, or holds a bad pair."""


class DeviceError(PolypLiveError, ValueError):
    """A device name that is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""


class DeviceUnavailableError(DeviceError):
    """A CUDA device was asked for that this machine does not have."""
