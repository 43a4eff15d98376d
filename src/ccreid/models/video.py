"""Video backbones and the video re-ID model: an image backbone run on clips (Simple-CCReID's ``vid_resnet``).

:func:`build_video_backbone` wraps an image backbone (with its weights, e.g. ImageNet,
already loaded, as the reference inflates a pretrained 2D ResNet-50) into a
:class:`VideoBackbone`: clips ``[B, T, 3, H, W]`` -> frame maps ``[B, T, C, h, w]``. The
image network runs on every frame; a variant of :data:`VIDEO_VARIANTS` adds temporal blocks
(:mod:`ccreid.models.video_blocks`) that start as the identity, so every variant computes the
image network's maps until trained. :class:`VideoReIDModel` pools each frame (max pooling in
the reference), averages over time, and applies the image model's BNNeck head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from ccreid.errors import CCReIDError
from ccreid.models.backbones import STAGES, Backbone, check_stage
from ccreid.models.reid import ReIDModel
from ccreid.models.video_blocks import (
    AP3D_TEMPERATURE,
    AP3DConv,
    I3DConv,
    NonLocalBlock,
    run_bottleneck,
    to_clip,
    to_frames,
)
from ccreid.models.weights import LoadReport

Placement = Mapping[str, Tuple[int, ...]]  # stage -> indices of its residual blocks


@dataclass(frozen=True)
class VideoVariant:
    """Where a variant adds temporal blocks: ``temporal`` (``"i3d"``, ``"ap3d"`` or ``None``)
    replaces the 3x3 convolution of the bottlenecks at ``temporal_at``; a non-local block
    follows the blocks at ``nonlocal_at``."""

    temporal: Optional[str] = None
    temporal_at: Placement = field(default_factory=dict)
    nonlocal_at: Placement = field(default_factory=dict)


#: Simple-CCReID's placements (``vid_resnet.py``).
C3D_AT: Placement = {"layer2": (0, 2), "layer3": (0, 2, 4)}
NONLOCAL_AT: Placement = {"layer2": (1, 3), "layer3": (1, 3, 5)}

#: name -> variant; Simple-CCReID's c2dres50, i3dres50, ap3dres50, nlres50, ap3dnlres50.
VIDEO_VARIANTS: Dict[str, VideoVariant] = {
    "c2d": VideoVariant(),
    "i3d": VideoVariant("i3d", C3D_AT),
    "ap3d": VideoVariant("ap3d", C3D_AT),
    "nl": VideoVariant(nonlocal_at=NONLOCAL_AT),
    "ap3dnl": VideoVariant("ap3d", C3D_AT, NONLOCAL_AT),
}


def _blocks(image: Backbone, name: str, stage: str, indices: Tuple[int, ...]) -> nn.Sequential:
    """The residual blocks of ``stage``, checked to hold every index of ``indices``."""
    blocks = image.stage(stage)
    if not isinstance(blocks, nn.Sequential):
        raise CCReIDError(f"video backbone {name!r} adds blocks inside ResNet stages; {image.arch} is not a "
                          "ccreid ResNet (use resnet50, or the video backbone c2d)")
    if max(indices) >= len(blocks):
        raise CCReIDError(f"video backbone {name!r} adds blocks at {stage} {list(indices)}; {image.arch}'s {stage} "
                          f"has {len(blocks)} blocks (use resnet50)")
    return blocks


def _temporal_conv(kind: Optional[str], block: nn.Module, name: str, arch: str, temperature: float,
                   contrastive_att: bool) -> nn.Module:
    """The 3D form (``kind``: ``i3d`` or ``ap3d``) of ``block``'s 3x3 convolution."""
    if not isinstance(block, Bottleneck):
        raise CCReIDError(f"video backbone {name!r} inflates the 3x3 convolution of bottleneck blocks; {arch} "
                          "has none (use resnet50 or resnet101)")
    if kind == "i3d":
        return I3DConv(block.conv2)
    return AP3DConv(block.conv2, temperature, contrastive_att)


class VideoBackbone(Backbone):
    """``image`` run on every frame, with the temporal blocks of a :class:`VideoVariant`.

    Tensors between stages are ``[B, T, C, H, W]`` (``stem``, ``stage(name)``, ``forward``).
    ``image`` keeps its modules and parameter names; the added blocks live in ``temporal``
    and ``non_local`` (``ModuleDict``: stage -> block index -> block)."""

    def __init__(self, image: Backbone, variant: VideoVariant, name: str,
                 temperature: float = AP3D_TEMPERATURE, contrastive_att: bool = True) -> None:
        super().__init__()
        self.image = image
        self.name = name
        self.stage_channels = dict(image.stage_channels)
        self.out_channels = image.out_channels
        self.arch = image.arch
        self.temporal = nn.ModuleDict()
        for stage, indices in variant.temporal_at.items():
            blocks = _blocks(image, name, stage, indices)
            self.temporal[stage] = nn.ModuleDict({
                str(i): _temporal_conv(variant.temporal, blocks[i], name, image.arch, temperature, contrastive_att)
                for i in indices
            })
        self.non_local = nn.ModuleDict()
        for stage, indices in variant.nonlocal_at.items():
            _blocks(image, name, stage, indices)
            self.non_local[stage] = nn.ModuleDict({str(i): NonLocalBlock(image.stage_channels[stage]) for i in indices})

    @property
    def pretrained_report(self) -> Optional[LoadReport]:  # type: ignore[override]
        """The image backbone's report of the weights loaded into it."""
        return self.image.pretrained_report

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.image.stem(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def stage(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """Stage ``name`` on ``[B, T, C, H, W]``."""
        check_stage(name)
        return partial(self._run_stage, name)

    def _run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        num_frames = x.shape[1]
        frames = x.flatten(0, 1)
        if name not in self.temporal and name not in self.non_local:
            return self.image.stage(name)(frames).unflatten(0, x.shape[:2])
        temporal = self.temporal[name] if name in self.temporal else {}
        non_local = self.non_local[name] if name in self.non_local else {}
        for index, block in enumerate(self.image.stage(name)):
            key = str(index)
            if key in temporal:
                frames = run_bottleneck(block, frames, partial(temporal[key], conv=block.conv2, num_frames=num_frames))
            else:
                frames = block(frames)
            if key in non_local:
                frames = to_frames(non_local[key](to_clip(frames, num_frames)))
        return frames.unflatten(0, x.shape[:2])


def build_video_backbone(name: str, image: Backbone, temperature: float = AP3D_TEMPERATURE,
                         contrastive_att: bool = True) -> VideoBackbone:
    """The video backbone ``name`` (a key of :data:`VIDEO_VARIANTS`) around ``image``, whose
    weights it shares (load them before or after, into ``image``); ``temperature`` and
    ``contrastive_att`` configure AP3D. Simple-CCReID uses ResNet-50 with last stride 1."""
    if name not in VIDEO_VARIANTS:
        raise CCReIDError(f"unknown video backbone {name!r}; choose one of: {', '.join(VIDEO_VARIANTS)}")
    return VideoBackbone(image, VIDEO_VARIANTS[name], name, temperature, contrastive_att)


class VideoReIDModel(ReIDModel):
    """:class:`ReIDModel` on clips ``[B, T, 3, H, W]``: each frame pooled (``pooling``; ``max``
    as Simple-CCReID), the mean over frames -> BNNeck head. Outputs as :class:`ReIDModel`'s
    (``[B, D]``); BSGA (``bsga_stages``) runs on every frame, its maps ``[B*T, 1, h, w]``."""

    backbone: VideoBackbone

    def __init__(self, backbone: VideoBackbone, num_classes: int, pooling: str = "max",
                 bsga_stages: Sequence[str] = (), feature: str = "bn") -> None:
        super().__init__(backbone, num_classes, pooling=pooling, bsga_stages=bsga_stages, feature=feature)

    def feature_map(self, images: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """The last stage's frame maps ``[B, T, C, h, w]`` and the attention maps, stage order."""
        x = self.backbone.stem(images)
        attention: List[torch.Tensor] = []
        for name in STAGES:
            x = self.backbone.stage(name)(x)
            if name in self.bsga:
                frames, amap = self.bsga[name](x.flatten(0, 1))
                x = frames.unflatten(0, x.shape[:2])
                attention.append(amap)
        return x, attention

    def head_outputs(self, fmap: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Each frame pooled, averaged over the clip, through the BNNeck head."""
        pooled = self.head.pool(fmap.flatten(0, 1)).flatten(1)
        return self.head.neck(pooled.unflatten(0, fmap.shape[:2]).mean(1))
