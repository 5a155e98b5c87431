"""Losses and metrics against hand-computed values, empty masks included; the weight EMA."""

from __future__ import annotations

import math

import pytest
import torch

from polyp_live.train.ema import ModelEMA
from polyp_live.train.errors import PolypLiveError
from polyp_live.train.losses import bce_dice_loss, dice_loss, get_loss, jaccard_loss
from polyp_live.train.metrics import MetricAccumulator, per_image_scores

# one 2x2 image: target [[1, 1], [0, 0]]
TARGET = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
ZERO_LOGITS = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere


def test_jaccard_loss_hand_computed() -> None:
    # inter = 2 * 0.5 = 1; union = 2 + 2 - 1 = 3; alpha 1 -> 1 - 2/4
    assert float(jaccard_loss(ZERO_LOGITS, TARGET, alpha=1.0)) == pytest.approx(0.5)
    # alpha 0 -> 1 - 1/3
    assert float(jaccard_loss(ZERO_LOGITS, TARGET, alpha=0.0)) == pytest.approx(2 / 3)


def test_jaccard_loss_empty_masks() -> None:
    empty = torch.zeros(1, 1, 2, 2)
    # empty target, p = 0.5: inter 0, union 2 -> 1 - 1/3
    assert float(jaccard_loss(ZERO_LOGITS, empty, alpha=1.0)) == pytest.approx(2 / 3)
    # empty target and (almost) empty prediction: the smoothing makes it ~0
    assert float(jaccard_loss(torch.full((1, 1, 2, 2), -30.0), empty, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)


def test_jaccard_loss_is_per_image_then_mean() -> None:
    logits = torch.cat([ZERO_LOGITS, torch.full((1, 1, 2, 2), 30.0)])  # second: p = 1 everywhere
    target = torch.cat([TARGET, TARGET])
    # image 2: inter 2, union 4 -> 1 - 3/5 = 0.4; mean with 0.5
    assert float(jaccard_loss(logits, target)) == pytest.approx((0.5 + 0.4) / 2)


def test_dice_and_bce_dice_hand_computed() -> None:
    # dice: 1 - (2*1 + 1) / (2 + 2 + 1) = 0.4; BCE of p = 0.5 is ln 2 for every pixel
    assert float(dice_loss(ZERO_LOGITS, TARGET)) == pytest.approx(0.4)
    assert float(bce_dice_loss(ZERO_LOGITS, TARGET)) == pytest.approx(math.log(2) + 0.4)
    assert float(get_loss("bce-dice", alpha=1.0)(ZERO_LOGITS, TARGET)) == pytest.approx(math.log(2) + 0.4)
    with pytest.raises(PolypLiveError, match="jaccard, bce-dice"):
        get_loss("focal")


def test_losses_have_gradients_and_check_shapes() -> None:
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    jaccard_loss(logits, torch.ones(2, 1, 4, 4)).backward()
    assert logits.grad is not None and bool((logits.grad < 0).all())  # raise every logit toward the target
    with pytest.raises(ValueError, match="differ in shape"):
        jaccard_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="differ in shape"):
        get_loss("structure-topk")(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def _scores(pred: list[int], target: list[int]) -> dict[str, float]:
    s = per_image_scores(torch.tensor([pred]), torch.tensor([target]))
    return {k: float(v[0]) for k, v in s.items()}


def test_metrics_hand_computed() -> None:
    # tp 1, fp 1, fn 1, tn 1
    s = _scores([1, 1, 0, 0], [1, 0, 1, 0])
    assert s == pytest.approx({"iou": 1 / 3, "dice": 0.5, "precision": 0.5, "recall": 0.5})
    # tp 2, fp 1, fn 0
    s = _scores([1, 1, 1, 0], [1, 1, 0, 0])
    assert s == pytest.approx({"iou": 2 / 3, "dice": 0.8, "precision": 2 / 3, "recall": 1.0})


def test_metrics_empty_masks() -> None:
    assert _scores([0, 0, 0, 0], [0, 0, 0, 0]) == {"iou": 1.0, "dice": 1.0, "precision": 1.0, "recall": 1.0}
    assert _scores([0, 0, 0, 0], [1, 0, 0, 0]) == {"iou": 0.0, "dice": 0.0, "precision": 1.0, "recall": 0.0}
    assert _scores([0, 1, 0, 0], [0, 0, 0, 0]) == {"iou": 0.0, "dice": 0.0, "precision": 0.0, "recall": 1.0}


def test_accumulator_averages_per_image() -> None:
    acc = MetricAccumulator()
    acc.add(torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]), torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0]]))
    acc.add(torch.tensor([[1, 1, 1, 0]]), torch.tensor([[1, 1, 0, 0]]))
    means = acc.means()
    assert acc.count == 3
    assert means["iou"] == pytest.approx((1 / 3 + 1.0 + 2 / 3) / 3)
    assert means["dice"] == pytest.approx((0.5 + 1.0 + 0.8) / 3)


def test_accumulator_thresholds_logits_at_the_contract_threshold() -> None:
    logits = torch.tensor([[[[0.5, -0.5], [2.0, -2.0]]]])  # sigmoid: 0.62, 0.38, 0.88, 0.12
    target = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    at_half, at_030 = MetricAccumulator(), MetricAccumulator()
    at_half.add_logits(logits, target, 0.5)
    at_030.add_logits(logits, target, 0.3)
    assert at_half.means()["iou"] == pytest.approx(2 / 3)
    assert at_030.means()["iou"] == pytest.approx(1.0)


def test_ema_moves_toward_the_model() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    torch.nn.init.zeros_(model[0].weight)
    ema = ModelEMA(model, decay=0.75)
    with torch.no_grad():
        model[0].weight.fill_(4.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, torch.full((2, 2), 1.0))  # 0.75 * 0 + 0.25 * 4
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, torch.full((2, 2), 1.75))  # 0.75 * 1 + 0.25 * 4
    assert int(ema.module[1].num_batches_tracked) == 7
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_structure_loss_ranks_predictions_and_weights_the_boundary() -> None:
    from polyp_live.train.losses import structure_loss

    target = torch.zeros(2, 1, 64, 64)
    target[:, :, 16:48, 16:48] = 1.0
    good = (target * 2 - 1) * 8.0
    bad = -good
    assert float(structure_loss(good, target)) < 0.05 < float(structure_loss(bad, target))
    # the same number of wrong pixels costs more on the boundary than deep in the background
    edge, far = good.clone(), good.clone()
    edge[:, :, 15:17, 16:48] *= -1  # a 2-pixel band across the top edge
    far[:, :, 0:2, 16:48] *= -1  # a band of the same size far from the polyp
    assert float(structure_loss(edge, target)) > float(structure_loss(far, target))


def test_box_mean_equals_the_square_average_pool() -> None:
    import torch.nn.functional as F

    from polyp_live.train.losses import box_mean

    x = (torch.rand(2, 1, 40, 52, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    assert torch.allclose(box_mean(x, 31), F.avg_pool2d(x, 31, stride=1, padding=15), atol=1e-6)


@pytest.mark.parametrize("name", ["jaccard", "bce-dice", "structure", "structure-topk"])
def test_every_loss_behaves_on_an_empty_target(name: str) -> None:
    """A polyp-free frame (empty mask) in training: every loss is finite, about zero for a clean prediction,
    larger for a false mask the bigger it is, and its gradient pushes the false pixels down."""
    loss = get_loss(name)
    empty = torch.zeros(2, 1, 32, 32)
    clean = torch.full((2, 1, 32, 32), -30.0)
    assert float(loss(clean, empty)) == pytest.approx(0.0, abs=1e-3)
    small, large = clean.clone(), clean.clone()
    small[..., 10:14, 10:14] = 4.0
    large[..., 4:28, 4:28] = 4.0
    assert 0.0 < float(loss(small, empty)) < float(loss(large, empty))
    logits = large.clone().requires_grad_(True)
    loss(logits, empty).backward()
    grad = logits.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert float(grad[..., 4:28, 4:28].min()) > 0.0  # gradient descent lowers every false pixel's logit
    # a batch mixing a polyp frame and a polyp-free frame stays finite too
    mixed = torch.cat([TARGET.expand(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)])
    assert torch.isfinite(loss(torch.zeros(2, 1, 2, 2), mixed))


def test_structure_topk_is_structure_on_polyps_and_frame_level_on_polyp_free_frames() -> None:
    """``structure-topk``: the structure loss where a polyp is; on a polyp-free frame that is already clean it
    stops pushing (the structure loss's empty-target IoU term pushes hardest there), while a confident false
    region (what would be reported) is pushed down far harder than the rest of the frame."""
    structure, topk = get_loss("structure"), get_loss("structure-topk")
    gen = torch.Generator().manual_seed(1)
    polyp = torch.zeros(2, 1, 64, 64)
    polyp[..., 20:40, 24:44] = 1.0
    logits = torch.randn(2, 1, 64, 64, generator=gen)
    assert float(topk(logits, polyp)) == pytest.approx(float(structure(logits, polyp)), rel=1e-6)

    empty = torch.zeros(1, 1, 64, 64)

    def grad(fn: object, x0: torch.Tensor) -> torch.Tensor:
        x = x0.clone().requires_grad_(True)
        fn(x, empty).backward()  # type: ignore[operator]
        assert x.grad is not None
        return x.grad

    clean = torch.full((1, 1, 64, 64), -10.0)  # nothing would be reported here (p = 4.5e-5 everywhere)
    assert float(grad(topk, clean).sum()) < 0.01 * float(grad(structure, clean).sum())
    neg = clean.clone()
    neg[..., 30:34, 30:34] = 2.0  # one small confident false region
    g = grad(topk, neg)
    assert float(g[..., 30:34, 30:34].min()) > 100 * float(g[..., :10, :10].max())

    # a mixed batch is the mean of the per-image losses
    both_t, both_x = torch.cat([polyp[:1], empty]), torch.cat([logits[:1], neg])
    expected = (float(structure(logits[:1], polyp[:1])) + float(topk(neg, empty))) / 2
    assert float(topk(both_x, both_t)) == pytest.approx(expected, rel=1e-6)
