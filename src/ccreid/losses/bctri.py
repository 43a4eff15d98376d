"""BCTri: the batch cross-clothes triplet loss (METHOD.md).

For anchor ``i``: positives ``P_i = {j : y_j = y_i, c_j != c_i}`` (same person, other
clothes), hardest negative ``k = argmin_{k : y_k != y_i} d(x_i, x_k)``, and
``L_i = sum_{j in P_i} max(m + d(x_i, x_j) - d(x_i, x_k), 0)``.
An anchor counts when ``P_i`` is non-empty and the batch holds another identity:

- ``reduction="mean"``: the mean of ``L_i / |P_i|`` over counted anchors (METHOD.md);
- ``reduction="sum"``: the sum of ``L_i / |P_i|`` over counted anchors (no division
  by the number of anchors).

With no counted anchor the loss is 0 (finite, connected to ``feat``'s graph); the number
of anchors with an empty ``P_i`` is returned beside the loss, for the training log.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.losses.triplet import METRICS, pairwise_distance

REDUCTIONS = ("mean", "sum")


def bctri_loss(
    feat: torch.Tensor,
    pids: torch.Tensor,
    clothes: torch.Tensor,
    margin: float = 0.3,
    metric: str = "euclidean",
    reduction: str = "mean",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(loss, num_anchors_without_positive)``; the count is an int64 0-dim tensor."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    dist = pairwise_distance(feat, metric)
    same_id = pids.unsqueeze(0) == pids.unsqueeze(1)
    pos = same_id & (clothes.unsqueeze(0) != clothes.unsqueeze(1))
    neg = ~same_id
    num_pos = pos.sum(dim=1)
    counted = (num_pos > 0) & neg.any(dim=1)
    hardest_neg = dist.masked_fill(~neg, float("inf")).amin(dim=1)
    hardest_neg = torch.where(counted, hardest_neg, torch.zeros_like(hardest_neg))
    hinge = F.relu(margin + dist - hardest_neg.unsqueeze(1))
    per_anchor = torch.where(pos, hinge, torch.zeros_like(hinge)).sum(dim=1) / num_pos.clamp(min=1)
    per_anchor = torch.where(counted, per_anchor, torch.zeros_like(per_anchor))
    loss = per_anchor.sum()
    if reduction == "mean":
        loss = loss / counted.sum().clamp(min=1)
    return loss, (num_pos == 0).sum()


class BCTriLoss(nn.Module):
    """Module form of :func:`bctri_loss`."""

    def __init__(self, margin: float = 0.3, metric: str = "euclidean", reduction: str = "mean") -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.margin = margin
        self.metric = metric
        self.reduction = reduction

    def forward(self, feat: torch.Tensor, pids: torch.Tensor, clothes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return bctri_loss(feat, pids, clothes, self.margin, self.metric, self.reduction)
