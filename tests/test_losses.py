"""Label-smoothed CE, batch-hard triplet and the total objective against loops."""

from __future__ import annotations

import math

import pytest
import torch

from ccreid.config import Config
from ccreid.losses import (
    TERM_NAMES,
    CrossEntropyLabelSmooth,
    ReIDObjective,
    batch_hard_triplet_loss,
    bctri_loss,
    pairwise_distance,
)
from ccreid.models.bsga import bsga_loss
from ccreid.methods import DataInfo, Method, resolve_preset
from ccreid.methods.paper import ABLATION_SWITCHES, PaperMethod


def test_label_smoothed_ce_matches_a_loop() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 5), torch.tensor([0, 4, 2, 2, 1, 3])
    expected = 0.0
    for row, y in zip(logits.tolist(), targets.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        for k, v in enumerate(row):
            q = 0.9 + 0.1 / 5 if k == y else 0.1 / 5
            expected -= q * (v - log_z)
    assert CrossEntropyLabelSmooth(5, 0.1)(logits, targets).item() == pytest.approx(expected / 6, rel=1e-5)
    plain = torch.nn.functional.cross_entropy(logits, targets)
    assert CrossEntropyLabelSmooth(5, 0.0)(logits, targets).item() == pytest.approx(plain.item(), rel=1e-6)
    assert CrossEntropyLabelSmooth(5)(logits[:0], targets[:0]).item() == 0
    rows = torch.tensor([True, False, True, True, False, False])
    masked = CrossEntropyLabelSmooth(5, 0.1)(logits, targets, rows)
    assert masked.item() == pytest.approx(CrossEntropyLabelSmooth(5, 0.1)(logits[rows], targets[rows]).item(), rel=1e-6)
    assert CrossEntropyLabelSmooth(5)(logits, targets, torch.zeros(6, dtype=torch.bool)).item() == 0


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pairwise_distance(metric: str) -> None:
    torch.manual_seed(1)
    feat = torch.randn(7, 12)
    dist = pairwise_distance(feat, metric)
    for i in range(7):
        for j in range(7):
            a, b = feat[i], feat[j]
            ref = (a - b).norm() if metric == "euclidean" else 1 - a @ b / (a.norm() * b.norm())
            assert dist[i, j].item() == pytest.approx(ref.item(), abs=1e-4)


def test_euclidean_distance_to_itself_is_exactly_zero_with_a_zero_gradient() -> None:
    """|a|^2 + |b|^2 - 2ab left d(a, a) = 1.4e-3 on AMX CPUs; copies of a row (CRE copies
    without clothes pixels) are at distance 0 too, and the gradient stays finite."""
    torch.manual_seed(1)
    feat = (torch.randn(7, 2048) * 30).requires_grad_()
    rows = torch.cat([feat, feat[:3]])
    dist = pairwise_distance(rows, "euclidean")
    assert dist.diagonal().eq(0).all() and dist[7:, :3].diagonal().eq(0).all()
    dist.sum().backward()
    assert torch.isfinite(feat.grad).all()


def brute_force_triplet(feat, pids, margin, metric):
    n, losses = len(pids), []
    for i in range(n):
        pos = [pairwise_distance(feat[[i, j]], metric)[0, 1] for j in range(n) if j != i and pids[j] == pids[i]]
        neg = [pairwise_distance(feat[[i, k]], metric)[0, 1] for k in range(n) if pids[k] != pids[i]]
        if pos and neg:
            losses.append(torch.relu(margin + max(pos, key=lambda d: d.item()) - min(neg, key=lambda d: d.item())))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", range(3))
def test_batch_hard_triplet_matches_a_loop(metric: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    pids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])  # identity 3 has no positive: left out
    feat = (torch.randn(4, 10, generator=g)[pids] * 0.3 + torch.randn(9, 10, generator=g) * 0.2)
    mine, ref = feat.clone().requires_grad_(True), feat.clone().double().requires_grad_(True)
    loss = batch_hard_triplet_loss(mine, pids, 0.3, metric)
    expected = brute_force_triplet(ref, pids, 0.3, metric)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    loss.backward()
    expected.backward()
    assert torch.allclose(mine.grad.double(), ref.grad, atol=1e-4)


def test_triplet_gradients_finite_for_coinciding_features() -> None:
    feat = torch.randn(4, 8).repeat(2, 1).requires_grad_(True)
    pids = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    loss = batch_hard_triplet_loss(feat, pids)
    (grad,) = torch.autograd.grad(loss, feat)
    assert torch.isfinite(grad).all()
    single = torch.randn(3, 8, requires_grad=True)
    loss = batch_hard_triplet_loss(single, torch.zeros(3, dtype=torch.long))  # no negative anywhere
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(single.grad).all()


def objective_batch(num_classes: int = 4):
    torch.manual_seed(3)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    clothes = torch.tensor([0, 1, 2, 2, 3, 4, 5, 5])
    pids = torch.cat([pids, pids[:5]])
    clothes = torch.cat([clothes, clothes[:5] + 6])
    is_erased = torch.arange(13) >= 8
    outputs = {
        "feat": torch.randn(13, 6) * 0.3,
        "bn_feat": torch.randn(13, 6),
        "logits": torch.randn(13, num_classes),
        "attention": [torch.rand(13, 1, 4, 2)],
    }
    mask = torch.zeros(13, 16, 8, dtype=torch.bool)
    mask[:, 2:14, 2:6] = True
    has_mask = torch.ones(13, dtype=torch.bool)
    has_mask[3] = False
    return outputs, pids, clothes, is_erased, mask, has_mask


@pytest.mark.parametrize("erased_terms", [("ce", "tri", "bctri"), ("ce",), ()])
def test_objective_terms_and_erased_term_selection(erased_terms) -> None:
    outputs, pids, clothes, is_erased, mask, has_mask = objective_batch()
    objective = ReIDObjective(4, w_tri=0.5, w_bctri=2.0, w_bsga=0.7, use_bctri=True, erased_terms=erased_terms,
                              attention_loss=bsga_loss)
    total, terms = objective(outputs, pids, clothes, is_erased, mask, has_mask)
    assert set(terms) == set(TERM_NAMES)
    ce, orig = CrossEntropyLabelSmooth(4), ~is_erased
    feat, logits = outputs["feat"], outputs["logits"]
    expected = {
        "ce_orig": ce(logits[orig], pids[orig]),
        "ce_erased": ce(logits[is_erased], pids[is_erased]) if "ce" in erased_terms else torch.tensor(0.0),
        "tri": batch_hard_triplet_loss(*((feat, pids) if "tri" in erased_terms else (feat[orig], pids[orig]))),
        "bsga": bsga_loss(outputs["attention"], mask, valid=has_mask),
    }
    rows = slice(None) if "bctri" in erased_terms else orig
    expected["bctri"], count = bctri_loss(feat[rows], pids[rows], clothes[rows])
    expected["num_bctri_no_positive"] = count.float()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name
    weighted = (expected["ce_orig"] + expected["ce_erased"] + 0.5 * expected["tri"]
                + 2.0 * expected["bctri"] + 0.7 * expected["bsga"])
    assert total.item() == pytest.approx(weighted.item(), rel=1e-5)
    # persons 1 and 3 wear one outfit each; copies of person 1 (not 3) give it positives
    assert terms["num_bctri_no_positive"].item() == (4 if "bctri" not in erased_terms else 2)


def test_objective_without_bctri_bsga_and_copies() -> None:
    outputs, pids, clothes, _, _, _ = objective_batch()
    outputs["attention"] = []
    total, terms = ReIDObjective(4)(outputs, pids, clothes, torch.zeros(13, dtype=torch.bool))
    assert terms["bctri"] == 0 and terms["bsga"] == 0 and terms["ce_erased"] == 0
    assert total.item() == pytest.approx((terms["ce_orig"] + terms["tri"]).item(), rel=1e-6)


@pytest.mark.parametrize("preset", list(ABLATION_SWITCHES))
def test_objective_from_config(preset: str) -> None:
    cfg = Config()
    cfg.model.cre.losses = ["ce"]
    cfg.loss.bctri.metric = "cosine"
    cfg.model.preset = preset
    data = DataInfo(4, 4, torch.ones(4, 4, dtype=torch.bool), (5,))
    objective = PaperMethod(cfg, resolve_preset(cfg), data).build_objective()
    assert objective.use_bctri == ABLATION_SWITCHES[preset].bctri
    assert objective.erased_terms == {"ce"} and objective.bctri_metric == "cosine"
