"""Training losses on logits ``(N, 1, H, W)`` and ``{0, 1}`` targets of the same shape.

* ``jaccard`` (the paper's Eq. 2): ``L = 1 - (sum(y*p) + a) / (sum(y) + sum(p) - sum(y*p) + a)``
  with ``p = sigmoid(logits)``, computed per image and averaged over the batch; ``a`` is the
  smoothing constant (``alpha``, default 1), which also makes an empty target with an empty
  prediction a zero loss.
* ``bce-dice``: binary cross-entropy (mean over pixels) plus the soft Dice loss
  ``1 - (2*sum(y*p) + a) / (sum(y) + sum(p) + a)`` per image, averaged.
* ``structure``: PraNet's structure loss (below).
* ``structure-topk``: the structure loss on frames with a polyp; on a polyp-free frame (empty target) the
  pixel-mean BCE plus a frame-level term, the BCE of its ``TOPK_FRACTION`` most confident pixels against 0.
  On an empty target the soft IoU term is ``1 - a / (sum(p) + a)``: its gradient on every pixel's probability
  is ``a / (sum(p) + a)^2``, largest when the frame is already clean, so polyp-free frames keep pushing all
  of their 65 k pixels toward ``p = 0`` long after nothing would be reported. The top-k term acts where the
  model would report something (a region needs about the top 0.1 % of the frame above the threshold).

Both are computed in float32 whatever the autocast dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from polyp_live.train.errors import PolypLiveError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_shapes(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")


def _flat(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _check_shapes(logits, target)
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
    return _structure_per_image(logits, target, alpha).mean()


def _structure_per_image(logits: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    logits, target = logits.float(), target.float()
    weight = 1.0 + 5.0 * torch.abs(box_mean(target, 31) - target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    wbce = (weight * bce).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
    p = torch.sigmoid(logits)
    inter = (p * target * weight).sum(dim=(2, 3))
    union = ((p + target) * weight).sum(dim=(2, 3))
    wiou = 1.0 - (inter + alpha) / (union - inter + alpha)
    return (wbce + wiou).flatten()


TOPK_FRACTION = 0.005
"""Share of a polyp-free frame's pixels (the most confident ones) in ``structure-topk``'s frame-level term."""


def topk_negative_loss(logits: torch.Tensor, fraction: float = TOPK_FRACTION) -> torch.Tensor:
    """Per image: pixel-mean BCE against 0 plus the BCE of the ``fraction`` most confident pixels against 0."""
    flat = logits.float().flatten(1)
    k = max(1, round(fraction * flat.shape[1]))
    bce = F.softplus(flat)  # BCE with logits against a 0 target
    return bce.mean(1) + F.softplus(flat.topk(k, dim=1).values).mean(1)


def structure_topk_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``structure`` on frames with a polyp, :func:`topk_negative_loss` on polyp-free frames; batch mean."""
    _check_shapes(logits, target)
    empty = target.flatten(1).amax(1) <= 0
    per_image = torch.empty(logits.shape[0], device=logits.device, dtype=torch.float32)
    if (~empty).any():
        keep = ~empty
        per_image[keep] = _structure_per_image(logits[keep], target[keep], alpha)
    if empty.any():
        per_image[empty] = topk_negative_loss(logits[empty])
    return per_image.mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "jaccard": jaccard_loss,
    "bce-dice": bce_dice_loss,
    "structure": structure_loss,
    "structure-topk": structure_topk_loss,
}


def get_loss(name: str, alpha: float = 1.0) -> LossFn:
    """The loss called ``name`` with smoothing ``alpha``; unknown names list the valid ones."""
    if name not in LOSSES:
        raise PolypLiveError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    fn = LOSSES[name]
    return lambda logits, target: fn(logits, target, alpha)
