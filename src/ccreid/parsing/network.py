"""SCHP's inference network (AugmentCE2P on ResNet-101) in plain PyTorch.

Module names follow the official checkpoints' keys (``fushion`` is SCHP's spelling), so
:func:`ccreid.parsing.checkpoint.load_schp` loads the released files unchanged. SCHP's
InPlaceABNSync is an :class:`ABN` here: an ordinary ``nn.BatchNorm2d`` (its weight holds
``|gamma| + eps`` once loaded) followed by leaky ReLU 0.01 where SCHP keeps an activation.
:meth:`SCHPNetwork.fuse` folds every BatchNorm into the convolution before it.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.models.fuse import fold_pairs

#: leaky ReLU slope of InPlaceABNSync's activation (SCHP's heads)
LEAKY_SLOPE = 0.01
#: bottleneck blocks per stage of ResNet-101
RESNET101_BLOCKS = (3, 4, 23, 3)
#: bin sizes of the pyramid-pooling context module
PSP_BINS = (1, 2, 3, 6)


class ABN(nn.BatchNorm2d):
    """BatchNorm2d, then leaky ReLU when ``leaky`` (InPlaceABNSync in eval mode, once the
    checkpoint's ``|gamma| + eps`` scale is folded into ``weight``)."""

    def __init__(self, channels: int, leaky: bool = True) -> None:
        super().__init__(channels)
        self.leaky = leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.leaky else x


class FusedABN(nn.Module):
    """What an :class:`ABN` becomes once folded into its convolution: the activation only."""

    def __init__(self, leaky: bool) -> None:
        super().__init__()
        self.leaky = leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, LEAKY_SLOPE) if self.leaky else x


def conv(cin: int, cout: int, k: int = 1, stride: int = 1, dilation: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=bias)


def upsample(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True``, as everywhere in SCHP."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class Bottleneck(nn.Module):
    """1x1, 3x3 (stride, dilation), 1x1; the shortcut is a 1x1 conv + BN in a stage's first block."""

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, downsample: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv(cin, planes), ABN(planes, leaky=False)
        self.conv2, self.bn2 = conv(planes, planes, 3, stride, dilation), ABN(planes, leaky=False)
        self.conv3, self.bn3 = conv(planes, planes * 4), ABN(planes * 4, leaky=False)
        self.downsample = (nn.Sequential(conv(cin, planes * 4, stride=stride), ABN(planes * 4, leaky=False))
                           if downsample else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def stage(cin: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(*(Bottleneck(cin if i == 0 else planes * 4, planes, stride if i == 0 else 1, dilation,
                                      downsample=i == 0) for i in range(blocks)))


def conv_abn(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(conv(cin, cout, k), ABN(cout))


class PSPModule(nn.Module):
    """Pyramid pooling: pooled 1x1 conv + ABN branches at each bin size, upsampled and concatenated
    with the input, then a 3x3 conv + ABN."""

    def __init__(self, cin: int = 2048, cout: int = 512) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), conv(cin, cout), ABN(cout)) for size in PSP_BINS)
        self.bottleneck = conv_abn(cin + len(PSP_BINS) * cout, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        priors = [upsample(branch(x), size) for branch in self.stages]
        return self.bottleneck(torch.cat(priors + [x], 1))


class EdgeModule(nn.Module):
    """Edge branch on stages 1-3: features (768 channels) and 2-class edge logits at stage-1 size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv_abn(256, 256), conv_abn(512, 256), conv_abn(1024, 256)
        self.conv4 = conv(256, 2, 3, bias=True)
        self.conv5 = conv(6, 2, bias=True)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        size = x1.shape[-2:]
        feats = [self.conv1(x1), self.conv2(x2), self.conv3(x3)]
        maps = [self.conv4(f) for f in feats]
        feats = feats[:1] + [upsample(f, size) for f in feats[1:]]
        maps = maps[:1] + [upsample(m, size) for m in maps[1:]]
        return self.conv5(torch.cat(maps, 1)), torch.cat(feats, 1)


class DecoderModule(nn.Module):
    """Context features upsampled to stage 1 and joined with its 48-channel projection."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv_abn(512, 256), conv_abn(256, 48)
        self.conv3 = nn.Sequential(conv(304, 256), ABN(256), conv(256, 256), ABN(256))
        self.conv4 = conv(256, num_classes, bias=True)

    def forward(self, context: torch.Tensor, low: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        top = upsample(self.conv1(context), low.shape[-2:])
        feature = self.conv3(torch.cat([top, self.conv2(low)], 1))
        return self.conv4(feature), feature


class SCHPNetwork(nn.Module):
    """AugmentCE2P (ResNet-101, output stride 8): ``forward(images) -> fusion logits [B,C,H/4,W/4]``.

    Inputs are BGR images normalised with ImageNet statistics in BGR order (see
    :mod:`ccreid.parsing.warp`); :meth:`outputs` also returns the intermediate results.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1, self.bn1 = conv(3, 64, 3, stride=2), ABN(64, leaky=False)
        self.conv2, self.bn2 = conv(64, 64, 3), ABN(64, leaky=False)
        self.conv3, self.bn3 = conv(64, 128, 3), ABN(128, leaky=False)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 128
        for i, (planes, blocks, stride, dilation) in enumerate(
                zip((64, 128, 256, 512), RESNET101_BLOCKS, (1, 2, 2, 1), (1, 1, 1, 2)), start=1):
            setattr(self, f"layer{i}", stage(cin, planes, blocks, stride, dilation))
            cin = planes * 4
        self.context_encoding = PSPModule()
        self.edge = EdgeModule()
        self.decoder = DecoderModule(num_classes)
        self.fushion = nn.Sequential(conv(1024, 256), ABN(256), nn.Dropout2d(0.1),
                                     conv(256, num_classes, bias=True))

    def outputs(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every named result: stem, layer1-4, context, parsing, decoder_feature, edge,
        edge_feature and fusion (the logits SCHP's extractor uses)."""
        x = F.relu(self.bn1(self.conv1(images)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        out = {"stem": self.maxpool(x)}
        x = out["stem"]
        for i in range(1, 5):
            x = out[f"layer{i}"] = getattr(self, f"layer{i}")(x)
        out["context"] = self.context_encoding(out["layer4"])
        out["parsing"], out["decoder_feature"] = self.decoder(out["context"], out["layer1"])
        out["edge"], out["edge_feature"] = self.edge(out["layer1"], out["layer2"], out["layer3"])
        out["fusion"] = self.fushion(torch.cat([out["decoder_feature"], out["edge_feature"]], 1))
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.outputs(images)["fusion"]

    def conv_bn_pairs(self) -> List[Tuple[str, str]]:
        """(convolution, BatchNorm) module names: each BN directly follows its conv."""
        modules = list(self.named_modules())
        return [(prev_name, name) for (prev_name, prev), (name, module) in zip(modules, modules[1:])
                if isinstance(module, ABN) and isinstance(prev, nn.Conv2d)]

    @torch.no_grad()
    def fuse(self) -> "SCHPNetwork":
        """Fold every BatchNorm into the convolution before it (eval mode only); returns self.
        The folding is :func:`ccreid.models.fuse.fold_pairs`; each ABN keeps its activation."""
        if self.training:
            raise RuntimeError("fuse() needs eval mode (BatchNorm running statistics)")
        return fold_pairs(self, self.conv_bn_pairs(), lambda bn: FusedABN(bn.leaky))
