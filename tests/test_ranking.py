"""Ranking metrics against hand-worked examples and a plain per-query loop."""

import numpy as np
import pytest
import torch

from ccreid.evaluation import evaluate


def loop_reference(dist, q_pids, g_pids, q_cams, g_cams, q_cl, g_cl, rule, ap_mode):
    """Straightforward per-query evaluation, the style of Simple-CCReID's evaluate."""
    first_hits, aps, missing = [], [], 0
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        kept, good = [], []
        for j in order:
            same_id = q_pids[i] == g_pids[j]
            junk = same_id and q_cams[i] == g_cams[j]
            if rule == "cc":
                junk = junk or (same_id and q_cl[i] == g_cl[j])
            if rule == "sc":
                junk = junk or (same_id and q_cl[i] != g_cl[j])
            if not junk:
                kept.append(j)
                good.append(same_id)
        if not any(good):
            missing += 1
            continue
        hit_ranks = [r for r, g in enumerate(good) if g]  # 0-based
        first_hits.append(hit_ranks[0] + 1)
        ap = 0.0
        for n, r in enumerate(hit_ranks):
            precision = (n + 1) / (r + 1)
            if ap_mode == "noninterp":
                ap += precision
            else:
                before = n / r if r else 1.0
                ap += (before + precision) / 2
        aps.append(ap / len(hit_ranks))
    first = np.array(first_hits)
    return {
        "rank1": 100 * np.mean(first <= 1) if len(first) else 0.0,
        "rank5": 100 * np.mean(first <= 5) if len(first) else 0.0,
        "mAP": 100 * np.mean(aps) if aps else 0.0,
        "queries_without_match": missing,
    }


def test_hand_worked_general_and_cc():
    # one query (id 1, cam 0, clothes 10); gallery ordered by distance 0.1 .. 0.5
    g_pids = [1, 2, 1, 1, 3]
    g_cams = [0, 1, 1, 1, 1]  # gallery 0 is same id + same camera: junk in every rule
    g_cl = [10, 20, 10, 11, 30]
    dist = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]])
    qf_gf = dict(q_pids=[1], g_pids=g_pids, q_camids=[0], g_camids=g_cams, q_clothes=[10], g_clothes=g_cl)
    # general: kept ranking = [2(id2), 1, 1, 3] -> hits at ranks 2 and 3
    # AP = (1/2 + 2/3) / 2 = 0.58333; rank1 = 0
    from ccreid.evaluation.ranking import match_masks, rank_distmat, summarise

    def run(rule, ap_mode="noninterp"):
        t = {k: torch.tensor(v) for k, v in qf_gf.items()}
        good, junk = match_masks(t["q_pids"], t["g_pids"], t["q_camids"], t["g_camids"],
                                 t["q_clothes"], t["g_clothes"], rule)
        out = rank_distmat(dist, good, junk, ap_mode)
        return summarise(out["first_hit"], out["ap"], out["has_match"])

    general = run("general")
    assert general["rank1"] == 0 and general["rank5"] == 100
    assert general["mAP"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    # market1501 AP: hit at rank 2 -> (old 0/1 + 1/2)/2 ; hit at rank 3 -> (1/2 + 2/3)/2 ; mean
    market = run("general", "market1501")
    assert market["mAP"] == pytest.approx(100 * ((0 + 1 / 2) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    # cc: the same-clothes gallery 2 is removed -> kept [id2, id1(cl 11), id3]; hit at rank 2
    cc = run("cc")
    assert cc["mAP"] == pytest.approx(50.0) and cc["rank1"] == 0
    # sc: the other-clothes gallery 3 is removed -> kept [id2, id1(cl 10), id3]; hit at rank 2
    sc = run("sc")
    assert sc["mAP"] == pytest.approx(50.0)


def test_no_match_queries_are_counted_not_averaged():
    qf = torch.eye(3)
    gf = torch.eye(3)
    res = evaluate(qf, gf, [0, 1, 5], [0, 1, 2], [0, 0, 0], [1, 1, 1])
    assert res["queries"] == 2 and res["queries_without_match"] == 1
    assert res["rank1"] == 100 and res["mAP"] == 100
    none = evaluate(qf, gf, [7, 8, 9], [0, 1, 2], [0, 0, 0], [1, 1, 1])
    assert none["queries"] == 0 and none["queries_without_match"] == 3 and none["mAP"] == 0


@pytest.mark.parametrize("rule", ["general", "sc", "cc"])
@pytest.mark.parametrize("ap_mode", ["noninterp", "market1501"])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_against_loop(rule, ap_mode, seed):
    rng = np.random.default_rng(seed)
    nq, ng = 37, 60
    q_pids, g_pids = rng.integers(0, 8, nq), rng.integers(0, 10, ng)
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    q_cl, g_cl = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    # quantised features create exact distance ties
    qf = torch.tensor(rng.integers(0, 3, (nq, 4)), dtype=torch.float32) + 0.1
    gf = torch.tensor(rng.integers(0, 3, (ng, 4)), dtype=torch.float32) + 0.1
    res = evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, q_cl, g_cl, rule=rule, ap_mode=ap_mode, chunk_size=8)
    from ccreid.evaluation import pairwise_distance

    ref = loop_reference(pairwise_distance(qf, gf).numpy(), q_pids, g_pids, q_cams, g_cams, q_cl, g_cl, rule, ap_mode)
    for key in ("rank1", "rank5", "mAP"):
        assert res[key] == pytest.approx(ref[key], abs=1e-9)
    assert res["queries_without_match"] == ref["queries_without_match"]


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(3)
    qf, gf = torch.randn(50, 8), torch.randn(80, 8)
    args = (rng.integers(0, 10, 50), rng.integers(0, 10, 80), rng.integers(0, 2, 50), rng.integers(0, 2, 80))
    a = evaluate(qf, gf, *args, chunk_size=7, metric="euclidean")
    b = evaluate(qf, gf, *args, chunk_size=1000, metric="euclidean")
    assert a == b


def test_one_image_gallery():
    res = evaluate(torch.randn(4, 3), torch.randn(1, 3), [0, 0, 1, 1], [0], [1, 1, 1, 1], [0])
    assert res["queries"] == 2 and res["rank1"] == 100 and res["mAP"] == 100
