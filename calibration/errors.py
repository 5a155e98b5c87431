"""Errors of the calibration package; every one is a one-line :class:`~polyp_live.train.errors.PolypLiveError`.

Exit codes (through :func:`polyp_live.train.cli_utils.run_cli`): bad input or a refused cache -> 2 (like every
polyp-live command); an INT8 model that fails the accuracy gate (``--max-dice-drop``) -> 3, so a
script can tell "you called it wrong" from "the quantized model is not good enough".
"""

from __future__ import annotations

from polyp_live.train.errors import PolypLiveError


class CalibrationError(PolypLiveError):
    """Calibration cannot run: no usable frames, an unreadable video, a cache for another model, ..."""


class AccuracyGateError(CalibrationError):
    """The INT8 model lost more Dice than allowed against FP32; the message names the worst layers."""

    exit_code = 3
