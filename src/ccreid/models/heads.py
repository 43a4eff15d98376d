"""Global pooling (avg / max / gem / avgmax), BNNeck and the identity classifier."""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.choices import POOLINGS
from ccreid.errors import CCReIDError


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent ``p`` (initialised to 3)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32: x ** 3 overflows float16 for activations above ~40
        pooled = F.adaptive_avg_pool2d(x.float().clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p)
        return pooled.to(x.dtype)


class AvgMaxPool(nn.Module):
    """Concatenation of average and max pooling (twice the channels, as Simple-CCReID)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1)


def build_pooling(name: str) -> nn.Module:
    """The pooling layer ``name``; its output is ``[B, C * pooled_dim_factor(name), 1, 1]``."""
    if name == "avg":
        return nn.AdaptiveAvgPool2d(1)
    if name == "max":
        return nn.AdaptiveMaxPool2d(1)
    if name == "gem":
        return GeM()
    if name == "avgmax":
        return AvgMaxPool()
    raise CCReIDError(f"config key 'model.pooling': {name!r} is not one of {', '.join(POOLINGS)}")


def pooled_dim_factor(name: str) -> int:
    return 2 if name == "avgmax" else 1


class BNNeckHead(nn.Module):
    """Pooling -> feature ``feat``; BatchNorm1d (bias frozen at 0) -> ``bn_feat``; bias-free
    linear classifier on ``bn_feat`` -> ``logits`` (BNNeck, Luo et al. 2019)."""

    def __init__(self, in_channels: int, num_classes: int, pooling: str = "avg") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.pool = build_pooling(pooling)
        self.out_dim = in_channels * pooled_dim_factor(pooling)
        self.bnneck = nn.BatchNorm1d(self.out_dim)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(self.out_dim, num_classes, bias=False)
        nn.init.ones_(self.bnneck.weight)
        nn.init.zeros_(self.bnneck.bias)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, fmap: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.neck(self.pool(fmap).flatten(1))

    def neck(self, feat: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The outputs for pooled features ``feat`` ``[B, out_dim]``."""
        bn_feat = self.bnneck(feat)
        out = {"feat": feat, "bn_feat": bn_feat}
        if self.training:
            out["logits"] = self.classifier(bn_feat)
        return out
