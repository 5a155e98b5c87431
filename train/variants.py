"""PEFNet variants as data, and the one factory that builds them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from train.errors import UnknownVariantError
from train.pefnet import PEFNet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantSpec:
    """ConvNeXt encoder shape of one PEFNet variant.

    ``paper_params_m`` is the parameter count (millions) of the paper's Table IV for the
    variant with MPE blocks, where the paper gives one.
    """

    name: str
    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]
    paper_params_m: float | None = None


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("atto", (2, 2, 6, 2), (40, 80, 160, 320)),
        VariantSpec("femto", (2, 2, 6, 2), (48, 96, 192, 384)),
        VariantSpec("pico", (2, 2, 6, 2), (64, 128, 256, 512)),
        VariantSpec("nano", (2, 2, 8, 2), (80, 160, 320, 640)),
        VariantSpec("tiny", (3, 3, 9, 3), (96, 192, 384, 768), paper_params_m=52.0),
        VariantSpec("small", (3, 3, 27, 3), (96, 192, 384, 768), paper_params_m=74.0),
        VariantSpec("base", (3, 3, 27, 3), (128, 256, 512, 1024), paper_params_m=129.0),
    )
}


def get_variant(name: str) -> VariantSpec:
    """The spec of ``name``; an unknown name raises an error that lists the valid ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown PEFNet variant {name!r}; valid variants: {', '.join(VARIANTS)}"
        ) from None


def create_model(
    variant: str,
    *,
    drop_path_rate: float = 0.0,
    backbone_weights: str | Path | None = None,
) -> PEFNet:
    """Build a PEFNet of the named variant, optionally loading ImageNet ConvNeXt weights.

    ``backbone_weights`` is a local ``.safetensors`` file in timm's or the official ConvNeXt
    key layout (nothing is downloaded); see :func:`train.backbone_weights.load_backbone_weights`.
    """
    spec = get_variant(variant)
    model = PEFNet(spec.depths, spec.dims, drop_path_rate=drop_path_rate)
    if backbone_weights is not None:
        from train.backbone_weights import load_backbone_weights

        loaded = load_backbone_weights(model.encoder, backbone_weights)
        logger.info("loaded %d ImageNet tensors into the %s encoder from %s", loaded, variant, backbone_weights)
    return model
