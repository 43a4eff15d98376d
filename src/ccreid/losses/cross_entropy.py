"""Cross-entropy with label smoothing (Szegedy et al. 2016; BoT re-ID baseline)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLabelSmooth(nn.Module):
    """``mean_i sum_k -q_ik log p_ik`` with ``q = (1 - eps) * onehot(y) + eps / K``.

    An empty batch gives 0 (connected to ``logits``' graph). ``rows`` (bool ``[B]``)
    averages over the selected rows only, without indexing (no device sync); no selected
    row gives 0.
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.num_classes = num_classes
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        if logits.shape[0] == 0:
            return logits.sum() * 0.0
        log_probs = F.log_softmax(logits.float(), dim=1)
        smooth = torch.full_like(log_probs, self.epsilon / self.num_classes)
        smooth.scatter_add_(1, targets.view(-1, 1), torch.full_like(log_probs[:, :1], 1.0 - self.epsilon))
        per_row = -(smooth * log_probs).sum(dim=1)
        if rows is None:
            return per_row.mean()
        weights = rows.to(per_row.dtype)
        return (per_row * weights).sum() / weights.sum().clamp(min=1.0)
