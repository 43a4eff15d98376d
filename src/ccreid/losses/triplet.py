"""Pairwise distances and the batch-hard triplet loss (Hermans et al. 2017)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

METRICS = ("euclidean", "cosine")


def pairwise_distance(feat: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """``[B, D] -> [B, B]`` distances, computed in float32.

    ``euclidean``: ``|a - b|`` from the differences themselves, not ``|a|^2 + |b|^2 - 2 a.b``
    (whose float32 cancellation left d(a, a) ~ 1e-3 with some BLAS kernels): a feature's
    distance to itself, or to an identical copy, is exactly 0, with a zero gradient there.
    ``cosine``: ``1 - cos(a, b)``.
    """
    feat = feat.float()
    if metric == "euclidean":
        return torch.cdist(feat, feat, compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "cosine":
        unit = F.normalize(feat, dim=1)
        return 1.0 - unit @ unit.t()
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def batch_hard_triplet_loss(
    feat: torch.Tensor, pids: torch.Tensor, margin: Optional[float] = 0.3, metric: str = "euclidean"
) -> torch.Tensor:
    """``mean_i max(margin + max_{p: y_p = y_i, p != i} d_ip - min_{n: y_n != y_i} d_in, 0)``;
    ``margin=None``: the soft margin ``mean_i log(1 + exp(d_ip - d_in))`` (TransReID's ``NO_MARGIN``).

    Anchors without another image of their identity or without any other identity in
    the batch are left out of the mean; 0 (connected to ``feat``'s graph) if none is left.
    """
    dist = pairwise_distance(feat, metric)
    same = pids.unsqueeze(0) == pids.unsqueeze(1)
    eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    pos = same & ~eye
    neg = ~same
    valid = pos.any(dim=1) & neg.any(dim=1)
    hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(~neg, float("inf")).amin(dim=1)
    gap = torch.where(valid, hardest_pos - hardest_neg, torch.zeros_like(hardest_pos))
    per_anchor = F.softplus(gap) if margin is None else F.relu(margin + gap)
    hinge = torch.where(valid, per_anchor, torch.zeros_like(gap))
    return hinge.sum() / valid.sum().clamp(min=1)


class BatchHardTripletLoss(nn.Module):
    """Module form of :func:`batch_hard_triplet_loss`."""

    def __init__(self, margin: Optional[float] = 0.3, metric: str = "euclidean") -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.margin = margin
        self.metric = metric

    def forward(self, feat: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        return batch_hard_triplet_loss(feat, pids, self.margin, self.metric)
