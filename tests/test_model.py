"""PEFNet variants: shapes, parameter counts against the paper, positional embedding, factory errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from polyp_live.train.errors import UnknownVariantError
from polyp_live.train.pefnet import MPEBlock, count_parameters, sinusoidal_embedding_2d
from polyp_live.train.variants import VARIANTS, create_model
from tests.train_helpers import torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_returns_logits_of_the_input_shape(variant: str) -> None:
    torch.manual_seed(0)
    model = create_model(variant).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (1, 1, 64, 96)
    assert y.dtype == torch.float32 and bool(torch.isfinite(y).all())
    assert float(y.std()) > 0  # logits depend on the position/content, not a constant map


@pytest.mark.parametrize("variant", [v for v, spec in VARIANTS.items() if spec.paper_params_m])
def test_parameter_counts_within_10_percent_of_the_paper(variant: str) -> None:
    with torch.device("meta"):  # counts shapes only: no memory, no initialisation cost
        model = create_model(variant)
    millions = count_parameters(model) / 1e6
    paper = VARIANTS[variant].paper_params_m
    assert abs(millions - paper) / paper <= 0.10, f"{variant}: {millions:.1f}M vs paper {paper}M"


@pytest.mark.parametrize("family", sorted({spec.family for spec in VARIANTS.values()}))
def test_variants_of_a_family_grow_in_size(family: str) -> None:
    counts = []
    for spec in VARIANTS.values():
        if spec.family == family and spec.mpe:
            with torch.device("meta"):
                counts.append(count_parameters(create_model(spec.name)))
    assert len(counts) >= 3
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_the_no_mpe_ablation_has_no_positional_embedding() -> None:
    with_mpe, without = create_model("lite0"), create_model("lite0-nompe")
    assert any(isinstance(m, MPEBlock) for m in with_mpe.modules())
    assert not any(isinstance(m, MPEBlock) for m in without.modules())
    assert count_parameters(without) < count_parameters(with_mpe)


def test_lite_encoder_gives_the_stride_2_to_32_pyramid() -> None:
    model = create_model("lite2").eval()
    with torch.inference_mode():
        features = model.encoder(torch.zeros(1, 3, 64, 128))
    assert [tuple(f.shape[2:]) for f in features] == [(32, 64), (16, 32), (8, 16), (4, 8), (2, 4)]
    assert tuple(f.shape[1] for f in features) == model.encoder.channels == (16, 24, 48, 120, 352)


def test_positional_embedding_is_a_deterministic_constant() -> None:
    a, b = MPEBlock(16), MPEBlock(16)
    like = torch.zeros(1)
    pe1 = a.positional_embedding(8, 12, like)
    assert torch.equal(pe1, b.positional_embedding(8, 12, like))
    assert torch.equal(pe1, a.positional_embedding(8, 12, like))
    assert pe1.shape == (1, 16, 8, 12)
    assert np.array_equal(sinusoidal_embedding_2d(16, 8, 12), sinusoidal_embedding_2d(16, 8, 12))


def test_positional_embedding_halves_encode_x_then_y() -> None:
    pe = sinusoidal_embedding_2d(32, 10, 14)
    first, second = pe[:16], pe[16:]
    assert np.allclose(first, first[:, :1, :])  # constant down each column: varies along x only
    assert np.allclose(second, second[:, :, :1])  # constant along each row: varies along y only
    assert not np.allclose(first, first[:, :, :1]) and not np.allclose(second, second[:, :1, :])
    assert np.allclose(pe[0, 0], np.sin(np.arange(14)))  # channel 0: sin(x / 10000^0)
    assert np.allclose(pe[1, 0], np.cos(np.arange(14)))


def test_model_positional_embedding_is_independent_of_weights() -> None:
    torch.manual_seed(1)
    m1 = create_model("atto")
    torch.manual_seed(2)
    m2 = create_model("atto")
    like = torch.zeros(1)
    assert torch.equal(m1.final_mpe.positional_embedding(32, 32, like), m2.final_mpe.positional_embedding(32, 32, like))


def test_unknown_variant_lists_the_valid_names() -> None:
    with pytest.raises(UnknownVariantError) as info:
        create_model("huge")
    message = str(info.value)
    assert "'huge'" in message
    assert all(name in message for name in VARIANTS)
