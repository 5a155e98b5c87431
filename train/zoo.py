"""Bundled models, resolved by name (``--engine default``, ``polyp-eval`` with no checkpoint).

The weights live inside the package (``train/weights/``), so they load with no network access.
"""

from __future__ import annotations

from pathlib import Path

from train.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLED: dict[str, str] = {"default": "default"}


def bundled_names() -> list[str]:
    return sorted(BUNDLED)


def resolve_bundled(name: str) -> Path:
    """Path of the bundled checkpoint ``name`` (``.safetensors``); errors list the valid names."""
    if name not in BUNDLED:
        raise CheckpointError(f"unknown bundled model {name!r}; bundled models: {', '.join(bundled_names())}")
    path = WEIGHTS_DIR / f"{BUNDLED[name]}.safetensors"
    if not path.is_file():
        raise CheckpointError(
            f"bundled model {name!r} is missing from this installation ({path}); reinstall polyp-live"
        )
    return path


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A bundled model's name or a filesystem path -> checkpoint path."""
    text = str(name_or_path)
    if text in BUNDLED:
        return resolve_bundled(text)
    return Path(text)
