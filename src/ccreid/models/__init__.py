"""Models: backbones, heads, CRE, BSGA, the assembled :class:`ReIDModel` and its video form
:class:`VideoReIDModel` (:mod:`ccreid.models.video`).

From Python::

    from ccreid.models import build_model
    model = build_model(num_classes=150, backbone="resnet18", width_mult=0.5, bsga_stages=("layer4",))

A preset's network, as ``ccreid train`` builds it: ``ccreid.methods.build_model_from_config(cfg, num_classes)``.
"""

from __future__ import annotations

from typing import Sequence

from ccreid.models.backbones import BACKBONES, Backbone, ResNetBackbone, build_backbone
from ccreid.models.bsga import BodyShapeGuidedAttention, bsga_loss
from ccreid.models.cre import ClothesErasure, CREOutput
from ccreid.models.reid import ReIDModel
from ccreid.models.video import VIDEO_VARIANTS, VideoBackbone, VideoReIDModel, build_video_backbone
from ccreid.models.weights import LoadReport, summarize

__all__ = [
    "BACKBONES",
    "Backbone",
    "BodyShapeGuidedAttention",
    "CREOutput",
    "ClothesErasure",
    "LoadReport",
    "ReIDModel",
    "ResNetBackbone",
    "VIDEO_VARIANTS",
    "VideoBackbone",
    "VideoReIDModel",
    "bsga_loss",
    "build_backbone",
    "build_model",
    "build_video_backbone",
    "summarize",
]


def build_model(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    width_mult: float = 1.0,
    last_stride: int = 1,
    pooling: str = "avg",
    bsga_stages: Sequence[str] = (),
    feature: str = "bn",
) -> ReIDModel:
    """A BNNeck re-ID network: BSGA after each of ``bsga_stages`` (the paper's ``ours``: ``("layer4",)``).
    ``backbone`` may be ``timm:<name>``. Weights are random: load pretrained ones with
    :func:`ccreid.training.pretrained.load_pretrained`. CRE and BCTri live outside the network
    (:mod:`ccreid.methods.paper`)."""
    net = build_backbone(backbone, width_mult, last_stride)
    return ReIDModel(net, num_classes, pooling=pooling, bsga_stages=tuple(bsga_stages), feature=feature)
