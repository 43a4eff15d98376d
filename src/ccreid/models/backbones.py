"""Re-ID backbones: torchvision ResNets (last stride, width multiplier).

``BACKBONES.get("resnet50")(width_mult=1.0, last_stride=1)`` returns a
:class:`ResNetBackbone`: the stem and ``layer1``..``layer4`` of a torchvision ResNet under
torchvision's parameter names (so torchvision and timm ResNet checkpoints load as they are),
with per-stage access for attention branches and ``out_channels`` for the head.
``width_mult < 1`` scales every channel count (fast CPU runs) using torchvision's own
``BasicBlock``/``Bottleneck`` classes. :func:`build_backbone` also accepts ``timm:<name>``
(:mod:`ccreid.models.timm_backbone`); both kinds implement :class:`Backbone`. Backbones are
built with random weights; :func:`ccreid.training.pretrained.load_pretrained` loads
``model.pretrained`` into them (a file, or the download at ``weights_url``) and keeps a
:class:`ccreid.models.weights.LoadReport` in ``pretrained_report`` (``None``: nothing loaded).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Type, Union

import torch
from torch import nn
from torchvision.models import get_model_weights
from torchvision.models.resnet import BasicBlock, Bottleneck

from ccreid.errors import CCReIDError
from ccreid.models.weights import LoadReport
from ccreid.registry import Registry

Block = Type[Union[BasicBlock, Bottleneck]]
BackboneFactory = Callable[..., "ResNetBackbone"]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")

STAGES = ("layer1", "layer2", "layer3", "layer4")
TIMM_PREFIX = "timm:"


class Backbone(nn.Module):
    """What :class:`ccreid.models.ReIDModel` needs: ``stem``, ``stage(name)`` for each of
    :data:`STAGES`, ``stage_channels`` (stages BSGA may follow), ``out_channels``; for
    ``model.pretrained``: ``arch`` (named in messages), ``weights_url`` (the ``imagenet``
    download, ``None``: none known) and ``pretrained_report``."""

    stage_channels: Dict[str, int]
    out_channels: int
    arch: str = "backbone"
    weights_url: Optional[str] = None
    pretrained_report: Optional[LoadReport] = None

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stage(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in STAGES:
            x = self.stage(name)(x)
        return x


def check_stage(name: str) -> None:
    """Raise :class:`CCReIDError` unless ``name`` is one of :data:`STAGES`."""
    if name not in STAGES:
        raise CCReIDError(f"unknown backbone stage {name!r}; choose from {', '.join(STAGES)}")


class ResNetBackbone(Backbone):
    """Stem + ``layer1``..``layer4`` of a ResNet (no pooling, no fc)."""

    def __init__(self, block: Block, layers: Sequence[int], width_mult: float = 1.0, last_stride: int = 1) -> None:
        super().__init__()
        if width_mult <= 0 or width_mult > 1:
            raise CCReIDError(f"config key 'model.width_mult': {width_mult} must be in (0, 1]")
        if last_stride not in (1, 2):
            raise CCReIDError(f"config key 'model.last_stride': {last_stride} must be 1 or 2")
        widths = [max(1, round(w * width_mult)) for w in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        strides = (1, 2, 2, last_stride)
        self.stage_channels: Dict[str, int] = {}
        for name, planes, blocks, stride in zip(STAGES, widths, layers, strides):
            setattr(self, name, self._make_layer(block, planes, blocks, stride))
            self.stage_channels[name] = planes * block.expansion
        self.out_channels = self.stage_channels["layer4"]
        self.width_mult = width_mult
        self._init_weights()

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """torchvision's ``ResNet._make_layer`` (same module names, so the same keys)."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        modules += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stage(self, name: str) -> nn.Sequential:
        """The module of stage ``name`` (``layer1``..``layer4``)."""
        check_stage(name)
        return getattr(self, name)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


def _builder(arch: str, block: Block, layers: Sequence[int]) -> BackboneFactory:
    def build(width_mult: float = 1.0, last_stride: int = 1) -> ResNetBackbone:
        backbone = ResNetBackbone(block, layers, width_mult, last_stride)
        backbone.arch = arch
        backbone.weights_url = get_model_weights(arch).DEFAULT.url  # torchvision's default ImageNet weights
        return backbone

    build.__doc__ = f"{arch} backbone with random weights (torchvision's layout and ImageNet weights URL)."
    return BACKBONES.register(arch)(build)


resnet18 = _builder("resnet18", BasicBlock, (2, 2, 2, 2))
resnet34 = _builder("resnet34", BasicBlock, (3, 4, 6, 3))
resnet50 = _builder("resnet50", Bottleneck, (3, 4, 6, 3))
resnet101 = _builder("resnet101", Bottleneck, (3, 4, 23, 3))


def check_backbone_name(name: str) -> None:
    """Raise :class:`CCReIDError` unless ``name`` is a registered backbone or ``timm:<model>``."""
    if name.startswith(TIMM_PREFIX):
        from ccreid.models.timm_backbone import check_timm_name

        check_timm_name(name[len(TIMM_PREFIX):])
    elif name not in BACKBONES:
        raise CCReIDError(
            f"config key 'model.backbone': unknown backbone {name!r}; choose one of: "
            f"{', '.join(BACKBONES)}, or timm:<timm model name>"
        )


def build_backbone(name: str, width_mult: float = 1.0, last_stride: int = 1) -> Backbone:
    """The backbone called ``name`` (``resnet50``, ..., or ``timm:<timm model name>``), random weights."""
    if name.startswith(TIMM_PREFIX):
        from ccreid.models.timm_backbone import TimmBackbone

        return TimmBackbone(name[len(TIMM_PREFIX):], width_mult, last_stride)
    check_backbone_name(name)
    return BACKBONES.get(name)(width_mult=width_mult, last_stride=last_stride)
