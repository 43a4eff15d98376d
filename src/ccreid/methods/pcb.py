"""PCB: Part-based Convolutional Baseline (Sun et al., ECCV 2018), as torchreid builds it
(``torchreid/models/pcb.py`` ``pcb_p6``, ``losses.DeepSupervision``).

The last feature map is average-pooled into six horizontal stripes ``[B, C, 6, 1]``; in
training they go through dropout 0.5, one shared reduction (1x1 conv without bias,
BatchNorm2d, ReLU: ``C -> 256``) and a classifier per stripe (linear with bias); the loss is
the mean over the stripes of the label-smoothed cross-entropies (no triplet, as in the
paper). Retrieval uses the pooled stripes L2-normalised over the channels and flattened
(``[B, C * 6]``, torchreid's layout). Preset ``pcb``.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.config import Config
from ccreid.losses import CrossEntropyLabelSmooth
from ccreid.methods.base import Preset, register_preset
from ccreid.methods.recipe import RecipeOptimizer
from ccreid.models import Backbone
from ccreid.models.backbones import STAGES
from ccreid.training.pretrained import pretrained_backbone

PARTS = 6
REDUCED_DIM = 256
DROPOUT = 0.5


class PCBModel(nn.Module):
    """Backbone -> ``parts`` stripes -> dropout, shared reduction, per-stripe classifier.

    Training mode: ``feat`` (the pooled stripes, flattened), ``bn_feat`` (the reduced stripes,
    flattened), ``part_logits`` ``[B, parts, classes]``, ``attention`` (empty). Eval mode: the
    pooled stripes L2-normalised over the channels, flattened channel-major (``[B, C * parts]``)."""

    def __init__(self, backbone: Backbone, num_classes: int, parts: int = PARTS, reduced: int = REDUCED_DIM,
                 dropout: float = DROPOUT) -> None:
        super().__init__()
        self.backbone = backbone
        self.parts = parts
        self.pool = nn.AdaptiveAvgPool2d((parts, 1))
        self.dropout = nn.Dropout(dropout)
        channels = backbone.out_channels
        self.reduce = nn.Sequential(nn.Conv2d(channels, reduced, 1, bias=False), nn.BatchNorm2d(reduced),
                                    nn.ReLU(inplace=True))
        self.classifiers = nn.ModuleList(nn.Linear(reduced, num_classes) for _ in range(parts))
        nn.init.kaiming_normal_(self.reduce[0].weight, mode="fan_out", nonlinearity="relu")  # torchreid's init
        for clf in self.classifiers:
            nn.init.normal_(clf.weight, 0, 0.01)
            nn.init.zeros_(clf.bias)
        self.num_classes = num_classes
        self.out_dim = parts * channels
        self.feature = "bn"
        self.bsga = nn.ModuleDict()  # no attention branch (activation-map tools read this)

    def feature_map(self, images: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        x = self.backbone.stem(images)
        for name in STAGES:
            x = self.backbone.stage(name)(x)
        return x, []

    def stripes(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, parts, C]``: the pooled column vector of each horizontal stripe."""
        return self.pool(self.feature_map(images)[0]).squeeze(-1).transpose(1, 2)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor] | torch.Tensor:
        pooled = self.pool(self.feature_map(images)[0])  # [B, C, parts, 1]
        if not self.training:
            return F.normalize(pooled, dim=1).flatten(1)
        reduced = self.reduce(self.dropout(pooled))  # [B, reduced, parts, 1]
        logits = torch.stack([clf(reduced[:, :, i, 0]) for i, clf in enumerate(self.classifiers)], dim=1)
        return {"feat": pooled.flatten(1), "bn_feat": reduced.flatten(1), "part_logits": logits, "attention": []}


class PCBObjective(nn.Module):
    """Mean over stripes of the label-smoothed identity cross-entropy (torchreid's DeepSupervision)."""

    def __init__(self, num_classes: int, label_smoothing: float) -> None:
        super().__init__()
        self.ce = CrossEntropyLabelSmooth(num_classes, label_smoothing)

    def forward(self, outputs: Dict[str, torch.Tensor], pids: torch.Tensor, *_: object
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        logits = outputs["part_logits"]
        loss = sum(self.ce(logits[:, i], pids) for i in range(logits.shape[1])) / logits.shape[1]
        return loss, {"ce_parts": loss.detach().float()}


class PCBMethod(RecipeOptimizer):
    """Six-stripe PCB trained with the trainer's optimizer and schedule."""

    runs_on_clips = False  # its network takes images

    @classmethod
    def build_network(cls, cfg: Config, preset: Preset, num_classes: int) -> nn.Module:
        model = cfg.model
        backbone = pretrained_backbone(model)
        return PCBModel(backbone, num_classes)

    def build_objective(self) -> nn.Module:
        return PCBObjective(self.data.num_pids, self.cfg.loss.label_smoothing)


register_preset("pcb", PCBMethod)
