"""PCB: Part-based Convolutional Baseline (Sun et al., ECCV 2018).

The last feature map is cut into six horizontal stripes; each stripe's average-pooled
column vector goes through its own reduction (a 1x1 conv, i.e. linear 2048 -> 256,
BatchNorm, ReLU) and identity classifier; the loss is the sum of the stripes' label-smoothed
cross-entropies (no triplet, as in the paper). Retrieval uses the six pooled stripe
vectors, each L2-normalised, concatenated (torchreid's PCB convention). Preset ``pcb``.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.config import Config
from ccreid.losses import CrossEntropyLabelSmooth
from ccreid.methods.base import Method, Preset, register_preset
from ccreid.models import Backbone
from ccreid.models.backbones import STAGES
from ccreid.training.pretrained import pretrained_backbone

PARTS = 6
REDUCED_DIM = 256


class PCBModel(nn.Module):
    """Backbone -> ``parts`` stripes -> per-stripe reduction and classifier.

    Training mode: ``feat`` (concatenated stripe vectors), ``bn_feat`` (concatenated reduced
    vectors), ``part_logits`` ``[B, parts, classes]``, ``attention`` (empty). Eval mode: the
    stripe vectors, each L2-normalised, concatenated (``[B, parts * C]``)."""

    def __init__(self, backbone: Backbone, num_classes: int, parts: int = PARTS, reduced: int = REDUCED_DIM) -> None:
        super().__init__()
        self.backbone = backbone
        self.parts = parts
        self.pool = nn.AdaptiveAvgPool2d((parts, 1))
        channels = backbone.out_channels
        self.reduce = nn.ModuleList(nn.Sequential(nn.Linear(channels, reduced), nn.BatchNorm1d(reduced), nn.ReLU())
                                    for _ in range(parts))
        self.classifiers = nn.ModuleList(nn.Linear(reduced, num_classes) for _ in range(parts))
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
        parts = self.stripes(images)
        if not self.training:
            return F.normalize(parts, dim=2).flatten(1)
        reduced = [block(parts[:, i]) for i, block in enumerate(self.reduce)]
        logits = torch.stack([clf(h) for clf, h in zip(self.classifiers, reduced)], dim=1)
        return {"feat": parts.flatten(1), "bn_feat": torch.cat(reduced, 1), "part_logits": logits, "attention": []}


class PCBObjective(nn.Module):
    """Sum over stripes of the label-smoothed identity cross-entropy."""

    def __init__(self, num_classes: int, label_smoothing: float) -> None:
        super().__init__()
        self.ce = CrossEntropyLabelSmooth(num_classes, label_smoothing)

    def forward(self, outputs: Dict[str, torch.Tensor], pids: torch.Tensor, *_: object
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        logits = outputs["part_logits"]
        loss = sum(self.ce(logits[:, i], pids) for i in range(logits.shape[1]))
        return loss, {"ce_parts": loss.detach().float()}


class PCBMethod(Method):
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
