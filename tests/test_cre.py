"""CRE: exactly the clothes pixels change, for every fill, also after a joint flip/crop.

Cost, measured once on the 2-core dev machine (1 thread): erasing a batch of 64 images
at 128x64 takes 9-17 ms depending on the fill, about 1% of one forward+backward of a
resnet18 (width 0.5) on the resulting 128 images (1.3 s).
"""

from __future__ import annotations

import pytest
import torch

from ccreid.data.labels import LIP
from ccreid.errors import CCReIDError
from ccreid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ccreid.models.cre import FILLS, ClothesErasure

CLOTHES = sorted(LIP.clothes)
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def person_maps(batch: int, height: int = 64, width: int = 32, seed: int = 0) -> torch.Tensor:
    """Maps with a head, arms, upper/lower garments and shoes at random offsets."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.zeros(batch, height, width, dtype=torch.long)
    for b in range(batch):
        dy, dx = (int(v) for v in torch.randint(0, 6, (2,), generator=g))
        maps[b, 2 + dy:10 + dy, 12 + dx:20 - dx // 2] = 13  # face
        maps[b, 2 + dy:4 + dy, 12 + dx:20 - dx // 2] = 2  # hair
        maps[b, 10 + dy:30 + dy, 8:24] = 5  # upper clothes
        maps[b, 12 + dy:28 + dy, 4:8] = 14  # left arm
        maps[b, 12 + dy:28 + dy, 24:28] = 15  # right arm
        maps[b, 30 + dy:54, 9:23] = 9  # pants
        maps[b, 54:58, 9:15] = 18  # shoes
        maps[b, 54:58, 17:23] = 19
    return maps


def batch(size: int = 8, without_map: tuple = (3,), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 3, 64, 32, generator=g)
    parsing = person_maps(size, seed=seed)
    has_parsing = torch.ones(size, dtype=torch.bool)
    for i in without_map:
        parsing[i] = -1
        has_parsing[i] = False
    pids = torch.arange(size) // 2
    clothes = torch.arange(size)
    return images, parsing, has_parsing, pids, clothes


def check_erasure(cre: ClothesErasure, images: torch.Tensor, parsing: torch.Tensor, copies: torch.Tensor) -> None:
    """Pixels outside the clothes mask are identical; every clothes pixel got the fill."""
    mask = torch.isin(parsing, torch.tensor(CLOTHES))
    changed = (copies != images).any(dim=1)
    assert torch.equal(changed, mask), "erasure must change exactly the clothes-mask pixels"
    assert torch.equal(copies[~mask.unsqueeze(1).expand_as(copies)], images[~mask.unsqueeze(1).expand_as(images)])
    pixels = copies * STD + MEAN  # back to pixel space
    inside = pixels.permute(1, 0, 2, 3)[:, mask]  # [3, N] fill values in pixel space
    if cre.fill == "mean":
        assert torch.all(copies.permute(1, 0, 2, 3)[:, mask] == 0)
    elif cre.fill == "black":
        assert torch.allclose(inside, torch.zeros_like(inside), atol=1e-6)
    else:
        assert inside.min() >= -1e-6 and inside.max() <= 1 + 1e-6
    if cre.fill == "noise":
        assert inside.std(dim=1).min() > 0.2  # i.i.d. U(0,1): std ~0.29
    if cre.fill == "random_color":
        for b in range(len(parsing)):
            colours = [pixels[b][:, parsing[b] == label] for label in parsing[b].unique().tolist() if label in CLOTHES]
            for region in colours:
                assert torch.allclose(region, region[:, :1].expand_as(region), atol=1e-5)
            firsts = torch.stack([r[:, 0] for r in colours])
            assert len(torch.unique(firsts, dim=0)) == len(colours), "one colour per garment label"


@pytest.mark.parametrize("fill", FILLS)
def test_every_fill_changes_exactly_the_clothes_pixels(fill: str) -> None:
    images, parsing, has_parsing, pids, clothes = batch()
    cre = ClothesErasure(CLOTHES, p=1.0, fill=fill)
    out = cre(images, parsing, has_parsing, pids, clothes, num_clothes=8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.images[:8], images)
    with_map = has_parsing.nonzero().squeeze(1)
    assert out.num_erased == len(with_map) == 7 and out.num_without_map == 1
    check_erasure(cre, images[with_map], parsing[with_map], out.images[8:])


@pytest.mark.parametrize("fill", FILLS)
def test_erasure_follows_a_joint_flip_and_crop(fill: str) -> None:
    images, parsing, has_parsing, pids, clothes = batch(without_map=())
    images = torch.flip(images, dims=[3])[:, :, 5:61, 3:29]
    parsing = torch.flip(parsing, dims=[2])[:, 5:61, 3:29]
    cre = ClothesErasure(CLOTHES, fill=fill)
    out = cre(images, parsing, has_parsing, pids, clothes, num_clothes=8)
    check_erasure(cre, images, parsing, out.images[8:])


def test_clothes_mask_equals_isin_for_any_label_value() -> None:
    parsing = torch.randint(-3, 40, (4, 16, 8))
    cre = ClothesErasure(CLOTHES)
    assert torch.equal(cre.clothes_mask(parsing), torch.isin(parsing, torch.tensor(CLOTHES)))


def test_labels_of_the_erased_copies() -> None:
    images, parsing, has_parsing, pids, clothes = batch()
    out = ClothesErasure(CLOTHES)(images, parsing, has_parsing, pids, clothes, num_clothes=8)
    with_map = has_parsing.nonzero().squeeze(1)
    assert out.images.shape == (15, 3, 64, 32)
    assert torch.equal(out.is_erased, torch.arange(15) >= 8)
    assert torch.equal(out.pids, torch.cat([pids, pids[with_map]]))
    assert torch.equal(out.clothes, torch.cat([clothes, clothes[with_map] + 8]))
    assert torch.equal(out.parsing, torch.cat([parsing, parsing[with_map]]))
    assert torch.equal(out.source, torch.cat([torch.arange(8), with_map]))  # camera ids etc. follow their image


def test_p_zero_is_the_identity() -> None:
    images, parsing, has_parsing, pids, clothes = batch()
    out = ClothesErasure(CLOTHES, p=0.0)(images, parsing, has_parsing, pids, clothes, num_clothes=8)
    assert out.images is images and out.pids is pids and out.clothes is clothes and out.parsing is parsing
    assert out.num_erased == 0 and not out.is_erased.any() and out.num_without_map == 1
    assert torch.equal(out.source, torch.arange(len(images)))


def test_probability_draws_copies_of_the_chosen_images_only() -> None:
    images, parsing, has_parsing, _, clothes = batch(size=64, without_map=(0, 1))
    pids = torch.arange(64)  # unique, to find each copy's original
    cre = ClothesErasure(CLOTHES, p=0.5)
    out = cre(images, parsing, has_parsing, pids, clothes, 64, generator=torch.Generator().manual_seed(3))
    again = cre(images, parsing, has_parsing, pids, clothes, 64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.images, again.images)
    assert 15 < out.num_erased < 50
    source = out.pids[64:]
    assert not torch.isin(source, torch.tensor([0, 1])).any(), "images without a map are never erased"
    assert torch.equal(out.images[64:], cre.erase(images[source], parsing[source]))
    assert torch.equal(out.source, torch.cat([torch.arange(64), source]))


def test_invalid_options_are_user_errors() -> None:
    with pytest.raises(CCReIDError, match="model.cre.fill"):
        ClothesErasure(CLOTHES, fill="blur")
    with pytest.raises(CCReIDError, match="model.cre.p"):
        ClothesErasure(CLOTHES, p=1.5)
    with pytest.raises(CCReIDError, match="model.cre.clothes_labels"):
        ClothesErasure([])
