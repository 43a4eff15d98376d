"""Verification rates (TPR at FPR) against a brute-force scan of every threshold."""

import numpy as np
import pytest
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation import pairwise_distance, verification_rates, verification_rates_distmat


def _data(seed, num_q=40, num_g=300, dim=8, ids=15, quantise=False):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim))
    q_pids, g_pids = rng.integers(0, ids + 2, num_q), rng.integers(0, ids, num_g)  # some queries unseen
    qf = np.where(q_pids[:, None] < ids, centres[np.minimum(q_pids, ids - 1)], 0) + rng.standard_normal((num_q, dim))
    gf = centres[g_pids] + rng.standard_normal((num_g, dim))
    if quantise:  # coarse values: many exactly equal distances
        qf, gf = np.round(qf), np.round(gf)
    labels = dict(q_pids=q_pids, g_pids=g_pids, q_camids=rng.integers(0, 3, num_q), g_camids=rng.integers(0, 3, num_g),
                  q_clothes=rng.integers(0, 2, num_q), g_clothes=rng.integers(0, 2, num_g))
    return qf.astype(np.float32), gf.astype(np.float32), labels


def brute_rates(dist, labels, rule):
    """Pair lists by loops; at each FPR the best TPR over every threshold t (accept d < t)."""
    pos, neg = [], []
    for i in range(dist.shape[0]):
        for j in range(dist.shape[1]):
            if labels["q_pids"][i] != labels["g_pids"][j]:
                neg.append(dist[i, j])
                continue
            if labels["q_camids"][i] == labels["g_camids"][j]:
                continue
            if rule != "general":
                same_clothes = labels["q_clothes"][i] == labels["g_clothes"][j]
                if (rule == "cc" and same_clothes) or (rule == "sc" and not same_clothes):
                    continue
            pos.append(dist[i, j])
    pos, neg = np.sort(pos), np.sort(neg)
    thresholds = np.append(np.unique(np.concatenate([pos, neg])), np.inf)
    accepted_pos = np.searchsorted(pos, thresholds, side="left")
    accepted_neg = np.searchsorted(neg, thresholds, side="left")
    out = {"positive_pairs": len(pos), "negative_pairs": len(neg)}
    for e in (4, 3, 2):
        allowed = accepted_neg <= len(neg) // 10**e
        out[f"tpr@fpr=1e-{e:02d}"] = accepted_pos[allowed].max() / len(pos) * 100
    return out


@pytest.mark.parametrize("seed, rule, metric, quantise", [
    (0, "general", "cosine", False),
    (1, "cc", "euclidean", False),
    (2, "sc", "cosine", True),
    (3, "general", "euclidean", True),
])
def test_matches_brute_force(seed, rule, metric, quantise):
    qf, gf, labels = _data(seed, quantise=quantise)
    dist = pairwise_distance(qf, gf, metric).numpy()
    expected = brute_rates(dist, labels, rule)
    assert expected["negative_pairs"] >= 10**4  # every FPR target is reachable
    for memory_mb in (512, 0.01):  # one block, then many
        got = verification_rates(qf, gf, **labels, rule=rule, metric=metric, memory_mb=memory_mb)
        assert got == pytest.approx(expected, abs=1e-9)
    assert verification_rates_distmat(torch.from_numpy(dist), **labels, rule=rule, memory_mb=0.01) == pytest.approx(
        expected, abs=1e-9)


def test_few_pairs_and_no_negatives():
    dist = np.array([[0.1, 0.5, 0.3], [0.2, 0.4, 0.9]], np.float32)
    labels = dict(q_pids=[0, 1], g_pids=[0, 1, 0], q_camids=[0, 0], g_camids=[1, 1, 1])
    got = verification_rates_distmat(dist, **labels)
    assert got == pytest.approx(brute_rates(dist, labels, "general"))
    # fewer than 10^4 negatives: no negative may be accepted, the threshold is the smallest one (0.2)
    assert got["tpr@fpr=1e-04"] == pytest.approx(100 * 1 / 3)
    same = dict(labels, q_pids=[0, 0], g_pids=[0, 0, 0])
    # no negative pairs: no false-positive rate exists, so neither does a TPR at one (not 100)
    assert verification_rates_distmat(dist, **same) == {"tpr@fpr=1e-04": None, "tpr@fpr=1e-03": None,
                                                        "tpr@fpr=1e-02": None, "positive_pairs": 6,
                                                        "negative_pairs": 0}
    far = dict(labels, g_camids=[0, 0, 0])  # every same-identity pair shares the camera: no positives
    assert verification_rates_distmat(dist, **far)["tpr@fpr=1e-02"] is None


def test_bad_inputs():
    qf, gf, labels = _data(4, num_q=3, num_g=5)
    with pytest.raises(CCReIDError, match="q_clothes is required"):
        verification_rates(qf, gf, **dict(labels, q_clothes=None), rule="cc")
    with pytest.raises(CCReIDError, match="NaN"):
        verification_rates_distmat(np.full((3, 5), np.nan), **labels)
    with pytest.raises(CCReIDError, match="gf has shape"):
        verification_rates(qf, gf[:, :4], **labels)
