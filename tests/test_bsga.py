"""BSGA: shapes, range, residual form, mask supervision, eval without masks."""

from __future__ import annotations

import math

import pytest
import torch

from ccreid.errors import CCReIDError
from ccreid.models import build_model
from ccreid.models.bsga import BodyShapeGuidedAttention, bsga_loss, downsample_mask


def body_mask(batch: int, height: int = 64, width: int = 32) -> torch.Tensor:
    mask = torch.zeros(batch, height, width, dtype=torch.bool)
    mask[:, 8:56, 10:22] = True
    return mask


def test_shapes_range_and_residual_form() -> None:
    torch.manual_seed(0)
    module = BodyShapeGuidedAttention(32)
    fmap = torch.randn(3, 32, 8, 4)
    out, attention = module(fmap)
    assert out.shape == fmap.shape and attention.shape == (3, 1, 8, 4)
    assert attention.min() >= 0 and attention.max() <= 1
    assert torch.allclose(out, fmap * (1 + attention))


def test_mask_is_area_downsampled() -> None:
    mask = torch.zeros(1, 8, 4, dtype=torch.bool)
    mask[0, 0:3, 0:1] = True  # cell (0,0) of a 4x2 map holds 2 of its 4 pixels, cell (1,0) 1 of 4
    down = downsample_mask(mask, (4, 2))
    expected = torch.zeros(1, 1, 4, 2)
    expected[0, 0, 0, 0], expected[0, 0, 1, 0] = 0.5, 0.25
    assert torch.equal(down, expected)


@pytest.mark.parametrize("kind", ["bce", "mse"])
def test_loss_matches_a_per_cell_loop_and_skips_images_without_mask(kind: str) -> None:
    torch.manual_seed(1)
    maps = [torch.rand(4, 1, 8, 4), torch.rand(4, 1, 16, 8)]
    mask = body_mask(4)
    mask[1, :, :] = False
    valid = torch.tensor([True, True, False, True])
    total = 0.0
    for amap in maps:
        h, w = amap.shape[-2:]
        per_image = []
        for b in torch.nonzero(valid).flatten().tolist():
            cells = []
            for i in range(h):
                for j in range(w):
                    block = mask[b, i * 64 // h:(i + 1) * 64 // h, j * 32 // w:(j + 1) * 32 // w].float()
                    t, a = block.mean().item(), amap[b, 0, i, j].item()
                    cells.append(-(t * math.log(a) + (1 - t) * math.log(1 - a)) if kind == "bce" else (a - t) ** 2)
            per_image.append(sum(cells) / len(cells))
        total += sum(per_image) / len(per_image)
    loss = bsga_loss(maps, mask, kind=kind, valid=valid)
    assert loss.item() == pytest.approx(total / len(maps), rel=1e-5)


def test_no_valid_mask_gives_zero_with_finite_gradient() -> None:
    amap = torch.rand(2, 1, 4, 2, requires_grad=True)
    loss = bsga_loss([amap], body_mask(2), valid=torch.zeros(2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0 and torch.all(amap.grad == 0)
    with pytest.raises(CCReIDError, match="model.bsga.loss"):
        bsga_loss([amap], body_mask(2), kind="l1")


def test_supervision_pulls_the_map_towards_the_mask() -> None:
    torch.manual_seed(0)
    module = BodyShapeGuidedAttention(16)
    fmap = torch.randn(4, 16, 16, 8)
    mask = torch.zeros(4, 64, 32, dtype=torch.bool)
    for b in range(4):
        mask[b, 8 + 2 * b:56, 8 + b:24] = True  # a different silhouette per image
    target = downsample_mask(mask, (16, 8))
    optimiser = torch.optim.Adam(module.parameters(), lr=0.05)
    first = None
    for _ in range(25):
        _, attention = module(fmap)
        loss = bsga_loss([attention], mask)
        first = loss.item() if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    module.eval()
    attention = module(fmap)[1]
    assert loss.item() < 0.6 * first
    inside, outside = attention[target > 0.99].mean(), attention[target < 0.01].mean()
    assert inside > 0.7 and outside < 0.3
    assert (attention - target).abs().mean() < 0.2


def test_model_needs_no_mask_in_eval_and_returns_maps_on_request() -> None:
    torch.manual_seed(0)
    model = build_model(num_classes=5, backbone="resnet18", width_mult=0.25,
                        bsga_stages=("layer3", "layer4"))
    images = torch.randn(2, 3, 64, 32)
    model.eval()
    with torch.no_grad():
        feat = model(images)
        out = model(images, return_attention=True)
    assert feat.shape == (2, model.out_dim)
    assert torch.equal(out["bn_feat"], feat)
    assert [tuple(a.shape) for a in out["attention"]] == [(2, 1, 4, 2), (2, 1, 4, 2)]
    assert "logits" not in out


def test_unknown_stage_is_a_user_error() -> None:
    with pytest.raises(CCReIDError, match="model.bsga.stages"):
        build_model(num_classes=5, backbone="resnet18", width_mult=0.25, bsga_stages=("layer5",))
