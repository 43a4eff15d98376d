"""Models: backbones, heads, CRE, BSGA, the assembled :class:`ReIDModel` and its video form
:class:`VideoReIDModel` (:mod:`ccreid.models.video`).

From Python::

    from ccreid.models import build_model
    model = build_model("ours", num_classes=150, backbone="resnet18", width_mult=0.5)
"""

from __future__ import annotations

from typing import Optional, Sequence

from ccreid.models.backbones import BACKBONES, Backbone, ResNetBackbone, build_backbone
from ccreid.models.bsga import BodyShapeGuidedAttention, bsga_loss
from ccreid.models.cre import ClothesErasure, CREOutput
from ccreid.models.presets import PRESETS, Components, resolve_components
from ccreid.models.reid import ReIDModel
from ccreid.models.video import VIDEO_VARIANTS, VideoBackbone, VideoReIDModel, build_video_backbone
from ccreid.models.weights import LoadReport, summarize

__all__ = [
    "BACKBONES",
    "Backbone",
    "PRESETS",
    "BodyShapeGuidedAttention",
    "CREOutput",
    "ClothesErasure",
    "Components",
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
    "resolve_components",
    "summarize",
]


def build_model(
    preset: str = "baseline",
    *,
    num_classes: int,
    backbone: str = "resnet50",
    width_mult: float = 1.0,
    last_stride: int = 1,
    pooling: str = "avg",
    bsga_stages: Sequence[str] = ("layer4",),
    bsga: Optional[bool] = None,
    feature: str = "bn",
) -> ReIDModel:
    """The model of ``preset``; ``bsga_stages`` applies when the preset (or ``bsga=True``)
    switches BSGA on. ``backbone`` may be ``timm:<name>``. Weights are random: load
    pretrained ones with :func:`ccreid.training.pretrained.load_pretrained`. CRE and BCTri live outside
    the network (see :mod:`ccreid.methods`); from a config: ``ccreid.methods.build_model_from_config``."""
    components = resolve_components(preset, bsga=bsga)
    net = build_backbone(backbone, width_mult, last_stride)
    stages = tuple(bsga_stages) if components.bsga else ()
    return ReIDModel(net, num_classes, pooling=pooling, bsga_stages=stages, feature=feature)
