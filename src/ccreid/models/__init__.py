"""Models: backbones, heads, CRE, BSGA and the assembled :class:`ReIDModel`.

From Python::

    from ccreid.models import build_model
    model = build_model("ours", num_classes=150, backbone="resnet18", width_mult=0.5)
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from ccreid.config import ModelConfig
from ccreid.models.backbones import BACKBONES, Backbone, ResNetBackbone, build_backbone
from ccreid.models.bsga import BodyShapeGuidedAttention, bsga_loss
from ccreid.models.cre import ClothesErasure, CREOutput
from ccreid.models.presets import PRESETS, Components, resolve_components
from ccreid.models.reid import ReIDModel
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
    "bsga_loss",
    "build_backbone",
    "build_cre_from_config",
    "build_model",
    "build_model_from_config",
    "resolve_components",
    "summarize",
]


def build_model(
    preset: str = "baseline",
    *,
    num_classes: int,
    backbone: str = "resnet50",
    pretrained: str = "none",
    width_mult: float = 1.0,
    last_stride: int = 1,
    pooling: str = "avg",
    bsga_stages: Sequence[str] = ("layer4",),
    bsga: Optional[bool] = None,
    feature: str = "bn",
) -> ReIDModel:
    """The model of ``preset``; ``bsga_stages`` applies when the preset (or ``bsga=True``)
    switches BSGA on. ``backbone`` may be ``timm:<name>``; ``model.backbone.pretrained_report``
    describes the weights loaded (:mod:`ccreid.models.weights`). CRE and BCTri live outside
    the network (see :func:`build_cre_from_config` and :class:`ccreid.losses.ReIDObjective`)."""
    components = resolve_components(preset, bsga=bsga)
    net = build_backbone(backbone, pretrained, width_mult, last_stride)
    stages = tuple(bsga_stages) if components.bsga else ()
    return ReIDModel(net, num_classes, pooling=pooling, bsga_stages=stages, feature=feature)


def build_model_from_config(model_cfg: ModelConfig, num_classes: int) -> ReIDModel:
    """:func:`build_model` from the ``model`` section of a :class:`ccreid.config.Config`."""
    return build_model(
        model_cfg.preset,
        num_classes=num_classes,
        backbone=model_cfg.backbone,
        pretrained=model_cfg.pretrained,
        width_mult=model_cfg.width_mult,
        last_stride=model_cfg.last_stride,
        pooling=model_cfg.pooling,
        bsga_stages=model_cfg.bsga.stages,
        bsga=model_cfg.bsga.enabled,
    )


def build_cre_from_config(model_cfg: ModelConfig, clothes_labels: Iterable[int]) -> Optional[ClothesErasure]:
    """CRE when the preset (or ``model.cre.enabled``) switches it on, else ``None``.

    ``model.cre.clothes_labels``, when set, replaces the label set's ``clothes_labels``.
    """
    if not resolve_components(model_cfg.preset, cre=model_cfg.cre.enabled).cre:
        return None
    labels = model_cfg.cre.clothes_labels if model_cfg.cre.clothes_labels is not None else clothes_labels
    return ClothesErasure(labels, p=model_cfg.cre.p, fill=model_cfg.cre.fill)
