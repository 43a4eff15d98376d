"""The feature commands end to end: extract -> eval / index -> search, and their bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ccreid.cli import main
from ccreid.commands import tester
from ccreid.methods.restore import load_checkpoint_config
from test_viz_common import make_checkpoint, write_dataset


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("features")
    manifest = write_dataset(root / "data")
    return root, manifest, make_checkpoint(root / "ours.safetensors", manifest, "ours", seed=5)


def run_json(args, capsys):
    capsys.readouterr()
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("protocol", ["cc", "sc"])
def test_extract_then_eval_reproduces_ccreid_test(checkpoint, tmp_path, capsys, protocol):
    root, _, weights = checkpoint
    feats = tmp_path / f"{protocol}.npz"
    assert main(["extract", "--weights", str(weights), "--protocol", protocol, "--out", str(feats), "--quiet"]) == 0
    stored = np.load(feats)
    assert {"qf", "gf", "q_pids", "g_pids", "q_camids", "g_camids", "q_clothes", "g_clothes", "q_paths"} <= set(
        stored.files)
    assert np.allclose(np.linalg.norm(stored["qf"], axis=1), 1, atol=1e-5)
    assert str(stored["protocol"]) == protocol  # the file records its protocol, and eval uses it
    metrics = run_json(["eval", "--features", str(feats), "--json"], capsys)
    assert set(metrics) == {"rank1", "rank5", "rank10", "mAP", "mINP", "queries", "queries_without_match", "cmc",
                            "protocol"}
    assert metrics["protocol"] == protocol
    assert main(["eval", "--features", str(feats), "--protocol", "general"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"holds the query and gallery of protocol {protocol}" in err and f"--protocol {protocol}" in err
    old = tmp_path / "old.npz"  # a file of an older ccreid: no record, --protocol as given
    np.savez(old, **{key: stored[key] for key in stored.files if key != "protocol"})
    assert run_json(["eval", "--features", str(old), "--protocol", protocol, "--json"], capsys) == metrics
    expected = tester.test_checkpoint(weights, tmp_path / "test")["ours"][protocol]
    for key in ("rank1", "rank5", "mAP", "mINP", "queries", "queries_without_match"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key


def test_eval_options_and_table(checkpoint, tmp_path, capsys):
    root, _, weights = checkpoint
    feats = tmp_path / "general.npz"
    main(["extract", "--weights", str(weights), "--protocol", "general", "--out", str(feats), "--quiet"])
    plain = run_json(["eval", "--features", str(feats), "--json"], capsys)
    market = run_json(["eval", "--features", str(feats), "--ap-mode", "market1501", "--json"], capsys)
    assert market["mAP"] <= plain["mAP"] + 1e-9 and market["rank1"] == plain["rank1"]
    reranked = run_json(["eval", "--features", str(feats), "--rerank", "--json"], capsys)
    assert reranked["queries"] == plain["queries"] and 0 <= reranked["mAP"] <= 100
    tiny_chunks = run_json(["eval", "--features", str(feats), "--chunk", "0.001", "--json"], capsys)
    assert tiny_chunks == plain
    assert main(["eval", "--features", str(feats), "--metric", "euclidean"]) == 0
    assert "top-1" in capsys.readouterr().out


def test_eval_bad_inputs_name_the_key(tmp_path, capsys):
    good = {"qf": np.ones((2, 4), np.float32), "gf": np.ones((3, 4), np.float32), "q_pids": np.arange(2),
            "g_pids": np.arange(3), "q_camids": np.zeros(2, int), "g_camids": np.ones(3, int)}
    cases = {"g_pids": dict(good, g_pids=np.arange(4)), "'gf'": dict(good, gf=np.ones((3, 5), np.float32)),
             "q_camids": {k: v for k, v in good.items() if k != "q_camids"},
             "NaN": dict(good, qf=np.full((2, 4), np.nan, np.float32))}
    for needle, arrays in cases.items():
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        capsys.readouterr()
        assert main(["eval", "--features", str(path)]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    np.savez(tmp_path / "ok.npz", **good)
    assert main(["eval", "--features", str(tmp_path / "ok.npz"), "--protocol", "cc"]) == 2
    assert "q_clothes" in capsys.readouterr().err


def test_extract_from_folder_and_csv(checkpoint, tmp_path, capsys):
    root, manifest, weights = checkpoint
    folder = tmp_path / "folder.npz"
    assert main(["extract", "--weights", str(weights), "--images", str(root / "data" / "images"), "--out",
                 str(folder), "--quiet", "--no-flip"]) == 0
    stored = np.load(folder)
    assert set(stored.files) == {"gf", "g_paths"} and len(stored["gf"]) == len(list((root / "data" / "images").iterdir()))
    assert list(stored["g_paths"]) == sorted(stored["g_paths"])
    assert main(["eval", "--features", str(folder)]) == 2  # said to be a folder extract, not a damaged file
    err = capsys.readouterr().err.replace("\n", "")
    assert "holds a folder or list extract" in err and "--protocol" in err and "missing key" not in err
    table = tmp_path / "table.npz"
    assert main(["extract", "--weights", str(weights), "--images", str(manifest), "--out", str(table), "--quiet"]) == 0
    stored = np.load(table)
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:]]
    assert len(stored["qf"]) == sum(r[4] == "query" for r in rows)
    assert len(stored["gf"]) == sum(r[4] == "gallery" for r in rows)
    assert sorted(set(stored["g_pids"].tolist())) == sorted({int(r[1]) for r in rows if r[4] == "gallery"})


def test_index_and_search_with_features_and_images(checkpoint, tmp_path, capsys):
    root, manifest, weights = checkpoint
    feats = tmp_path / "table.npz"
    main(["extract", "--weights", str(weights), "--images", str(manifest), "--out", str(feats), "--quiet"])
    index = tmp_path / "gallery.index"
    assert main(["index", "--features", str(feats), "--out", str(index), "--quiet"]) == 0
    assert index.is_file() and (tmp_path / "gallery.index.json").is_file()
    found = run_json(["search", "--index", str(index), "--features", str(feats), "-k", "3"], capsys)
    stored = np.load(feats)
    assert len(found["results"]) == len(stored["qf"])
    first = found["results"][0]
    assert first["query"] == stored["q_paths"][0] and len(first["matches"]) == 3
    scores = [m["score"] for m in first["matches"]]
    assert scores == sorted(scores, reverse=True)
    expected = int(np.argmax(stored["gf"] @ stored["qf"][0]))
    assert first["matches"][0]["index"] == expected
    assert first["matches"][0]["path"] == stored["g_paths"][expected]
    assert first["matches"][0]["pid"] == int(stored["g_pids"][expected])
    gallery_image = str(stored["g_paths"][1])
    found = run_json(["search", "--index", str(index), "--images", gallery_image, "--weights", str(weights), "-k", "1",
                      "--compact", "--device", "cpu"], capsys)
    match = found["results"][0]["matches"][0]
    assert match["path"] == gallery_image and match["score"] == pytest.approx(1.0, abs=1e-4)


def test_search_bad_inputs(checkpoint, tmp_path, capsys):
    root, manifest, weights = checkpoint
    assert main(["search", "--index", str(tmp_path / "none.index"), "--features", str(tmp_path / "x.npz")]) == 2
    assert main(["search", "--index", str(tmp_path / "none.index"), "--images", "a.jpg"]) == 2
    assert main(["extract", "--weights", str(weights), "--images", str(tmp_path), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert "x.npz" in err and "--weights" in err and "no .jpg" in err and "Traceback" not in err


def test_test_feature_key_selects_the_feature(checkpoint, tmp_path):
    _, _, weights = checkpoint
    feats = {}
    for feature in ("bn", "pre"):
        out = tmp_path / f"{feature}.npz"
        assert main(["extract", "--weights", str(weights), "--protocol", "cc", "--out", str(out), "--quiet",
                     f"test.feature={feature}"]) == 0
        feats[feature] = np.load(out)["gf"]
    assert feats["bn"].shape == feats["pre"].shape and not np.allclose(feats["bn"], feats["pre"], atol=1e-3)
    assert main(["extract", "--weights", str(weights), "--protocol", "cc", "--out", str(tmp_path / "x.npz"),
                 "test.feature=mid"]) == 2


def test_test_rerank_and_single_shot_match_stored_feature_evaluation(checkpoint, tmp_path, capsys):
    from ccreid.data.datasets import single_shot_galleries
    from ccreid.data.manager import DataManager
    from ccreid.evaluation import evaluate
    from ccreid.runs.features_io import load_features

    root, _, weights = checkpoint
    feats = tmp_path / "cc.npz"
    main(["extract", "--weights", str(weights), "--protocol", "cc", "--out", str(feats), "--quiet"])
    reranked = run_json(["eval", "--features", str(feats), "--protocol", "cc", "--rerank", "--json"], capsys)
    assert main(["test", "--weights", str(weights), "--out", str(tmp_path / "rr"), "--rerank", "--quiet",
                 "--no-report"]) == 0
    tested = json.loads((tmp_path / "rr" / "results.json").read_text())["presets"]["ours"]["cc"]
    assert tested["mAP"] == pytest.approx(reranked["mAP"], abs=1e-6)
    assert tested["rank1"] == pytest.approx(reranked["rank1"], abs=1e-6)

    single = tester.test_checkpoint(weights, tmp_path / "ss", overrides=["test.single_shot=3"])["ours"]["cc"]
    assert single["single_shot"] == 3  # labelled single-shot in results.json, results.md and printed tables
    assert json.loads((tmp_path / "ss" / "results.json").read_text())["presets"]["ours"]["cc"]["single_shot"] == 3
    assert "single-shot x3" in (tmp_path / "ss" / "results.md").read_text().splitlines()[0]
    arrays = load_features(feats, "cc")[1]
    cfg, _ = load_checkpoint_config(weights, None, [])
    split = DataManager(cfg, need_parsing=False).eval_splits("test")["cc"]
    row = {str(p): i for i, p in enumerate(arrays["g_paths"])}
    expected = []
    for gallery in single_shot_galleries(split.gallery, 3):
        keep = np.array([row[r.path] for r in gallery])
        assert len(keep) == len({r.pid for r in split.gallery})  # one image per identity
        expected.append(evaluate(arrays["qf"], arrays["gf"][keep], arrays["q_pids"], arrays["g_pids"][keep],
                                 arrays["q_camids"], arrays["g_camids"][keep], arrays["q_clothes"],
                                 arrays["g_clothes"][keep], rule="cc")["mAP"])
    assert single["mAP"] == pytest.approx(float(np.mean(expected)), abs=1e-4)
    assert main(["test", "--weights", str(weights), "--out", str(tmp_path / "x"), "test.single_shot=-1"]) == 2


def test_eval_roc_single_gallery_shot_and_rerank_impl(tmp_path, capsys):
    from ccreid.evaluation import evaluate, single_gallery_shot, verification_rates

    rng = np.random.default_rng(3)
    q_pids, g_pids = rng.integers(0, 12, 30), rng.integers(0, 12, 150)
    centres = rng.standard_normal((12, 8))
    arrays = {"qf": (centres[q_pids] + rng.standard_normal((30, 8))).astype(np.float32),
              "gf": (centres[g_pids] + rng.standard_normal((150, 8))).astype(np.float32),
              "q_pids": q_pids, "g_pids": g_pids, "q_camids": rng.integers(0, 3, 30),
              "g_camids": rng.integers(0, 3, 150),
              "q_clothes": rng.integers(0, 2, 30), "g_clothes": rng.integers(0, 2, 150)}
    feats = tmp_path / "f.npz"
    np.savez(feats, **arrays)
    labels = {k: v for k, v in arrays.items() if k not in ("qf", "gf")}
    got = run_json(["eval", "--features", str(feats), "--protocol", "cc", "--roc", "--single-gallery-shot", "3",
                    "--seed", "1", "--json"], capsys)
    full = evaluate(arrays["qf"], arrays["gf"], **labels, rule="cc")
    shot = single_gallery_shot(arrays["qf"], arrays["gf"], **labels, rule="cc", repeats=3, seed=1)
    rates = verification_rates(arrays["qf"], arrays["gf"], **labels, rule="cc")
    assert got["mAP"] == full["mAP"] and got["mINP"] == full["mINP"]  # AP of the whole gallery, as torchreid
    assert {k: got[k] for k in ("rank1", "rank5", "rank10", "cmc")} == {k: shot[k] for k in ("rank1", "rank5",
                                                                                          "rank10", "cmc")}
    assert {k: got[k] for k in rates} == rates and got["single_gallery_shot"] == 3 and got["seed"] == 1
    dense = run_json(["eval", "--features", str(feats), "--rerank", "--rerank-impl", "dense", "--roc", "--json"],
                     capsys)
    sparse = run_json(["eval", "--features", str(feats), "--rerank", "--rerank-impl", "sparse", "--roc", "--json"],
                      capsys)
    assert dense.pop("cmc") == pytest.approx(sparse.pop("cmc"), abs=1e-6) and dense == pytest.approx(sparse, abs=1e-6)
    assert main(["eval", "--features", str(feats), "--roc", "--single-gallery-shot", "2"]) == 0
    out = capsys.readouterr().out
    assert "TPR@FPR=1e-04" in out and "single-gallery-shot x2" in out and "single-shot top-1" in out
    for bad, needle in ((["--rerank-impl", "sparse"], "--rerank-impl sparse needs --rerank"),
                        (["--single-gallery-shot", "-1"], "--single-gallery-shot")):
        assert main(["eval", "--features", str(feats), *bad]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1


def test_eval_without_valid_queries_or_negative_pairs_says_why(tmp_path, capsys):
    base = {"qf": np.eye(4, dtype=np.float32)[:2], "gf": np.eye(4, dtype=np.float32)[1:], "q_pids": np.array([0, 1]),
            "g_pids": np.array([0, 1, 1]), "q_camids": np.zeros(2, int), "g_camids": np.ones(3, int),
            "q_clothes": np.zeros(2, int), "g_clothes": np.zeros(3, int)}
    cases = [  # every match in the query's clothes: the cc rule removes them all
        (dict(base), ["--protocol", "cc"], "cc protocol: none of the 2 queries has a valid match: the cc rule removes"),
        (dict(base, g_pids=np.array([5, 6, 7])), [], "no gallery image shares a query's person id"),
        (dict(base, g_pids=np.array([0, 0, 0]), q_pids=np.array([0, 0])), ["--roc"],
         "option --roc: features file"),
    ]
    for arrays, options, needle in cases:
        path = tmp_path / "f.npz"
        np.savez(path, **arrays)
        capsys.readouterr()
        assert main(["eval", "--features", str(path), *options]) == 2
        err = capsys.readouterr().err
        assert needle in err.replace("\n", "") and "Traceback" not in err, err


def test_test_and_train_evaluation_without_valid_queries_names_the_protocol():
    from torch import nn

    from ccreid.config import TestConfig as EvalOptions
    from ccreid.data.records import EvalSplit, ImageRecord
    from ccreid.errors import CCReIDError
    from ccreid.inference.evaluator import evaluate_splits

    query = [ImageRecord(f"q{i}.png", i, 0, 0) for i in range(2)]
    gallery = [ImageRecord(f"g{i}.png", i % 2, 1, 0) for i in range(4)]  # all in the queries' clothes

    def make_loader(records):
        return [{"image": torch.randn(len(records), 3, 4, 2), "camid": torch.zeros(len(records), dtype=torch.long)}]

    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 5))
    with pytest.raises(CCReIDError, match=r"protocol 'cc' \(cc rule\): none of the 2 queries has a valid match: the "
                                          r"cc rule removes .*test.protocols="):
        evaluate_splits(model, {"cc": EvalSplit(query, gallery, "cc")}, make_loader, torch.device("cpu"),
                        EvalOptions())
