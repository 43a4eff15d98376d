"""PS: Pixel Sampling (Shu et al., IEEE SPL 2021).

Per batch, on the device: the parsing map's garments are grouped into upper clothes and
lower clothes; for each image and group, another image of the batch that has that group
is drawn, and wherever both images have the group the pixel is taken from the other
image. The network trains on the originals and the sampled copies together, the copies
keeping their original's labels (they go through the same loss terms as CRE's copies).
Preset ``ps``; LIP or ATR maps.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ccreid.training.step import BatchTransform, TrainBatch
from ccreid.errors import CCReIDError
from ccreid.methods.base import Method, Preset, register_preset

#: label set -> (upper-clothes labels, lower-clothes labels)
GARMENT_GROUPS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    "lip": ((5, 6, 7, 10, 11), (9, 12)),  # upper-clothes, dress, coat, jumpsuits, scarf / pants, skirt
    "atr": ((4, 7, 17), (5, 6, 8)),  # upper-clothes, dress, scarf / skirt, pants, belt
}


def sample_pixels(images: torch.Tensor, parsing: torch.Tensor, groups: Sequence[Sequence[int]],
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each image with every garment group's pixels taken from another image of the batch
    that has that group, at the positions where both have it; images stay as they are for a
    group no other image has."""
    out = images
    rows = torch.arange(images.shape[0], device=images.device)
    for labels in groups:
        mask = torch.isin(parsing, torch.tensor(labels, device=parsing.device))
        has = mask.flatten(1).any(1)
        scores = torch.rand(images.shape[0], images.shape[0], generator=generator, device=images.device)
        scores = scores.masked_fill(~has[None, :] | (rows[:, None] == rows[None, :]), -1.0)
        best, source = scores.max(1)
        take = mask & mask[source] & (best >= 0)[:, None, None]
        out = torch.where(take[:, None], images[source], out)
    return out


class PixelSampling:
    """PS's batch transform: appends a pixel-sampled copy of every image with a map (copies keep
    their original's labels; counted as ``num_erased``, originals without a map as ``num_without_map``)."""

    def __init__(self, groups: Sequence[Sequence[int]]) -> None:
        self.groups = [tuple(g) for g in groups]

    def __call__(self, batch: TrainBatch, generator: Optional[torch.Generator] = None) -> TrainBatch:
        index = batch.has_parsing.nonzero().squeeze(1)
        copies = sample_pixels(batch.images, batch.parsing, self.groups, generator)[index]
        return batch.with_copies(index, copies, num_erased=int(index.numel()),
                                 num_without_map=int((~batch.has_parsing).sum()))


class PSMethod(Method):
    """The baseline trained on originals and pixel-sampled copies."""

    runs_on_clips = False  # pixel sampling works on images

    @classmethod
    def needs_parsing(cls, preset: Preset) -> bool:
        return True

    def batch_transforms(self) -> List[BatchTransform]:
        if self.data.label_set not in GARMENT_GROUPS:
            raise CCReIDError(f"model.preset=ps needs LIP or ATR parsing maps (data.parsing.labels="
                              f"{self.data.label_set} has no upper / lower clothes groups)")
        return [PixelSampling(GARMENT_GROUPS[self.data.label_set])]


register_preset("ps", PSMethod)
