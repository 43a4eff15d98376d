"""Alpha query expansion against a per-row loop in the style of fast-reid's aqe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ccreid.evaluation.aqe import alpha_query_expansion


def loop_aqe(qf, gf, k=5, alpha=3.0, rounds=1):
    feats = np.concatenate([qf, gf]).astype(np.float64)
    for _ in range(rounds):
        unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        sims = unit @ unit.T
        rows = []
        for sim in sims:
            top = np.argsort(-sim, kind="stable")[:k]
            rows.append(np.mean(feats[top] * np.power(sim[top], alpha)[:, None], axis=0))
        feats = np.stack(rows)
    return feats[:len(qf)], feats[len(qf):]


@pytest.mark.parametrize("k, alpha, rounds", [(5, 3.0, 1), (2, 1.0, 2), (9, 3.0, 1)])
def test_alpha_query_expansion_equals_the_loop(k, alpha, rounds):
    rng = np.random.default_rng(k)
    qf, gf = rng.standard_normal((7, 16)), rng.standard_normal((20, 16))
    q, g = alpha_query_expansion(torch.tensor(qf), torch.tensor(gf), k, alpha, rounds)
    ref_q, ref_g = loop_aqe(qf, gf, k, alpha, rounds)
    np.testing.assert_allclose(q.numpy(), ref_q, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g.numpy(), ref_g, rtol=1e-4, atol=1e-5)


def test_eval_aqe_from_the_command_line(tmp_path, capsys):
    from ccreid.cli import main

    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(6), 3)
    feats = rng.standard_normal((18, 8)) + 3 * np.eye(8)[pids % 8]
    np.savez(tmp_path / "f.npz", qf=feats[::3], gf=feats, q_pids=pids[::3], g_pids=pids, q_camids=np.zeros(6, int),
             g_camids=np.tile([0, 1, 2], 6))
    assert main(["eval", "--features", str(tmp_path / "f.npz"), "--json", "--quiet"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["eval", "--features", str(tmp_path / "f.npz"), "--json", "--aqe", "--quiet"]) == 0
    expanded = json.loads(capsys.readouterr().out)
    assert {"mINP", "cmc"} <= set(expanded) and len(expanded["cmc"]) == 18 and plain != expanded


def test_test_aqe_config_key(tmp_path):
    from ccreid.cli import main
    from test_viz_common import make_train_run, write_dataset

    run = make_train_run(tmp_path / "run", write_dataset(tmp_path / "data"))
    assert main(["test", "--weights", str(run / "model.safetensors"), "--out", str(tmp_path / "t"), "--quiet",
                 "--no-report", "test.aqe=true"]) == 0
    with_aqe = json.loads((tmp_path / "t" / "results.json").read_text())["presets"]["baseline"]
    plain = json.loads((run / "results.json").read_text())["presets"]["baseline"]
    assert set(with_aqe) == set(plain) and with_aqe != plain


def test_eval_rerank_parameters_from_the_command_line(tmp_path, capsys):
    from ccreid.cli import main
    from ccreid.evaluation import evaluate_distmat, rerank_features

    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(8), 4)
    feats = (rng.standard_normal((32, 8)) + 2 * np.eye(8)[pids]).astype(np.float32)
    cams = np.tile([0, 1, 2, 3], 8)
    np.savez(tmp_path / "f.npz", qf=feats[::4], gf=feats, q_pids=pids[::4], g_pids=pids, q_camids=cams[::4],
             g_camids=cams)
    args = ["eval", "--features", str(tmp_path / "f.npz"), "--json", "--quiet", "--rerank"]
    assert main(args + ["--k1", "5", "--k2", "2", "--lambda", "0.5"]) == 0
    got = json.loads(capsys.readouterr().out)
    dist = rerank_features(feats[::4], feats, "cosine", 5, 2, 0.5)
    want = evaluate_distmat(dist, pids[::4], pids, cams[::4], cams)
    assert got["mAP"] == pytest.approx(want["mAP"]) and got["rank1"] == pytest.approx(want["rank1"])
    assert main(args + ["--k1", "0"]) == 2
    assert "--k1" in capsys.readouterr().err
