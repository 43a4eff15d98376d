"""ReIDModel: ResNet backbone (+ BSGA after chosen stages) + pooling/BNNeck/classifier head.

``forward(images, return_attention=False)`` follows the model contract of
docs/ARCHITECTURE.md: in training mode a dict ``feat`` / ``bn_feat`` / ``logits`` /
``attention``; in eval mode the retrieval feature (``bn_feat``, or ``feat`` with
``feature="pre"``), or a dict ``feat`` / ``bn_feat`` / ``attention`` with
``return_attention=True``. No parsing map is needed at test time.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Union

import torch
from torch import nn

from ccreid.choices import FEATURES
from ccreid.errors import CCReIDError
from ccreid.models.backbones import STAGES, Backbone
from ccreid.models.bsga import build_bsga
from ccreid.models.heads import BNNeckHead


class ReIDModel(nn.Module):
    """Backbone -> (BSGA) -> head; ``out_dim`` is the retrieval feature size."""

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        pooling: str = "avg",
        bsga_stages: Sequence[str] = (),
        feature: str = "bn",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.bsga = build_bsga(backbone.stage_channels, list(bsga_stages))
        self.head = BNNeckHead(backbone.out_channels, num_classes, pooling)
        self.num_classes = num_classes
        self.out_dim = self.head.out_dim
        self.feature = feature

    @property
    def feature(self) -> str:
        """Which feature eval mode returns: ``bn`` (after BNNeck) or ``pre`` (before)."""
        return self._feature

    @feature.setter
    def feature(self, value: str) -> None:
        if value not in FEATURES:
            raise CCReIDError(f"config key 'test.feature': {value!r} is not one of {', '.join(FEATURES)}")
        self._feature = value

    def feature_map(self, images: torch.Tensor) -> tuple[torch.Tensor, List[torch.Tensor]]:
        """The last stage's map (after attention) and the attention maps, stage order."""
        x = self.backbone.stem(images)
        attention: List[torch.Tensor] = []
        for name in STAGES:
            x = self.backbone.stage(name)(x)
            if name in self.bsga:
                x, amap = self.bsga[name](x)
                attention.append(amap)
        return x, attention

    def head_outputs(self, fmap: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The head's outputs (``feat``, ``bn_feat``, ``logits`` in training) for ``fmap``."""
        return self.head(fmap)

    def forward(
        self, images: torch.Tensor, return_attention: bool = False
    ) -> Union[torch.Tensor, Dict[str, Union[torch.Tensor, List[torch.Tensor]]]]:
        fmap, attention = self.feature_map(images)
        out: Dict[str, Union[torch.Tensor, List[torch.Tensor]]] = dict(self.head_outputs(fmap))
        out["attention"] = attention
        if self.training or return_attention:
            return out
        return out["bn_feat"] if self.feature == "bn" else out["feat"]
