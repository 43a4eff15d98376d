"""CRE: Clothes-Relevant information Erasure (METHOD.md).

For an image ``x`` with parsing map ``P`` the erased copy is ``x' = x * (1 - Mc) + F * Mc``,
``Mc = isin(P, clothes_labels)``, computed as ``where(Mc, F, x)`` so pixels outside the
clothes mask are bit-identical. Images arrive normalised (``(pixel - mean) / std``) and the
fills are defined in pixel space, then normalised:

- ``mean``: the normalisation mean, i.e. 0 in normalised space (default);
- ``black``: pixel 0, i.e. ``-mean / std``;
- ``noise``: i.i.d. ``U(0, 1)`` per pixel and channel;
- ``random_color``: one ``U(0, 1)^3`` colour per (image, clothes label), so each garment
  label region of an image is one flat colour.

Batch design (keeps every loss definition simple): each image that has a map gets an
erased copy with probability ``p``; only the copies actually made are appended after the
originals, so the output batch holds ``B + num_erased`` images and ``is_erased`` marks the
copies. Copies keep ``pid``, get clothes id ``c + num_clothes`` (a cross-clothes pair
for BCTri) and the original's parsing map (the same body-shape mask for BSGA). ``p = 0``
returns the inputs themselves. Everything runs batched on the images' device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from ccreid.errors import CCReIDError
from ccreid.imagenet import IMAGENET_MEAN, IMAGENET_STD

FILLS = ("mean", "noise", "random_color", "black")


@dataclass
class CREOutput:
    """Originals followed by their erased copies, with labels for the losses."""

    images: torch.Tensor  # [B + num_erased, 3, H, W]
    pids: torch.Tensor
    clothes: torch.Tensor  # copies: original clothes id + num_clothes
    parsing: torch.Tensor  # copies: the original's map
    is_erased: torch.Tensor  # bool, True for the appended copies
    num_erased: int
    num_without_map: int  # originals that had no parsing map (passed through unerased)
    source: torch.Tensor  # index into the input batch of each output image (labels that follow the image)


class ClothesErasure(nn.Module):
    """Appends clothes-erased copies of a batch (see the module docstring)."""

    def __init__(
        self,
        clothes_labels: Iterable[int],
        p: float = 1.0,
        fill: str = "mean",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        labels = sorted({int(label) for label in clothes_labels})
        if not labels or labels[0] < 1:
            raise CCReIDError(
                f"config key 'model.cre.clothes_labels': {labels} must be a non-empty list of labels >= 1 (0 is background)"
            )
        if not 0.0 <= p <= 1.0:
            raise CCReIDError(f"config key 'model.cre.p': {p} must be in [0, 1]")
        if fill not in FILLS:
            raise CCReIDError(f"config key 'model.cre.fill': {fill!r} is not one of {', '.join(FILLS)}")
        self.clothes_labels = tuple(labels)
        self._lookup = torch.zeros(labels[-1] + 2, dtype=torch.bool)
        self._lookup[labels] = True
        self.p = float(p)
        self.fill = fill
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def extra_repr(self) -> str:
        return f"p={self.p}, fill={self.fill!r}, clothes_labels={list(self.clothes_labels)}"

    def clothes_mask(self, parsing: torch.Tensor) -> torch.Tensor:
        """Bool ``[B, H, W]``: pixels whose label is a clothes label (maps of -1 give none).

        A lookup table (3x faster than ``torch.isin`` on CPU); labels below 0 or above
        the largest clothes label land on its last entry, which is False.
        """
        top = self.clothes_labels[-1] + 1
        return self._lookup.to(parsing.device, non_blocking=True)[parsing.clamp(-1, top)]

    def _normalise(self, pixels: torch.Tensor, channel_dim: int = -3) -> torch.Tensor:
        """Pixel-space values with RGB along ``channel_dim`` -> normalised space."""
        shape = [1] * (-channel_dim)
        shape[0] = 3
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(shape)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(shape)
        return (pixels - mean) / std

    def fill_values(
        self, images: torch.Tensor, parsing: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """The fill ``F`` in normalised space, broadcastable to ``images``."""
        if self.fill == "mean":
            return images.new_zeros(())
        if self.fill == "black":
            return self._normalise(images.new_zeros(3, 1, 1))
        if self.fill == "noise":
            rand = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
            return self._normalise(rand)
        num_labels = self.clothes_labels[-1] + 1
        colours = torch.rand(
            (images.shape[0], num_labels, 3), generator=generator, device=images.device, dtype=images.dtype
        )
        colours = self._normalise(colours, channel_dim=-1)
        rows = torch.arange(images.shape[0], device=images.device).view(-1, 1, 1)
        per_pixel = colours[rows, parsing.clamp(0, num_labels - 1)]  # [B, H, W, 3]
        return per_pixel.permute(0, 3, 1, 2)

    def erase(
        self, images: torch.Tensor, parsing: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """Every image of ``images`` with its clothes pixels replaced by the fill."""
        mask = self.clothes_mask(parsing).unsqueeze(1)
        return torch.where(mask, self.fill_values(images, parsing, generator), images)

    def copies(self, images: torch.Tensor, parsing: torch.Tensor, has_parsing: torch.Tensor,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows chosen (a map, then probability ``p``) and their erased copies."""
        index = self._chosen(has_parsing.to(torch.bool), generator)
        return index, self.erase(images[index], parsing[index], generator)

    def clip_copies(self, clips: torch.Tensor, parsing: torch.Tensor, has_parsing: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips ``[B, T, 3, H, W]`` (maps ``[B, T, H, W]``, ``has_parsing`` ``[B, T]``): the clips chosen
        (a map on every frame, then probability ``p``) and their copies, every frame erased."""
        index = self._chosen(has_parsing.to(torch.bool).all(1), generator)
        frames = self.erase(clips[index].flatten(0, 1), parsing[index].flatten(0, 1), generator)
        return index, frames.unflatten(0, (len(index), clips.shape[1]))

    def _chosen(self, with_map: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """Indices of the rows with a map that are drawn with probability ``p``."""
        if self.p < 1.0:
            draw = torch.rand(with_map.shape[0], generator=generator, device=with_map.device)
            with_map = with_map & (draw < self.p)
        return with_map.nonzero().squeeze(1)

    def forward(
        self,
        images: torch.Tensor,
        parsing: torch.Tensor,
        has_parsing: torch.Tensor,
        pids: torch.Tensor,
        clothes: torch.Tensor,
        num_clothes: int,
        generator: Optional[torch.Generator] = None,
    ) -> CREOutput:
        """Originals, then erased copies of the images chosen with probability ``p``."""
        has_parsing = has_parsing.to(torch.bool)
        num_without_map = int((~has_parsing).sum())
        if self.p == 0.0:
            not_erased = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
            source = torch.arange(images.shape[0], device=images.device)
            return CREOutput(images, pids, clothes, parsing, not_erased, 0, num_without_map, source)
        index, copies = self.copies(images, parsing, has_parsing, generator)
        is_erased = torch.cat([torch.zeros_like(has_parsing), torch.ones_like(index, dtype=torch.bool)])
        return CREOutput(
            images=torch.cat([images, copies]),
            pids=torch.cat([pids, pids[index]]),
            clothes=torch.cat([clothes, clothes[index] + num_clothes]),
            parsing=torch.cat([parsing, parsing[index]]),
            is_erased=is_erased,
            num_erased=int(index.numel()),
            num_without_map=num_without_map,
            source=torch.cat([torch.arange(images.shape[0], device=images.device), index]),
        )
