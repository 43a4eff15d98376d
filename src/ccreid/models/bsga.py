"""BSGA: Body Shape-Guided Attention (METHOD.md).

An attention branch on a backbone stage's output ``F``:
``A = sigmoid(conv1x1(ReLU(BN(conv3x3(F)))))`` (one channel, same H x W), and the stage
output becomes ``F * (1 + A)`` (residual: no feature is zeroed). During training ``A`` is
supervised with the body-shape mask (every non-background parsing pixel) downsampled
to H x W by area averaging (:func:`bsga_loss`); at test time no mask is needed.
The branch may sit after several stages (``build_bsga``); :class:`ccreid.models.reid.ReIDModel`
applies it and returns the maps (``attention``) for the loss and for visualisation.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.errors import CCReIDError

LOSS_KINDS = ("bce", "mse")


class BodyShapeGuidedAttention(nn.Module):
    """``F -> (F * (1 + A), A)`` with ``A`` in ``[0, 1]`` of shape ``[B, 1, H, W]``.

    The hidden width of the 3x3 convolution is ``max(channels // reduction, 8)``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.conv3x3 = nn.Conv2d(channels, hidden, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.relu = nn.ReLU(inplace=True)
        self.conv1x1 = nn.Conv2d(hidden, 1, kernel_size=1)
        nn.init.kaiming_normal_(self.conv3x3.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, fmap: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        attention = torch.sigmoid(self.conv1x1(self.relu(self.bn(self.conv3x3(fmap)))))
        return fmap * (1 + attention), attention


def build_bsga(stage_channels: Dict[str, int], stages: Sequence[str]) -> nn.ModuleDict:
    """One attention branch per stage name in ``stages`` (e.g. ``["layer4"]``)."""
    unknown = [s for s in stages if s not in stage_channels]
    if unknown:
        raise CCReIDError(
            f"config key 'model.bsga.stages': unknown stage(s) {unknown}; choose from {', '.join(stage_channels)}"
        )
    if len(set(stages)) != len(stages):
        raise CCReIDError(f"config key 'model.bsga.stages': {list(stages)} lists a stage twice")
    return nn.ModuleDict({s: BodyShapeGuidedAttention(stage_channels[s]) for s in stages})


def downsample_mask(body_mask: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``[B, H, W]`` mask -> ``[B, 1, h, w]`` fraction of body pixels per cell (area average)."""
    return F.adaptive_avg_pool2d(body_mask.float().unsqueeze(1), size)


def bsga_loss(
    attention_maps: Sequence[torch.Tensor],
    body_mask: torch.Tensor,
    kind: str = "bce",
    valid: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """BCE (or MSE) between each ``[B, 1, h, w]`` map and the area-downsampled body mask.

    Per image the loss is the mean over the map's cells; it is averaged over images whose
    ``valid`` flag is set (images without a parsing map are excluded), then over maps.
    Returns 0 (still connected to the maps' graph) when no image is valid.
    """
    if kind not in LOSS_KINDS:
        raise CCReIDError(f"config key 'model.bsga.loss': {kind!r} is not one of {', '.join(LOSS_KINDS)}")
    if not attention_maps:
        return body_mask.new_zeros((), dtype=torch.float32)
    if valid is None:
        valid = torch.ones(body_mask.shape[0], dtype=torch.bool, device=body_mask.device)
    count = valid.sum().clamp(min=1)
    targets: Dict[Tuple[int, int], torch.Tensor] = {}
    losses: List[torch.Tensor] = []
    for amap in attention_maps:
        size = (amap.shape[-2], amap.shape[-1])
        if size not in targets:
            targets[size] = downsample_mask(body_mask, size)
        amap = amap.float()
        if kind == "bce":
            with torch.autocast(amap.device.type, enabled=False):  # BCE refuses autocast
                per_cell = F.binary_cross_entropy(amap, targets[size], reduction="none")
        else:
            per_cell = (amap - targets[size]).square()
        per_image = per_cell.mean(dim=(1, 2, 3))
        losses.append(torch.where(valid, per_image, torch.zeros_like(per_image)).sum() / count)
    return torch.stack(losses).mean()
