"""CUHK03 single-gallery-shot CMC against torchreid's per-query loop (same draws)."""

import numpy as np
import pytest
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation import evaluate, pairwise_distance, single_gallery_shot, single_gallery_shot_distmat
from ccreid.evaluation import single_shot


def _data(seed, num_q=23, num_g=90, dim=6, ids=12, quantise=False):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim))
    q_pids, g_pids = rng.integers(0, ids + 2, num_q), rng.integers(0, ids, num_g)
    qf = centres[q_pids % ids] + rng.standard_normal((num_q, dim))
    gf = centres[g_pids] + rng.standard_normal((num_g, dim))
    if quantise:
        qf, gf = np.round(qf), np.round(gf)
    labels = dict(q_pids=q_pids, g_pids=g_pids, q_camids=rng.integers(0, 3, num_q), g_camids=rng.integers(0, 3, num_g),
                  q_clothes=rng.integers(0, 2, num_q), g_clothes=rng.integers(0, 2, num_g))
    return qf.astype(np.float32), gf.astype(np.float32), labels


def loop_single_shot(dist, labels, rule, repeats, seed, block, max_rank=50):
    """torchreid's eval_cuhk03 query by query, identity by identity, with the module's draws."""
    num_q, num_g = dist.shape
    ids = sorted(set(labels["g_pids"].tolist()))
    cmc, valid = np.zeros(len(ids)), 0
    for i in range(num_q):
        u = single_shot.draws(seed, i // block, repeats, min(block, num_q - i // block * block), len(ids)).numpy()
        row = i % block
        kept = {}
        for j in range(num_g):
            if labels["g_pids"][j] == labels["q_pids"][i]:
                if labels["g_camids"][j] == labels["q_camids"][i]:
                    continue
                if rule != "general":
                    same_clothes = labels["g_clothes"][j] == labels["q_clothes"][i]
                    if (rule == "cc" and same_clothes) or (rule == "sc" and not same_clothes):
                        continue
            kept.setdefault(int(labels["g_pids"][j]), []).append(j)
        if labels["q_pids"][i] not in kept:
            continue
        valid += 1
        for r in range(repeats):
            picks = [kept[p][int(u[r, row, c] * len(kept[p]))] for c, p in enumerate(ids) if p in kept]
            order = sorted(picks, key=lambda j: (dist[i, j], j))
            hit = [labels["g_pids"][j] == labels["q_pids"][i] for j in order].index(True)
            cmc[hit:] += 1
    cmc = cmc / (valid * repeats) * 100
    return {"queries": valid, "queries_without_match": num_q - valid, "rank1": cmc[0], "rank5": cmc[4],
            "rank10": cmc[9], "cmc": list(cmc[:max_rank])}


def assert_same(got, expected):
    assert got["cmc"] == pytest.approx(expected["cmc"], abs=1e-9)
    assert {k: v for k, v in got.items() if k != "cmc"} == pytest.approx(
        {k: v for k, v in expected.items() if k != "cmc"}, abs=1e-9)


@pytest.mark.parametrize("seed, rule, metric, quantise", [
    (0, "general", "cosine", False),
    (1, "cc", "euclidean", False),
    (2, "sc", "cosine", True),
])
def test_matches_torchreid_loop(monkeypatch, seed, rule, metric, quantise):
    monkeypatch.setattr(single_shot, "QUERY_BLOCK", 5)  # several random blocks
    qf, gf, labels = _data(seed, quantise=quantise)
    dist = pairwise_distance(qf, gf, metric).numpy()
    expected = loop_single_shot(dist, labels, rule, repeats=4, seed=seed, block=5)
    assert 0 < expected["queries"] < len(qf)
    for memory_mb in (512, 0.001):
        got = single_gallery_shot(qf, gf, **labels, rule=rule, metric=metric, repeats=4, seed=seed,
                                  memory_mb=memory_mb)
        assert_same(got, expected)
    assert_same(single_gallery_shot_distmat(torch.from_numpy(dist), **labels, rule=rule, repeats=4, seed=seed),
                expected)
    other = single_gallery_shot(qf, gf, **labels, rule=rule, metric=metric, repeats=4, seed=seed + 1)
    assert other["cmc"] != expected["cmc"]


def test_one_image_per_identity_is_the_ordinary_cmc():
    qf, gf, labels = _data(3, num_g=12, ids=12)
    labels["g_pids"] = np.arange(12)
    labels["g_camids"] = np.full(12, 5)
    full = evaluate(qf, gf, **labels)
    shot = single_gallery_shot(qf, gf, **labels, repeats=3)
    assert shot["queries"] == full["queries"]
    assert shot["cmc"] == pytest.approx(full["cmc"]) and shot["rank1"] == pytest.approx(full["rank1"])


def test_bad_arguments():
    qf, gf, labels = _data(4)
    with pytest.raises(CCReIDError, match="repeats"):
        single_gallery_shot(qf, gf, **labels, repeats=0)
    with pytest.raises(CCReIDError, match="g_clothes is required"):
        single_gallery_shot(qf, gf, **dict(labels, g_clothes=None), rule="sc")
