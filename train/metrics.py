"""Segmentation metrics, per image and averaged over the set (as the paper reports them).

For each image the binary prediction ``P`` and ground truth ``G`` give ``tp, fp, fn``, and

* IoU ``= tp / (tp + fp + fn)``, Dice ``= 2 tp / (2 tp + fp + fn)``,
* precision ``= tp / (tp + fp)``, recall ``= tp / (tp + fn)``.

A ratio whose denominator is 0 counts as 1.0 (nothing to get wrong): both masks empty gives
IoU = Dice = 1; an empty prediction has precision 1 (its recall is 0 unless the truth is empty
too); an empty truth has recall 1. The set's score is the mean of the per-image scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

METRIC_NAMES = ("iou", "dice", "precision", "recall")


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1), torch.ones_like(num))


def per_image_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary ``pred`` and ``target`` ``(N, ...)`` -> per-image float64 ``(N,)`` tensors by metric name."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    p, g = pred.bool().flatten(1), target.bool().flatten(1)
    tp = (p & g).sum(1).double()
    fp = (p & ~g).sum(1).double()
    fn = (~p & g).sum(1).double()
    return {
        "iou": _ratio(tp, tp + fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }


@dataclass
class MetricAccumulator:
    """Sums per-image scores over batches; :meth:`means` gives the set's averages."""

    count: int = 0

    def __post_init__(self) -> None:
        self.sums = dict.fromkeys(METRIC_NAMES, 0.0)
        self._pending: list[dict[str, torch.Tensor]] = []

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Score a batch (kept on its device until :meth:`means`, so adding never synchronizes)."""
        scores = per_image_scores(pred, target)
        self._pending.append({k: v.sum() for k, v in scores.items()})
        self.count += int(pred.shape[0])
        return scores

    def add_logits(self, logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> dict[str, torch.Tensor]:
        """Score logits: a pixel is foreground when ``sigmoid(logit) >= threshold``."""
        level = torch.logit(torch.tensor(threshold, dtype=torch.float64)).item()
        return self.add(logits.float() >= level, target > 0.5)

    def means(self) -> dict[str, float]:
        for batch in self._pending:
            for key, value in batch.items():
                self.sums[key] += float(value)
        self._pending.clear()
        return {k: (v / self.count if self.count else float("nan")) for k, v in self.sums.items()}
