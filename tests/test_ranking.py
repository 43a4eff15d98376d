"""Ranking metrics: hand-worked examples, a plain per-query loop reference, chunking, bad input."""

import numpy as np
import pytest
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation import evaluate, evaluate_distmat, pairwise_distance


def loop_reference(dist, q_pids, g_pids, q_cams, g_cams, q_cl, g_cl, rule, ap_mode, ranks=(1, 5, 10)):
    """Straightforward per-query evaluation in the style of Simple-CCReID's evaluate."""
    first_hits, aps, inps, missing = [], [], [], 0
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")  # ties: lower gallery index first
        good = []
        for j in order:
            same_id = q_pids[i] == g_pids[j]
            junk = same_id and q_cams[i] == g_cams[j]
            if rule == "cc":
                junk = junk or (same_id and q_cl[i] == g_cl[j])
            if rule == "sc":
                junk = junk or (same_id and q_cl[i] != g_cl[j])
            if not junk:
                good.append(same_id)
        hit_ranks = [r + 1 for r, g in enumerate(good) if g]
        if not hit_ranks:
            missing += 1
            continue
        first_hits.append(hit_ranks[0])
        inps.append(len(hit_ranks) / hit_ranks[-1])  # fast-reid's INP: matches / rank of the hardest
        ap = 0.0
        for n, r in enumerate(hit_ranks, start=1):
            if ap_mode == "noninterp":
                ap += n / r
            else:
                before = (n - 1) / (r - 1) if r > 1 else 1.0
                ap += (before + n / r) / 2
        aps.append(ap / len(hit_ranks))
    first = np.array(first_hits)
    out = {f"rank{r}": 100 * float(np.mean(first <= r)) if len(first) else 0.0 for r in ranks}
    out["mAP"] = 100 * float(np.mean(aps)) if aps else 0.0
    out["mINP"] = 100 * float(np.mean(inps)) if inps else 0.0
    out["queries"] = len(first_hits)
    out["queries_without_match"] = missing
    return out


# One query: person 1, camera 0, clothes 10. Gallery (pid, camera, clothes, distance):
#   g0 (1, 0, 10, .10) same id + same camera: removed by every rule
#   g1 (2, 1, 20, .20)
#   g2 (1, 1, 10, .30) same id, same clothes
#   g3 (3, 1, 30, .30) ties with g2; g2 comes first (lower index)
#   g4 (1, 2, 11, .40) same id, other clothes
#   g5 (4, 2, 40, .50)
#   g6 (1, 2, 10, .60) same id, same clothes
EXAMPLE = dict(q_pids=[1], g_pids=[1, 2, 1, 3, 1, 4, 1], q_camids=[0], g_camids=[0, 1, 1, 1, 2, 2, 2],
               q_clothes=[10], g_clothes=[10, 20, 10, 30, 11, 40, 10])
EXAMPLE_DIST = np.array([[0.10, 0.20, 0.30, 0.30, 0.40, 0.50, 0.60]], dtype=np.float32)


@pytest.mark.parametrize("rule, ap_mode, first_hit, ap", [
    # general: kept g1 g2 g3 g4 g5 g6 -> matches g2, g4, g6 at ranks 2, 4, 6
    ("general", "noninterp", 2, (1 / 2 + 2 / 4 + 3 / 6) / 3),  # = 0.5
    # trapezoid: (0/1 + 1/2)/2 = .25, (1/3 + 2/4)/2 = 5/12, (2/5 + 3/6)/2 = .45
    ("general", "market1501", 2, (0.25 + 5 / 12 + 0.45) / 3),  # = 0.3722
    # cc: g2, g6 (same clothes) removed -> kept g1 g3 g4 g5, match g4 at rank 3
    ("cc", "noninterp", 3, 1 / 3),
    ("cc", "market1501", 3, (0 / 2 + 1 / 3) / 2),  # = 1/6
    # sc: g4 (other clothes) removed -> kept g1 g2 g3 g5 g6, matches at ranks 2 and 5
    ("sc", "noninterp", 2, (1 / 2 + 2 / 5) / 2),  # = 0.45
    ("sc", "market1501", 2, ((0 + 1 / 2) / 2 + (1 / 4 + 2 / 5) / 2) / 2),  # = 0.2875
])
def test_hand_worked_rules_and_ap_modes(rule, ap_mode, first_hit, ap):
    res = evaluate_distmat(EXAMPLE_DIST, **EXAMPLE, rule=rule, ap_mode=ap_mode)
    assert res["mAP"] == pytest.approx(100 * ap, abs=1e-12)
    assert res["rank1"] == (100.0 if first_hit <= 1 else 0.0)
    assert res["rank5"] == 100.0
    assert res["queries"] == 1 and res["queries_without_match"] == 0
    assert len(res["cmc"]) == 7  # min(50, gallery size)
    assert res["cmc"][first_hit - 2] == 0.0 and res["cmc"][first_hit - 1] == 100.0


def test_hand_worked_ties_and_queries_without_match():
    # Gallery: pids [7, 8, 9, 8], cameras all 1, clothes [70, 80, 90, 81].
    # q0 (pid 8, cam 0, clothes 80): distances .2 .2 .2 .2 -> all tie, index order:
    #   g0 (7), g1 (8) match at rank 2, g2 (9), g3 (8) match at rank 4
    #   general AP = (1/2 + 2/4)/2 = 0.5 ; cc: g1 same clothes removed -> g3 at rank 3, AP 1/3
    # q1 (pid 9, cam 1): g2 is same id + same camera -> no valid match
    # q2 (pid 5): absent from the gallery -> no valid match
    dist = np.full((3, 4), 0.2, dtype=np.float32)
    labels = dict(q_pids=[8, 9, 5], g_pids=[7, 8, 9, 8], q_camids=[0, 1, 0], g_camids=[1, 1, 1, 1],
                  q_clothes=[80, 90, 50], g_clothes=[70, 80, 90, 81])
    general = evaluate_distmat(dist, **labels)
    assert general["queries"] == 1 and general["queries_without_match"] == 2
    assert general["mAP"] == pytest.approx(50.0) and general["rank1"] == 0.0 and general["cmc"][1] == 100.0
    cc = evaluate_distmat(dist, **labels, rule="cc")
    assert cc["mAP"] == pytest.approx(100 / 3) and cc["cmc"][1] == 0.0 and cc["cmc"][2] == 100.0


def test_all_queries_without_match_give_zeros():
    res = evaluate(torch.eye(3), torch.eye(3), [7, 8, 9], [0, 1, 2], [0, 0, 0], [1, 1, 1])
    assert res["queries"] == 0 and res["queries_without_match"] == 3
    assert res["mAP"] == 0.0 and res["rank1"] == 0.0 and res["cmc"] == [0.0, 0.0, 0.0]


def _random_case(rng, nq, ng, dim, n_ids, quantised):
    if quantised:  # few distinct values: many exact distance ties, some zero rows
        qf = rng.integers(0, 3, (nq, dim)).astype(np.float32)
        gf = rng.integers(0, 3, (ng, dim)).astype(np.float32)
    else:
        qf = rng.standard_normal((nq, dim)).astype(np.float32)
        gf = rng.standard_normal((ng, dim)).astype(np.float32)
    labels = dict(q_pids=rng.integers(0, n_ids + 3, nq),  # ids >= n_ids never appear in the gallery
                  g_pids=rng.integers(0, n_ids, ng), q_camids=rng.integers(0, 3, nq),
                  g_camids=rng.integers(0, 3, ng), q_clothes=rng.integers(0, 3, nq), g_clothes=rng.integers(0, 3, ng))
    return qf, gf, labels


@pytest.mark.parametrize("rule", ["general", "sc", "cc"])
@pytest.mark.parametrize("ap_mode", ["noninterp", "market1501"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_against_loop(rule, ap_mode, metric, seed):
    rng = np.random.default_rng(seed)
    ng = [1, 3, 70][seed]  # includes a one-image gallery
    qf, gf, labels = _random_case(rng, 40, ng, 4, 6, quantised=seed != 1)
    chunk, gallery_chunk = int(rng.integers(1, 9)), int(rng.integers(1, 20))
    res = evaluate(qf, gf, **labels, rule=rule, metric=metric, ap_mode=ap_mode,
                   chunk_size=chunk, gallery_chunk=gallery_chunk)
    dist = pairwise_distance(qf, gf, metric).numpy()
    ref = loop_reference(dist, *labels.values(), rule, ap_mode)
    for key, value in ref.items():
        assert res[key] == pytest.approx(value, abs=1e-9), key
    assert res == evaluate_distmat(dist, **labels, rule=rule, ap_mode=ap_mode)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_chunked_equals_one_chunk(metric):
    rng = np.random.default_rng(5)
    qf, gf, labels = _random_case(rng, 60, 500, 16, 40, quantised=False)
    gf[7] = gf[3]  # duplicated gallery rows in different chunks: an exact tie across chunks
    gf[450] = gf[3]
    whole = evaluate(qf, gf, **labels, rule="cc", metric=metric, chunk_size=60, gallery_chunk=500)
    assert whole["queries"] > 0
    for chunk, gallery_chunk in [(1, 500), (7, 13), (60, 3), (None, None)]:
        assert evaluate(qf, gf, **labels, rule="cc", metric=metric, chunk_size=chunk,
                        gallery_chunk=gallery_chunk) == whole
    assert evaluate(qf, gf, **labels, rule="cc", metric=metric, memory_mb=0.05) == whole


def test_distances_do_not_depend_on_chunk_shape():
    rng = np.random.default_rng(0)
    qf = torch.tensor(rng.standard_normal((37, 64)), dtype=torch.float32)
    gf = torch.tensor(rng.standard_normal((301, 64)), dtype=torch.float32)
    for metric in ("cosine", "euclidean"):
        full = pairwise_distance(qf, gf, metric)
        rows = torch.cat([pairwise_distance(qf[i:i + 1], gf, metric) for i in range(len(qf))])
        cols = torch.cat([pairwise_distance(qf, gf[j:j + 7], metric) for j in range(0, len(gf), 7)], 1)
        assert torch.equal(full, rows) and torch.equal(full, cols)
        exact = torch.cdist(qf.double(), gf.double()) if metric == "euclidean" else \
            1 - torch.nn.functional.normalize(qf.double(), dim=1) @ torch.nn.functional.normalize(gf.double(), dim=1).T
        assert torch.allclose(full.double(), exact, atol=1e-6)


def test_inputs_numpy_float16_and_tensors_agree():
    rng = np.random.default_rng(1)
    qf, gf, labels = _random_case(rng, 30, 90, 8, 10, quantised=False)
    gf16 = gf.astype(np.float16)
    as_tensors = {k: torch.tensor(v) for k, v in labels.items()}
    expected = evaluate(qf, gf16.astype(np.float32), **labels)
    assert evaluate(torch.tensor(qf), gf16, **as_tensors) == expected
    assert evaluate(qf, torch.tensor(gf16), **labels, device="cpu") == expected


@pytest.mark.parametrize("change, message", [
    (dict(q_pids=[0, 1]), "q_pids has 2 entries"),
    (dict(g_camids=[0]), "g_camids has 1 entries"),
    (dict(qf=np.zeros((0, 4), np.float32), q_pids=[], q_camids=[], q_clothes=[]), "qf is empty"),
    (dict(gf=np.ones((5, 3), np.float32)), "feature dimension"),
    (dict(gf=np.full((5, 4), np.nan, np.float32)), "gf .*NaN"),
    (dict(qf=np.full((3, 4), np.inf, np.float32)), "qf contains NaN or inf"),
    (dict(rule="xx"), "unknown 'xx'"),
    (dict(metric="manhattan"), "option metric"),
    (dict(ap_mode="11point"), "option ap_mode"),
    (dict(rule="cc", q_clothes=None), "q_clothes is required"),
    (dict(q_pids=[0.5, 1.0, 2.0]), "q_pids must hold integers"),
])
def test_bad_input_is_a_clear_error(change, message):
    args = dict(qf=np.ones((3, 4), np.float32), gf=np.ones((5, 4), np.float32), q_pids=[0, 1, 2],
                g_pids=[0, 1, 2, 3, 4], q_camids=[0, 0, 0], g_camids=[1] * 5, q_clothes=[0, 0, 0], g_clothes=[0] * 5)
    args.update(change)
    with pytest.raises(CCReIDError, match=message):
        evaluate(**args)


def test_bad_distmat_is_a_clear_error():
    labels = dict(q_pids=[0], g_pids=[0, 1], q_camids=[0], g_camids=[1, 1])
    with pytest.raises(CCReIDError, match="NaN or inf"):
        evaluate_distmat(np.array([[np.nan, 0.1]]), **labels)
    with pytest.raises(CCReIDError, match="2-D"):
        evaluate_distmat(np.array([0.1, 0.2]), **labels)


def test_fast_cosine_path_equals_exact_path_on_near_ties(monkeypatch):
    # gallery rows are a few base vectors plus 1e-6 noise: many distances lie within the
    # float32 error bound of a positive's, so the exact re-check decides them
    rng = np.random.default_rng(2)
    base = rng.standard_normal((4, 32)).astype(np.float32)
    gf = base[rng.integers(0, 4, 600)] + 1e-6 * rng.standard_normal((600, 32)).astype(np.float32)
    qf = base[rng.integers(0, 4, 50)] + 1e-6 * rng.standard_normal((50, 32)).astype(np.float32)
    gf[100] = gf[3]  # an exact tie
    labels = dict(q_pids=rng.integers(0, 20, 50), g_pids=rng.integers(0, 20, 600),
                  q_camids=rng.integers(0, 2, 50), g_camids=rng.integers(0, 2, 600))
    fast = evaluate(qf, gf, **labels, chunk_size=17, gallery_chunk=128)
    assert fast == evaluate_distmat(pairwise_distance(qf, gf), **labels)
    monkeypatch.setattr("ccreid.evaluation.ranking.fast_cosine_bound", lambda dim, device: None)
    assert evaluate(qf, gf, **labels, chunk_size=17, gallery_chunk=128) == fast


def test_one_match_rule_for_tensors_and_bools():
    from ccreid.evaluation.ranking import valid_match

    cams = torch.tensor([False, False, True, True])
    clothes = torch.tensor([False, True, False, True])
    expected = {"general": [True, True, False, False], "cc": [True, False, False, False],
                "sc": [False, True, False, False]}
    for rule, want in expected.items():
        assert valid_match(rule, cams, clothes).tolist() == want
        assert [bool(valid_match(rule, bool(a), bool(b))) for a, b in zip(cams, clothes)] == want
