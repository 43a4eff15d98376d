"""k-reciprocal re-ranking against a straightforward per-item loop (Zhong et al., CVPR 2017); sparse = dense."""

import sys

import numpy as np
import pytest
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation import evaluate_distmat, pairwise_distance, re_rank, rerank, rerank_features, rerank_sparse


def loop_re_rank(q_g, q_q, g_g, k1, k2, lam):
    """The authors' algorithm written item by item (stable argsort for deterministic ties)."""
    num_q = q_g.shape[0]
    dist = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float32) ** 2
    dist = (dist / dist.max(axis=0)).T  # column maxima, as in the reference code
    n = len(dist)
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        forward = rank[i, :k + 1]
        return [j for j in forward if i in rank[j, :k + 1]]

    v = np.zeros_like(dist)
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for c in r:
            rc = reciprocal(c, int(round(k1 / 2)))
            if len(set(rc) & set(r)) > 2.0 / 3 * len(rc):
                expanded |= set(rc)
        idx = sorted(expanded)
        w = np.exp(-dist[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((num_q, n), dtype=np.float32)
    for i in range(num_q):
        for j in range(n):
            shared = sum(min(v[i, k], v[j, k]) for k in range(n) if v[i, k] and v[j, k])
            jaccard[i, j] = 1 - shared / (2 - shared)
    final = jaccard * (1 - lam) + dist[:num_q] * lam
    return final[:, num_q:]


def _distances(seed, num_q, num_g, dim=6):
    rng = np.random.default_rng(seed)
    qf = torch.tensor(rng.standard_normal((num_q, dim)), dtype=torch.float32)
    gf = torch.tensor(rng.standard_normal((num_g, dim)), dtype=torch.float32)
    return [pairwise_distance(a, b, "euclidean") for a, b in ((qf, gf), (qf, qf), (gf, gf))]


@pytest.mark.parametrize("seed, num_q, num_g, k1, k2, lam", [
    (0, 6, 30, 20, 6, 0.3),  # defaults, k1 + 1 close to the item count
    (1, 8, 25, 5, 3, 0.5),  # odd k1: half set size round(2.5) + 1 = 3
    (2, 5, 20, 4, 1, 0.0),  # no query expansion, pure Jaccard
    (3, 3, 6, 20, 6, 1.0),  # fewer items than k1: whole rows are neighbours; original distance only
])
def test_matches_loop_reference(seed, num_q, num_g, k1, k2, lam):
    q_g, q_q, g_g = _distances(seed, num_q, num_g)
    got = re_rank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    expected = loop_re_rank(q_g.numpy(), q_q.numpy(), g_g.numpy(), k1, k2, lam)
    assert got.shape == (num_q, num_g) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


def test_accepts_numpy_and_feeds_evaluation():
    q_g, q_q, g_g = _distances(4, 10, 40)
    final = re_rank(q_g.numpy(), q_q.numpy(), g_g.numpy())
    res = evaluate_distmat(final, q_pids=np.arange(10) % 4, g_pids=np.arange(40) % 4,
                           q_camids=np.zeros(10, int), g_camids=np.ones(40, int))
    assert res["queries"] == 10 and 0 <= res["mAP"] <= 100


@pytest.mark.parametrize("kwargs, message", [
    (dict(q_q_dist=torch.zeros(3, 3)), "q_q_dist has shape"),
    (dict(g_g_dist=torch.zeros(4, 5)), "g_g_dist has shape"),
    (dict(k1=0), "k1 and k2"),
    (dict(lambda_value=1.5), "lambda_value"),
])
def test_bad_arguments(kwargs, message):
    q_g, q_q, g_g = _distances(5, 4, 5)
    args = dict(q_g_dist=q_g, q_q_dist=q_q, g_g_dist=g_g) | kwargs
    with pytest.raises(CCReIDError, match=message):
        re_rank(**args)


def _features(seed, num_q, num_g, dim=6, duplicates=0):
    rng = np.random.default_rng(seed)
    qf = rng.standard_normal((num_q, dim)).astype(np.float32) * 3
    gf = rng.standard_normal((num_g, dim)).astype(np.float32) * 3
    if duplicates:  # exact ties: copies of one gallery feature, and a query equal to a gallery item
        gf[1:1 + duplicates] = gf[0]
        qf[0] = gf[num_g // 2]
    return qf, gf


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed, num_q, num_g, k1, k2, lam, duplicates", [
    (0, 6, 30, 20, 6, 0.3, 0),  # defaults
    (1, 8, 25, 5, 3, 0.5, 3),  # odd k1, a few ties
    (2, 5, 20, 4, 1, 0.0, 0),  # no query expansion, pure Jaccard
    (3, 3, 6, 20, 6, 1.0, 0),  # fewer items than k1
    (4, 20, 200, 20, 6, 0.3, 60),  # 61 equal items: more than the first search fetches (2 x 21)
    (5, 30, 300, 7, 2, 0.7, 0),
])
def test_sparse_equals_dense(metric, seed, num_q, num_g, k1, k2, lam, duplicates):
    qf, gf = _features(seed, num_q, num_g, duplicates=duplicates)
    dense = rerank_features(qf, gf, metric, k1, k2, lam, impl="dense")
    sparse = rerank_features(qf, gf, metric, k1, k2, lam, impl="sparse")
    assert sparse.shape == dense.shape and sparse.dtype == torch.float32
    np.testing.assert_allclose(sparse.numpy(), dense.numpy(), atol=1e-6, rtol=0)
    labels = dict(q_pids=np.arange(num_q) % 4, g_pids=np.arange(num_g) % 4, q_camids=np.zeros(num_q, int),
                  g_camids=np.ones(num_g, int))
    a, b = evaluate_distmat(dense, **labels), evaluate_distmat(sparse, **labels)
    assert a["rank1"] == b["rank1"] and a["mAP"] == pytest.approx(b["mAP"], abs=1e-9)


def test_dense_features_match_loop_reference_with_ties():
    qf, gf = _features(6, 5, 40, duplicates=25)
    dists = [pairwise_distance(a, b, "cosine") for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    expected = loop_re_rank(*(d.numpy() for d in dists), 20, 6, 0.3)
    np.testing.assert_allclose(rerank_features(qf, gf, impl="dense").numpy(), expected, atol=1e-5, rtol=0)


def test_sparse_without_faiss_and_auto_choice(monkeypatch):
    qf, gf = _features(7, 10, 60, duplicates=4)
    dense = rerank_features(qf, gf, "euclidean", impl="dense")
    monkeypatch.setitem(sys.modules, "faiss", None)  # exact torch search instead
    np.testing.assert_allclose(rerank_features(qf, gf, "euclidean", impl="sparse").numpy(), dense.numpy(), atol=1e-6)
    with pytest.raises(CCReIDError, match="NaN"):
        rerank_features(np.where(np.arange(6) == 0, np.nan, qf), gf, impl="sparse")
    used = []
    monkeypatch.setattr(rerank_sparse, "sparse_re_rank", lambda *args: used.append(args) or dense)
    rerank_features(qf, gf, impl="auto")
    assert not used  # 70 items: dense
    monkeypatch.setattr(rerank, "DENSE_LIMIT", 69)
    rerank_features(qf, gf, impl="auto")
    assert len(used) == 1
    with pytest.raises(CCReIDError, match="rerank_impl"):
        rerank_features(qf, gf, impl="fast")
