"""timm models as re-ID backbones: ``model.backbone=timm:<timm model name>`` (the ``timm`` extra).

The model is built with ``num_classes=0, global_pool=""`` so its final feature map feeds the
ccreid pooling/BNNeck head; ``model.last_stride=1`` asks timm for ``output_stride=16``
(a dilated last stage; models without it need ``last_stride=2``). Built with random weights:
:func:`ccreid.training.pretrained.load_pretrained` loads timm's own ImageNet weights or a local
weight file (the keys of the timm model) into ``net``.

Stages: timm ResNets (``resnet50.a1_in1k``, ``seresnext50_32x4d``, ...) expose ``layer1``..``layer4``
as ccreid ResNets do, so BSGA may follow any of them; any other timm model is one stage,
``layer4`` (its final map), and BSGA may follow only that one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Dict

import torch
from torch import nn

from ccreid.errors import CCReIDError
from ccreid.models.backbones import STAGES, Backbone, check_stage


def import_timm(name: str) -> ModuleType:
    try:
        import timm
    except ImportError:
        raise CCReIDError(
            f"config key 'model.backbone': timm:{name} needs timm (pip install timm, or pip install 'ccreid[timm]')"
        )
    return timm


def check_timm_name(name: str) -> None:
    """Raise :class:`CCReIDError` unless timm is installed and knows ``name``."""
    if not import_timm(name).is_model(name):
        raise CCReIDError(
            f"config key 'model.backbone': timm has no model {name!r} "
            "(list them with: python -c \"import timm; print(timm.list_models('resnet*'))\")"
        )


def _create(timm: ModuleType, name: str, kwargs: Dict[str, Any]) -> nn.Module:
    """``timm.create_model``; a failure is a one-line error naming the key to change."""
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as err:  # e.g. TypeError: a model without the output_stride option
        hint = "; set model.last_stride=2 if it has no output_stride option" if "output_stride" in kwargs else ""
        first_line = next(iter(str(err).splitlines()), "")
        raise CCReIDError(
            f"config key 'model.backbone': cannot build timm:{name} ({type(err).__name__}: {first_line}){hint}"
        )


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class TimmBackbone(Backbone):
    """A timm model's feature extractor behind the :class:`ccreid.models.backbones.Backbone` interface."""

    def __init__(self, name: str, width_mult: float = 1.0, last_stride: int = 1) -> None:
        super().__init__()
        timm = import_timm(name)
        check_timm_name(name)
        if name.startswith("vit_"):
            raise CCReIDError(f"config key 'model.backbone': timm:{name} is a transformer (tokens, no feature map); "
                              f"train it with model.preset=vit model.vit.name={name}")
        if width_mult != 1.0:
            raise CCReIDError(f"config key 'model.width_mult': timm backbones need 1.0 (got {width_mult})")
        if last_stride not in (1, 2):
            raise CCReIDError(f"config key 'model.last_stride': {last_stride} must be 1 or 2")
        kwargs: Dict[str, Any] = {"num_classes": 0, "global_pool": ""}
        if last_stride == 1:
            kwargs["output_stride"] = 16
        self.name, self.arch, self.create_kwargs = name, f"timm:{name}", kwargs
        self.net = _create(timm, name, kwargs)
        self.is_resnet = isinstance(self.net, timm.models.resnet.ResNet)
        self.out_channels = int(self.net.num_features)
        if self.is_resnet:
            self.stage_channels = {i["module"]: i["num_chs"] for i in self.net.feature_info if i["module"] in STAGES}
        else:
            self.stage_channels = {"layer4": self.out_channels}

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_resnet:
            return x
        return self.net.maxpool(self.net.act1(self.net.bn1(self.net.conv1(x))))

    def stage(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """A timm ResNet's ``layerN``; for other models ``layer4`` is the whole network."""
        check_stage(name)
        if self.is_resnet:
            return getattr(self.net, name)
        return self._features if name == "layer4" else _identity

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net.forward_features(x)
        if out.dim() != 4:
            raise CCReIDError(
                f"config key 'model.backbone': timm:{self.name} returns {out.dim()}-D tokens, not a "
                "[B,C,H,W] feature map; use a convolutional timm model (ViTs: model.preset=vit)"
            )
        return out
