"""BCTri against a brute-force double loop written from METHOD.md."""

from __future__ import annotations

import math

import pytest
import torch

from ccreid.losses import BCTriLoss, bctri_loss


def distance(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "euclidean":
        return ((a - b) ** 2).sum().clamp(min=1e-12).sqrt()
    return 1 - (a @ b) / (a.norm() * b.norm())


def brute_force(feat, pids, clothes, margin=0.3, metric="euclidean", reduction="mean"):
    """Loops over anchors i, positives j and all negatives k (METHOD.md, literally)."""
    n = len(pids)
    per_anchor, without_positive = [], 0
    for i in range(n):
        positives = [j for j in range(n) if pids[j] == pids[i] and clothes[j] != clothes[i]]
        negatives = [k for k in range(n) if pids[k] != pids[i]]
        if not positives:
            without_positive += 1
            continue
        if not negatives:
            continue
        d_neg = min((distance(feat[i], feat[k], metric) for k in negatives), key=lambda d: d.item())
        total = sum(torch.relu(margin + distance(feat[i], feat[j], metric) - d_neg) for j in positives)
        per_anchor.append(total / len(positives))
    if not per_anchor:
        return feat.sum() * 0, without_positive
    loss = sum(per_anchor)
    return (loss / len(per_anchor) if reduction == "mean" else loss), without_positive


def random_batch(seed: int, ids: int = 4, per_id: int = 4, outfits: int = 2, dim: int = 16):
    g = torch.Generator().manual_seed(seed)
    pids = torch.arange(ids).repeat_interleave(per_id)
    clothes = pids * 10 + torch.randint(0, outfits, (ids * per_id,), generator=g)
    centres = torch.randn(ids, dim, generator=g) * 0.15  # some hinges active, some not
    feat = centres[pids] + torch.randn(ids * per_id, dim, generator=g) * 0.1
    return feat, pids, clothes


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_loss_and_gradient(metric: str, reduction: str, seed: int) -> None:
    feat, pids, clothes = random_batch(seed, ids=5, per_id=3)
    mine = feat.clone().requires_grad_(True)
    ref = feat.clone().double().requires_grad_(True)
    loss, count = bctri_loss(mine, pids, clothes, 0.3, metric, reduction)
    expected, expected_count = brute_force(ref, pids, clothes, 0.3, metric, reduction)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-6)
    assert int(count) == expected_count
    loss.backward()
    expected.backward()
    assert torch.allclose(mine.grad.double(), ref.grad, atol=1e-4)


def test_no_cross_clothes_positive_gives_zero_counted_and_finite() -> None:
    feat, pids, _ = random_batch(0)
    feat.requires_grad_(True)
    clothes = pids.clone()  # a single clothes id per person
    loss, count = bctri_loss(feat, pids, clothes)
    loss.backward()
    assert loss.item() == 0 and int(count) == len(pids)
    assert torch.isfinite(feat.grad).all() and torch.all(feat.grad == 0)


def test_batches_mixing_people_with_one_and_several_outfits() -> None:
    feat, pids, clothes = random_batch(5, ids=5, per_id=3, outfits=2)
    clothes[pids == 1] = 11
    clothes[pids == 3] = 31
    loss, count = bctri_loss(feat, pids, clothes)
    expected, expected_count = brute_force(feat, pids, clothes)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert int(count) == expected_count >= 6


def test_identical_features_keep_gradients_finite() -> None:
    """An erased copy identical to its original: distance 0 between a positive pair."""
    feat, pids, clothes = random_batch(1)
    feat = torch.cat([feat, feat]).requires_grad_(True)
    pids, clothes = torch.cat([pids, pids]), torch.cat([clothes, clothes + 100])
    for metric in ("euclidean", "cosine"):
        loss, count = bctri_loss(feat, pids, clothes, metric=metric)
        (grad,) = torch.autograd.grad(loss, feat)
        assert math.isfinite(loss.item()) and torch.isfinite(grad).all() and int(count) == 0


def test_single_identity_batch_has_no_negative_and_no_loss() -> None:
    feat = torch.randn(4, 8, requires_grad=True)
    loss, count = bctri_loss(feat, torch.zeros(4, dtype=torch.long), torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert loss.item() == 0 and int(count) == 0 and torch.isfinite(feat.grad).all()


def test_module_form_and_hand_worked_example() -> None:
    # 1-d features: person 0 in outfits a, b at 0 and 1; person 1 at 0.5 (outfit c).
    feat = torch.tensor([[0.0], [1.0], [0.5]])
    pids, clothes = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2])
    # anchor 0: d_pos 1, d_neg 0.5 -> 0.8; anchor 1: the same -> 0.8; anchor 2: no positive
    loss, count = BCTriLoss(margin=0.3)(feat, pids, clothes)
    assert loss.item() == pytest.approx(0.8) and int(count) == 1
    loss, _ = BCTriLoss(margin=0.3, reduction="sum")(feat, pids, clothes)
    assert loss.item() == pytest.approx(1.6)
