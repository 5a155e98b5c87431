"""ImageNet ConvNeXt weights for the PEFNet encoder, from a local ``.safetensors`` file (no download).

Two key layouts are understood and renamed onto :class:`polyp_live.train.convnext.ConvNeXtEncoder`:

* official (facebookresearch/ConvNeXt): ``downsample_layers.0.{0,1}`` (stem conv, LayerNorm),
  ``downsample_layers.i.{0,1}`` (LayerNorm, conv), ``stages.i.j.{dwconv,norm,pwconv1,pwconv2,gamma}``;
* timm: ``stem.{0,1}``, ``stages.i.downsample.{0,1}``,
  ``stages.i.blocks.j.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}`` (the encoder's own names). timm's
  atto..nano use ``conv_mlp``: 1x1 convolutions ``[out, in, 1, 1]``, reshaped here to linear weights.

Classifier tensors (``head.*``, final ``norm.*``, ``norm_pre.*``) are dropped; a leading ``module.``,
``model.`` or ``encoder.`` shared by every key is stripped. A tensor of the wrong shape (e.g. the
weights of another variant) or a missing/unknown tensor raises :class:`polyp_live.train.errors.CheckpointError`.
Pickle files (``.pth``) are refused: convert them to safetensors in a trusted environment first.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from polyp_live.train.errors import CheckpointError

_DROP = re.compile(r"^(head\.|norm\.|norm_pre\.|fc\.|classifier\.)")
_OFFICIAL = (
    (re.compile(r"^downsample_layers\.0\.([01])\.(.+)$"), r"stem.\1.\2"),
    (re.compile(r"^downsample_layers\.([123])\.([01])\.(.+)$"), r"stages.\1.downsample.\2.\3"),
    (re.compile(r"^stages\.(\d+)\.(\d+)\.dwconv\.(.+)$"), r"stages.\1.blocks.\2.conv_dw.\3"),
    (re.compile(r"^stages\.(\d+)\.(\d+)\.norm\.(.+)$"), r"stages.\1.blocks.\2.norm.\3"),
    (re.compile(r"^stages\.(\d+)\.(\d+)\.pwconv1\.(.+)$"), r"stages.\1.blocks.\2.mlp.fc1.\3"),
    (re.compile(r"^stages\.(\d+)\.(\d+)\.pwconv2\.(.+)$"), r"stages.\1.blocks.\2.mlp.fc2.\3"),
    (re.compile(r"^stages\.(\d+)\.(\d+)\.gamma$"), r"stages.\1.blocks.\2.gamma"),
)
_PREFIXES = ("module.", "model.", "encoder.")


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return _strip_prefix({k[len(prefix) :]: v for k, v in state.items()})
    return state


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """``"official"`` or ``"timm"``; anything else raises :class:`CheckpointError`."""
    if any(k.startswith("downsample_layers.") for k in state):
        return "official"
    if any(k.startswith("stem.") for k in state):
        return "timm"
    sample = ", ".join(sorted(state)[:3])
    raise CheckpointError(f"not ConvNeXt weights in the official or timm layout (keys like {sample})")


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an ImageNet ConvNeXt state dict to the encoder's keys (classifier dropped, shapes untouched)."""
    state = _strip_prefix(dict(state))
    layout = detect_layout(state)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if _DROP.match(key):
            continue
        new = key
        if layout == "official":
            for pattern, repl in _OFFICIAL:
                new, hits = pattern.subn(repl, key)
                if hits:
                    break
            else:
                raise CheckpointError(f"unexpected tensor {key!r} in official-layout ConvNeXt weights")
        out[new] = tensor
    return out


def _fit(name: str, tensor: torch.Tensor, target: torch.Tensor, path: Path) -> torch.Tensor:
    if tensor.shape == target.shape:
        return tensor
    squeezable = tensor.ndim == 4 and tensor.shape[2:] == (1, 1) and tensor.shape[:2] == target.shape
    if squeezable:  # timm conv_mlp: 1x1 conv [out, in, 1, 1] -> linear [out, in]
        return tensor.reshape(target.shape)
    raise CheckpointError(
        f"{path}: tensor {name} has shape {tuple(tensor.shape)} but this encoder needs {tuple(target.shape)}; "
        "the weights are for another ConvNeXt variant"
    )


def load_backbone_weights(encoder: nn.Module, path: str | Path) -> int:
    """Load ImageNet ConvNeXt weights from ``path`` into ``encoder``; returns the number of tensors loaded."""
    path = Path(path)
    if path.suffix.lower() in (".pth", ".pt", ".pkl", ".bin", ".ckpt"):
        raise CheckpointError(f"{path}: {path.suffix} files are pickles; convert the weights to .safetensors first")
    if not path.is_file():
        raise CheckpointError(f"backbone weights not found: {path}")
    try:
        raw = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    state = convert_state_dict(raw)
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensors do not match this encoder ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); the weights are for another ConvNeXt variant"
        )
    fitted = {k: _fit(k, v, expected[k], path).to(expected[k].dtype) for k, v in state.items()}
    encoder.load_state_dict(fitted)
    return len(fitted)
