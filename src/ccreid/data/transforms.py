"""Joint image + parsing-map transforms (torchvision transforms v2).

The image travels as a ``tv_tensors.Image`` and the map as a ``tv_tensors.Mask`` through
one ``v2.Compose``, so both get the same flip, pad and crop, and the map is resized
nearest-neighbour. Random erasing runs afterwards on the normalised image alone (fill 0,
i.e. the ImageNet mean): the map keeps the true labels under the erased patch.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ccreid.imagenet import IMAGENET_MEAN, IMAGENET_STD


class JointTransform:
    """``(uint8 image [3,H,W], long map [H,W] or None) -> (float image, long map)``.

    A missing map comes back as ``-1`` everywhere, at the output size.
    """

    def __init__(self, geometry: Sequence[v2.Transform], erasing: Optional[v2.Transform] = None) -> None:
        # one flat Compose: each nesting level costs a pass over the inputs per image
        self.geometry = v2.Compose(
            [*geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )
        self.erasing = erasing

    def __call__(self, image: torch.Tensor, parsing: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        if parsing is None:
            out = self.geometry(tv_tensors.Image(image))
            out_map = torch.full(out.shape[-2:], -1, dtype=torch.long)
        else:
            out, out_map = self.geometry(tv_tensors.Image(image), tv_tensors.Mask(parsing.long()))
        if self.erasing is not None:
            out = self.erasing(out)
        return out.as_subclass(torch.Tensor), out_map.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"JointTransform(geometry={self.geometry}, erasing={self.erasing})"


def build_train_transform(
    height: int, width: int, flip_p: float = 0.5, pad: int = 10, erasing_p: float = 0.5, color_jitter: float = 0.0
) -> JointTransform:
    """Resize, horizontal flip, pad + random crop, colour jitter (the image only; brightness, contrast,
    saturation and hue each by ``color_jitter``, torchvision's ``ColorJitter``), normalise; erasing on
    the image only."""
    steps: list[v2.Transform] = [v2.Resize((height, width), antialias=True), v2.RandomHorizontalFlip(flip_p)]
    if pad > 0:
        steps += [v2.Pad(pad, fill=0), v2.RandomCrop((height, width))]
    if color_jitter > 0:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter, color_jitter))
    erasing = v2.RandomErasing(p=erasing_p, value=0.0) if erasing_p > 0 else None
    return JointTransform(steps, erasing)


def build_test_transform(height: int, width: int) -> JointTransform:
    """Resize and normalise (the map, if any, resized nearest-neighbour)."""
    return JointTransform([v2.Resize((height, width), antialias=True)])
