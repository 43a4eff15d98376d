"""Temporal blocks of the video backbones (Simple-CCReID's ``models/utils``), on image ResNet blocks.

Frames travel through the image backbone folded into the batch (``[B*T, C, H, W]``); a block
that mixes frames unfolds them to a clip ``[B, C, T, H, W]`` (:func:`to_clip`) and folds the
result back (:func:`to_frames`). The 2D modules of the image ResNet stay where they are, so
its ImageNet (or any image) weights load into it unchanged; every block here holds only what
it adds, and starts as the identity on the image network (zero-initialised), as in the reference:

- :class:`I3DConv`: a bottleneck's 3x3 convolution inflated to a 3x3x3 one (temporal padding 1,
  zeros outside the clip); the centre tap *is* the 2D kernel, the two side taps start at zero
  (``c3d_blocks.I3D``: centre initialisation);
- :class:`AP3DConv`: AP3D's ``APP3DC``: the 2D convolution per frame, plus a residual temporal
  3x1x1 convolution (zero-initialised) over each frame and its two neighbours aligned to it by
  :class:`APM` (appearance-preserving module: temperature 4, contrastive attention);
- :class:`NonLocalBlock`: the embedded-Gaussian non-local block over a clip (inner width C/2,
  keys and values max-pooled 1x2x2, output BatchNorm initialised to zero).
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

#: AP3D's temperature and its reduction of the channels that align neighbouring frames.
AP3D_TEMPERATURE = 4.0
APM_REDUCTION = 16

Conv2 = Callable[[torch.Tensor], torch.Tensor]


def to_clip(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[B*T, C, H, W]`` (frames of a clip consecutive) -> ``[B, C, T, H, W]``."""
    return frames.unflatten(0, (-1, num_frames)).transpose(1, 2)


def to_frames(clip: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B*T, C, H, W]``; the inverse of :func:`to_clip`."""
    return clip.transpose(1, 2).flatten(0, 1)


def neighbours(clip: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frames ``t-1`` and ``t+1`` of every frame ``t`` of ``[B, C, T, H, W]`` (zeros outside the clip)."""
    padded = F.pad(clip, (0, 0, 0, 0, 1, 1))
    return padded[:, :, :-2], padded[:, :, 2:]


def run_bottleneck(block: Bottleneck, x: torch.Tensor, conv2: Conv2) -> torch.Tensor:
    """torchvision's ``Bottleneck.forward`` with ``conv2`` computing its 3x3 convolution."""
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.relu(block.bn2(conv2(out)))
    out = block.bn3(block.conv3(out))
    identity = x if block.downsample is None else block.downsample(x)
    return block.relu(out + identity)


class I3DConv(nn.Module):
    """A 2D convolution inflated to three frames: ``conv3d([side0, conv.weight, side1])``.

    ``side`` (``[out, in / groups, 2, kh, kw]``, zeros) holds the taps on frames ``t-1`` and
    ``t+1``; the centre tap is the image convolution's own weight, passed at every call."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        out_channels, in_channels, kh, kw = conv.weight.shape
        self.side = nn.Parameter(torch.zeros(out_channels, in_channels, 2, kh, kw))

    def forward(self, x: torch.Tensor, conv: nn.Conv2d, num_frames: int) -> torch.Tensor:
        weight = torch.cat([self.side[:, :, :1], conv.weight.unsqueeze(2), self.side[:, :, 1:]], dim=2)
        out = F.conv3d(to_clip(x, num_frames), weight, conv.bias, stride=(1, *conv.stride),
                       padding=(1, *conv.padding), dilation=(1, *conv.dilation), groups=conv.groups)
        return to_frames(out)


class APM(nn.Module):
    """Appearance-preserving module: each frame's two neighbours, aligned to it.

    ``[B, C, T, H, W] -> [B, C, 3T, H, W]``, the frames ``(t-1 aligned, t, t+1 aligned)`` for
    each ``t``. A neighbour's position ``q`` moves to ``p`` with weight
    ``softmax_q(temperature * <s_t(p), s_n(q)>)``, ``s`` the L2-normalised 1x1x1 projection
    of the frames to ``max(1, C // 16)`` channels; with contrastive attention the aligned
    neighbour is scaled by ``sigmoid(conv(x_mapping(x) * n_mapping(neighbour)))`` (inputs
    detached). Frames outside the clip are zeros."""

    def __init__(self, channels: int, temperature: float = AP3D_TEMPERATURE, contrastive_att: bool = True) -> None:
        super().__init__()
        reduced = max(1, channels // APM_REDUCTION)
        self.temperature = temperature
        self.semantic_mapping = nn.Conv3d(channels, reduced, kernel_size=1, bias=False)
        self.contrastive_att = contrastive_att
        if contrastive_att:
            self.x_mapping = nn.Conv3d(channels, reduced, kernel_size=1, bias=False)
            self.n_mapping = nn.Conv3d(channels, reduced, kernel_size=1, bias=False)
            self.contrastive_att_net = nn.Sequential(nn.Conv3d(reduced, 1, kernel_size=1, bias=False), nn.Sigmoid())

    def align(self, x: torch.Tensor, semantic: torch.Tensor, neighbour: torch.Tensor,
              neighbour_semantic: torch.Tensor) -> torch.Tensor:
        """``neighbour`` (``[B, C, T, H, W]``) warped onto ``x`` by semantic similarity."""
        b, c, t, h, w = x.shape
        query = semantic.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, -1)
        key = neighbour_semantic.transpose(1, 2).reshape(b * t, -1, h * w)
        similarity = F.softmax(torch.matmul(query, key) * self.temperature, dim=-1)
        value = neighbour.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        aligned = torch.matmul(similarity, value).view(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        if self.contrastive_att:
            gate = self.contrastive_att_net(self.x_mapping(x.detach()) * self.n_mapping(aligned.detach()))
            aligned = aligned * gate
        return aligned

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        semantic = F.normalize(self.semantic_mapping(x), p=2, dim=1)
        pairs = zip(neighbours(x), neighbours(semantic))
        before, after = (self.align(x, semantic, frames, frames_semantic) for frames, frames_semantic in pairs)
        return torch.stack([before, x, after], dim=3).flatten(2, 3)


class AP3DConv(nn.Module):
    """AP3D (``APP3DC``): ``y = conv(x)`` per frame, ``y + temporal_conv(APM(y))``; the 3x1x1
    temporal convolution (stride 3 over the aligned triples) starts at zero."""

    def __init__(self, conv: nn.Conv2d, temperature: float = AP3D_TEMPERATURE, contrastive_att: bool = True) -> None:
        super().__init__()
        channels = conv.out_channels
        self.apm = APM(channels, temperature, contrastive_att)
        self.temporal_conv = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), stride=(3, 1, 1), bias=False)
        nn.init.zeros_(self.temporal_conv.weight)

    def forward(self, x: torch.Tensor, conv: nn.Conv2d, num_frames: int) -> torch.Tensor:
        out = conv(x)
        return out + to_frames(self.temporal_conv(self.apm(to_clip(out, num_frames))))


class NonLocalBlock(nn.Module):
    """Non-local block (embedded Gaussian) on ``[B, C, T, H, W]``: ``x + w(softmax(theta phi^T) g)``,
    ``phi`` and ``g`` max-pooled 1x2x2, inner width ``max(1, C // 2)``; the output BatchNorm
    starts at zero (the block starts as the identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 2)
        self.inner = inner
        self.g = nn.Sequential(nn.Conv3d(channels, inner, kernel_size=1), nn.MaxPool3d((1, 2, 2)))
        self.theta = nn.Conv3d(channels, inner, kernel_size=1)
        self.phi = nn.Sequential(nn.Conv3d(channels, inner, kernel_size=1), nn.MaxPool3d((1, 2, 2)))
        self.w = nn.Sequential(nn.Conv3d(inner, channels, kernel_size=1), nn.BatchNorm3d(channels))
        for module in self.modules():
            if isinstance(module, nn.Conv3d):  # the reference's He init (fan = out channels of a 1x1x1 conv)
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / module.out_channels))
        nn.init.zeros_(self.w[1].weight)
        nn.init.zeros_(self.w[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        values = self.g(x).reshape(b, self.inner, -1).transpose(1, 2)
        queries = self.theta(x).reshape(b, self.inner, -1).transpose(1, 2)
        keys = self.phi(x).reshape(b, self.inner, -1)
        attention = F.softmax(torch.matmul(queries, keys), dim=-1)
        y = torch.matmul(attention, values).transpose(1, 2).reshape(b, self.inner, *x.shape[2:])
        return x + self.w(y)
