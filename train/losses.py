"""Training losses on logits ``(N, 1, H, W)`` and ``{0, 1}`` targets of the same shape.

* ``jaccard`` (the paper's Eq. 2): ``L = 1 - (sum(y*p) + a) / (sum(y) + sum(p) - sum(y*p) + a)``
  with ``p = sigmoid(logits)``, computed per image and averaged over the batch; ``a`` is the
  smoothing constant (``alpha``, default 1), which also makes an empty target with an empty
  prediction a zero loss.
* ``bce-dice``: binary cross-entropy (mean over pixels) plus the soft Dice loss
  ``1 - (2*sum(y*p) + a) / (sum(y) + sum(p) + a)`` per image, averaged.

Both are computed in float32 whatever the autocast dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from polyp_live.train.errors import PolypLiveError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _flat(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    return torch.sigmoid(logits.float()).flatten(1), target.float().flatten(1)


def jaccard_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Soft Jaccard loss (paper Eq. 2), per image then mean."""
    p, y = _flat(logits, target)
    inter = (y * p).sum(1)
    union = y.sum(1) + p.sum(1) - inter
    return (1.0 - (inter + alpha) / (union + alpha)).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Soft Dice loss, per image then mean."""
    p, y = _flat(logits, target)
    inter = (y * p).sum(1)
    return (1.0 - (2.0 * inter + alpha) / (y.sum(1) + p.sum(1) + alpha)).mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy (pixel mean) + soft Dice loss."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return bce + dice_loss(logits, target, alpha)


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """``avg_pool2d(x, k, stride=1, padding=k // 2)`` (zero padding counted) as two 1D passes.

    2k instead of k² operations a pixel."""
    pad = k // 2
    rows = F.avg_pool2d(x, (k, 1), stride=1, padding=(pad, 0))
    return F.avg_pool2d(rows, (1, k), stride=1, padding=(0, pad))


def structure_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """PraNet's structure loss: boundary-weighted BCE + weighted soft IoU (Fan et al., MICCAI 2020).

    A pixel's weight is ``1 + 5 |avgpool31(target) - target|``: pixels near a polyp's edge count up to
    six times, so the boundary, where masks differ most, is learnt first.
    """
    logits, target = logits.float(), target.float()
    weight = 1.0 + 5.0 * torch.abs(box_mean(target, 31) - target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    wbce = (weight * bce).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
    p = torch.sigmoid(logits)
    inter = (p * target * weight).sum(dim=(2, 3))
    union = ((p + target) * weight).sum(dim=(2, 3))
    wiou = 1.0 - (inter + alpha) / (union - inter + alpha)
    return (wbce + wiou).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "jaccard": jaccard_loss,
    "bce-dice": bce_dice_loss,
    "structure": structure_loss,
}


def get_loss(name: str, alpha: float = 1.0) -> LossFn:
    """The loss called ``name`` with smoothing ``alpha``; unknown names list the valid ones."""
    if name not in LOSSES:
        raise PolypLiveError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    fn = LOSSES[name]
    return lambda logits, target: fn(logits, target, alpha)
