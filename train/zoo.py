"""Bundled models, resolved by name (``--engine default``, ``polyp-eval`` with no checkpoint), and the one
checkpoint resolver every command shares (:func:`resolve_checkpoint`).

The weights live inside the package (``train/weights/``), so they load with no network access.
"""

from __future__ import annotations

from pathlib import Path

from polyp_live.train.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLED: dict[str, str] = {"default": "default"}
STATE_SUFFIX = ".state"  # RUN/last.state.safetensors + .json: polyp-train's resume state (train/train_state.py)


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
    """THE checkpoint resolver of every command (``--checkpoint``, ``--engine``, ``--init``).

    * a bundled model's name (``default``) -> its ``.safetensors`` inside the package;
    * a run folder (``runs/atto``) -> its ``best.safetensors`` (``last`` when no best was written yet);
    * ``NAME.json`` (a checkpoint sidecar) -> ``NAME.safetensors``; ``NAME`` with no suffix -> ``NAME.safetensors``
      when that exists;
    * a resume state (``last.state.safetensors`` / ``.json``) is refused with what it is and what to pass;
    * anything else (``.safetensors``, ``.onnx``, ``.engine``, a missing file) is returned as given, for the
      loader to accept or refuse with its own message.
    """
    text = str(name_or_path)
    if text in BUNDLED:
        return resolve_bundled(text)
    path = Path(text)
    if path.name.endswith((STATE_SUFFIX + ".safetensors", STATE_SUFFIX + ".json")):
        run = path.parent
        raise CheckpointError(
            f"{path} is a training resume state (optimizer, schedule and history for polyp-train --resume), not a "
            f"model; pass {run / 'best'} or {run / 'last'} instead (or continue training: polyp-train --resume {run})"
        )
    if path.is_dir():
        for name in ("best", "last"):
            if (path / f"{name}.safetensors").is_file():
                return path / f"{name}.safetensors"
        raise CheckpointError(f"{path} is a folder without best.safetensors or last.safetensors (not a polyp-train "
                              "run folder?)")
    if path.suffix == ".json" and path.with_suffix(".safetensors").is_file():
        return path.with_suffix(".safetensors")
    if not path.suffix and path.with_name(path.name + ".safetensors").is_file():
        return path.with_name(path.name + ".safetensors")
    return path
