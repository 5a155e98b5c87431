"""PEFNet polyp segmentation: model family, model contract, checkpoints, training and evaluation.

This package is the root of the dependency graph: it imports none of ``engines``,
``realtime`` or ``calibration``. Importing it runs nothing and loads no weights.
"""

from polyp_live.train.contract import ModelContract
from polyp_live.train.errors import (
    CheckpointError,
    ContractError,
    DatasetError,
    PolypLiveError,
    UnknownVariantError,
)

__all__ = [
    "CheckpointError",
    "ContractError",
    "DatasetError",
    "ModelContract",
    "PolypLiveError",
    "UnknownVariantError",
]
