"""PS: Pixel Sampling (Shu et al., IEEE SPL 2021), as its official code trains it
(shuxjweb/pixel_sampling, ``engine/trainer.py`` ``do_train_prcc_pix_mse`` and
``layers.make_loss_with_triplet_entropy_mse``).

Per batch, on the device, the parsing map's garments are grouped into upper and lower
clothes. ``model.ps.sampling``:

- ``batch_raster`` (default, the official rule): per group, one random permutation of the
  batch; the batch's garment values, read in raster order over ``[B, C, H, W]``, are
  refilled with the permuted batch's garment values in the same order (boolean-mask
  assignment ``out[mask] = images[perm][mask[perm]]``, the mask repeated on the three
  channels). A pixel mostly takes a value from another position, often of another image
  and another channel: an accident of the official code, reproduced on purpose.
- ``same_position``: each image takes every group from one other image of the batch that
  has it, at the positions where both have it, channel for channel.

The network trains on the originals and the sampled copies together (the copies keep their
original's labels): one label-smoothed identity CE and one batch-hard triplet over all rows,
plus the feature loss ``mean_i sigmoid(|f_i - f'_i|^2)`` between each original's pooled
feature (before the BNNeck) and its copy's, weight ``loss.ps.w_feat``. Preset ``ps``; LIP or
ATR maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ccreid.config import register_section, setting
from ccreid.errors import CCReIDError
from ccreid.methods.base import Preset, register_preset
from ccreid.methods.recipe import RecipeOptimizer
from ccreid.training.step import BatchTransform, TrainBatch

#: label set -> (upper-clothes labels, lower-clothes labels)
GARMENT_GROUPS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    "lip": ((5, 6, 7, 10, 11), (9, 12)),  # upper-clothes, dress, coat, jumpsuits, scarf / pants, skirt
    "atr": ((4, 7, 17), (5, 6, 8)),  # upper-clothes, dress, scarf / skirt, pants, belt
}


def _group_mask(parsing: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    return torch.isin(parsing, torch.tensor(labels, device=parsing.device))


def sample_pixels(images: torch.Tensor, parsing: torch.Tensor, groups: Sequence[Sequence[int]],
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The official rule (``batch_raster``): per garment group, one permutation ``perm`` of the
    batch and ``out[mask] = images[perm][mask[perm]]`` with the group's mask on all channels
    (the permuted batch has as many garment values, in another raster order). The groups
    read ``images``, not each other's result."""
    out = images.clone()
    for labels in groups:
        mask = _group_mask(parsing, labels)[:, None].expand_as(images)
        perm = torch.randperm(images.shape[0], generator=generator, device=images.device)
        out[mask] = images[perm][mask[perm]]
    return out


def sample_pixels_same_position(images: torch.Tensor, parsing: torch.Tensor, groups: Sequence[Sequence[int]],
                                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``same_position``: each image with every garment group's pixels taken from another image
    of the batch that has that group, at the positions where both have it; images stay as they
    are for a group no other image has."""
    out = images
    rows = torch.arange(images.shape[0], device=images.device)
    for labels in groups:
        mask = _group_mask(parsing, labels)
        has = mask.flatten(1).any(1)
        scores = torch.rand(images.shape[0], images.shape[0], generator=generator, device=images.device)
        scores = scores.masked_fill(~has[None, :] | (rows[:, None] == rows[None, :]), -1.0)
        best, source = scores.max(1)
        take = mask & mask[source] & (best >= 0)[:, None, None]
        out = torch.where(take[:, None], images[source], out)
    return out


SamplingRule = Callable[[torch.Tensor, torch.Tensor, Sequence[Sequence[int]], Optional[torch.Generator]],
                        torch.Tensor]
#: ``model.ps.sampling`` -> the rule
SAMPLING_RULES: Dict[str, SamplingRule] = {"batch_raster": sample_pixels,
                                           "same_position": sample_pixels_same_position}


@dataclass
class PSModelConfig:
    """Pixel Sampling's rule (preset ``ps``): the config section ``model.ps``."""

    # batch_raster: the official code's (values refilled in raster order from a permuted batch);
    # same_position: from one other image, at the same positions (docs/METHOD.md, "PS")
    sampling: str = setting("batch_raster", choices=tuple(SAMPLING_RULES))


@dataclass
class PSLossConfig:
    """Pixel Sampling's feature loss (preset ``ps``): the config section ``loss.ps``."""

    w_feat: float = setting(1.0, min=0.0, meaning="0: off")  # sigmoid(|f - f'|^2) between originals and copies


register_section("model.ps", PSModelConfig)
register_section("loss.ps", PSLossConfig)


def sampling_feature_loss(originals: torch.Tensor, copies: torch.Tensor) -> torch.Tensor:
    """``mean_i sigmoid(sum_d (a_id - b_id)^2)`` over paired rows (the official ``FeatLoss``);
    0 (connected to the graph) without rows."""
    dist = (originals.float() - copies.float()).pow(2).sum(-1)
    return torch.sigmoid(dist).sum() / max(dist.numel(), 1)


class PSObjective(nn.Module):
    """The paper's objective over all rows as one batch (one identity CE and one triplet over
    originals and copies), plus the feature loss (term ``ps_feat``). ``ce_orig`` and ``tri``
    hold the terms over all rows. The copies follow their originals in order: original rows
    with a map (``has_mask``) pair with the copy rows."""

    def __init__(self, base: nn.Module, w_feat: float) -> None:
        super().__init__()
        self.base = base
        self.w_feat = w_feat

    def forward(self, outputs: Dict[str, object], pids: torch.Tensor, clothes: torch.Tensor, is_copy: torch.Tensor,
                body_mask: Optional[torch.Tensor] = None, has_mask: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        loss, terms = self.base(outputs, pids, clothes, torch.zeros_like(is_copy), body_mask, has_mask)
        feat = outputs["feat"]
        sampled = ~is_copy if has_mask is None else ~is_copy & has_mask
        feat_loss = sampling_feature_loss(feat[sampled], feat[is_copy])
        return loss + self.w_feat * feat_loss, terms | {"ps_feat": feat_loss.detach().float()}


class PixelSampling:
    """PS's batch transform: appends a pixel-sampled copy of every image with a map (copies keep
    their original's labels; counted as ``num_erased``, originals without a map as ``num_without_map``)."""

    def __init__(self, groups: Sequence[Sequence[int]], rule: SamplingRule = sample_pixels) -> None:
        self.groups = [tuple(g) for g in groups]
        self.rule = rule

    def __call__(self, batch: TrainBatch, generator: Optional[torch.Generator] = None) -> TrainBatch:
        index = batch.has_parsing.nonzero().squeeze(1)
        copies = self.rule(batch.images, batch.parsing, self.groups, generator)[index]
        return batch.with_copies(index, copies, num_erased=int(index.numel()),
                                 num_without_map=int((~batch.has_parsing).sum()))


class PSMethod(RecipeOptimizer):
    """The baseline trained on originals and pixel-sampled copies, with the feature loss."""

    runs_on_clips = False  # pixel sampling works on images

    @classmethod
    def needs_parsing(cls, preset: Preset) -> bool:
        return True

    def batch_transforms(self) -> List[BatchTransform]:
        if self.data.label_set not in GARMENT_GROUPS:
            raise CCReIDError(f"model.preset=ps needs LIP or ATR parsing maps (data.parsing.labels="
                              f"{self.data.label_set} has no upper / lower clothes groups)")
        return [PixelSampling(GARMENT_GROUPS[self.data.label_set], SAMPLING_RULES[self.cfg.model.ps.sampling])]

    def build_objective(self) -> nn.Module:
        return PSObjective(super().build_objective(), self.cfg.loss.ps.w_feat)


register_preset("ps", PSMethod)
