"""torchvision ResNets as re-ID backbones: last stride, width multiplier, pretrained weights.

``BACKBONES.get("resnet50")(pretrained="none", width_mult=1.0, last_stride=1)`` returns a
:class:`ResNetBackbone`: the stem and ``layer1``..``layer4`` of a torchvision ResNet under
torchvision's parameter names (so torchvision checkpoints load as they are), with
per-stage access for attention branches and ``out_channels`` for the head.
``width_mult < 1`` scales every channel count (fast CPU runs) using torchvision's own
``BasicBlock``/``Bottleneck`` classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Type, Union

import torch
from torch import nn
from torch.hub import load_state_dict_from_url
from torchvision.models import get_model_weights
from torchvision.models.resnet import BasicBlock, Bottleneck

from ccreid.errors import CCReIDError
from ccreid.registry import Registry

Block = Type[Union[BasicBlock, Bottleneck]]
BackboneFactory = Callable[..., "ResNetBackbone"]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")

STAGES = ("layer1", "layer2", "layer3", "layer4")
#: Checkpoint key prefixes removed before matching (DataParallel, re-ID codebases).
STRIP_PREFIXES = ("module.", "backbone.", "model.", "base.")


@dataclass
class LoadReport:
    """What loading a weight file into a backbone matched and what it did not."""

    source: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # backbone keys the file lacks
    unexpected: List[str] = field(default_factory=list)  # file keys the backbone lacks
    mismatched: List[str] = field(default_factory=list)  # same name, other shape (skipped)


class ResNetBackbone(nn.Module):
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
        self.load_report: Optional[LoadReport] = None
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
        if name not in STAGES:
            raise CCReIDError(f"unknown backbone stage {name!r}; choose from {', '.join(STAGES)}")
        return getattr(self, name)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in STAGES:
            x = getattr(self, name)(x)
        return x


def _read_weight_file(path: Path) -> Mapping[str, object]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling and safetensors errors come in many types
        raise CCReIDError(
            f"config key 'model.pretrained': cannot read weight file {path} "
            f"({type(err).__name__}); pass a .pth/.pt state dict or a .safetensors file"
        )


def _unwrap(obj: Mapping[str, object]) -> Mapping[str, object]:
    """A checkpoint may wrap its state dict under ``state_dict`` or ``model``."""
    for key in ("state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return inner
    return obj


def _canonical_key(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def load_state_into(backbone: ResNetBackbone, state: Mapping[str, object], source: str) -> LoadReport:
    """Copy matching tensors of ``state`` into ``backbone``; ``fc.*`` is ignored.

    Common prefixes (``module.``, ``backbone.``, ``model.``, ``base.``) are stripped.
    Raises :class:`CCReIDError` when no tensor matched.
    """
    own = backbone.state_dict()
    tensors = {_canonical_key(k): v for k, v in _unwrap(state).items() if isinstance(v, torch.Tensor)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    report = LoadReport(source)
    matched = {}
    for key, value in tensors.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append(key)
        else:
            matched[key] = value
    if not matched:
        raise CCReIDError(
            f"config key 'model.pretrained': no tensor of {source} matches the backbone "
            f"(first keys: {', '.join(list(tensors)[:3]) or 'none'}); is it a torchvision ResNet of the same depth and width?"
        )
    backbone.load_state_dict(matched, strict=False)
    report.loaded = sorted(matched)
    report.missing = sorted(k for k in own if k not in matched and not k.endswith("num_batches_tracked"))
    return report


def load_weight_file(backbone: ResNetBackbone, path: Union[str, Path]) -> LoadReport:
    """Load a local ``.pth``/``.pt`` (``weights_only``) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise CCReIDError(
            f"config key 'model.pretrained': weight file {path} not found (use imagenet, none or a path to a .pth/.safetensors file)"
        )
    return load_state_into(backbone, _read_weight_file(path), str(path))


def load_imagenet(backbone: ResNetBackbone, arch: str) -> LoadReport:
    """torchvision's default ImageNet weights of ``arch`` (downloaded into the torch hub cache)."""
    weights = get_model_weights(arch).DEFAULT
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        state = load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except Exception as err:  # URLError, socket errors, hash mismatch...
        raise CCReIDError(
            f"config key 'model.pretrained': cannot download {weights} ({type(err).__name__}); "
            f"put the file at {cached}, or set model.pretrained=/path/to/file or model.pretrained=none"
        )
    return load_state_into(backbone, state, str(weights))


def _builder(arch: str, block: Block, layers: Sequence[int]) -> BackboneFactory:
    def build(pretrained: str = "none", width_mult: float = 1.0, last_stride: int = 1) -> ResNetBackbone:
        backbone = ResNetBackbone(block, layers, width_mult, last_stride)
        if pretrained == "imagenet":
            if width_mult != 1.0:
                raise CCReIDError(
                    f"config key 'model.pretrained': imagenet weights need model.width_mult=1 (got {width_mult}); use pretrained=none"
                )
            backbone.load_report = load_imagenet(backbone, arch)
        elif pretrained != "none":
            backbone.load_report = load_weight_file(backbone, pretrained)
        return backbone

    build.__doc__ = f"{arch} backbone: ``pretrained`` is 'none', 'imagenet' or a weight-file path."
    return BACKBONES.register(arch)(build)


resnet18 = _builder("resnet18", BasicBlock, (2, 2, 2, 2))
resnet34 = _builder("resnet34", BasicBlock, (3, 4, 6, 3))
resnet50 = _builder("resnet50", Bottleneck, (3, 4, 6, 3))
resnet101 = _builder("resnet101", Bottleneck, (3, 4, 23, 3))
