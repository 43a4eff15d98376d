"""report.html for train, test and demo folders (rendered in Chromium by test_report_browser.py)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ccreid.commands import tester
from ccreid.errors import CCReIDError
from ccreid.viz import write_report
from test_viz_common import make_checkpoint, make_demo_run, make_train_run, write_dataset

pytest.importorskip("matplotlib", reason="the report's plots need the optional extra: pip install 'ccreid[viz]'")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    manifest = write_dataset(root / "data")
    return make_train_run(root / "train", manifest, "ours"), make_demo_run(root / "demo", manifest)


def referenced_images(html: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html.read_text())


def test_train_folder_report(folders):
    train, _ = folders
    written = write_report(train, device="cpu")
    report = written[0]
    assert report == train / "report.html" and not list(train.glob(".*.tmp"))
    names = {p.name for p in written[1:]}
    assert {"training.png", "cmc.png", "actmap.png", "attention_ours.png", "ranks_ours_cc.png"} <= names
    text = report.read_text()
    srcs = referenced_images(report)
    assert sorted(srcs) == sorted(f"report_files/{n}" for n in names)
    for src in srcs:  # relative, existing, decodable
        assert not src.startswith(("/", "file:", "http")) and Image.open(train / src).size[0] > 10
    results = json.loads((train / "results.json").read_text())["presets"]["ours"]
    assert f"<td>{results['cc']['rank1']:.1f}</td>" in text and f"<td>{results['general']['mAP']:.1f}</td>" in text
    assert "model:" in text and "preset: ours" in text  # the config
    assert "report_s" in text and "eval_s" in text and "torch" in text  # time taken and machine


def test_test_folder_report_uses_the_weights_it_names(folders, tmp_path):
    train, _ = folders
    tester.test_checkpoint(train, tmp_path / "test")  # the folder form of --weights
    written = write_report(tmp_path / "test", device="cpu", num_queries=1, k=2)
    names = [p.name for p in written[1:]]
    assert "training.png" not in names and {"cmc.png", "actmap.png", "ranks_ours_cc.png"} <= set(names)


def test_demo_folder_report(folders):
    _, demo = folders
    written = write_report(demo, device="cpu", num_queries=2, k=4)
    names = {p.name for p in written[1:]}
    assert {f"ranks_{p}_{r}.png" for p in ("baseline", "ours") for r in ("general", "sc", "cc")} <= names
    assert "attention_ours.png" in names and "attention_baseline.png" not in names
    actmap = Image.open(demo / "report_files" / "actmap.png")
    assert actmap.size[0] > 3 * 32  # image + baseline + ours columns
    report = written[0]
    assert "baseline" in report.read_text() and "ours" in report.read_text()


def test_notes_replace_missing_parts(folders, tmp_path):
    train, _ = folders
    copy = tmp_path / "run"
    shutil.copytree(train, copy, ignore=shutil.ignore_patterns("report*"))
    make_checkpoint(copy / "model.safetensors", tmp_path / "moved" / "manifest.csv", "ours")  # dataset gone
    written = write_report(copy)
    text = written[0].read_text()
    assert "sample pictures skipped: custom: no manifest" in text and "moved" in text
    assert [p.name for p in written[1:]] == ["training.png"] and "<td>ours</td>" in text
    (copy / "results.json").write_text("{broken")
    with pytest.raises(CCReIDError, match="results.json"):
        write_report(copy)


@pytest.mark.parametrize("content", ["[1, 2]", '{"presets": {"x": 5}}', "{not json"])
def test_malformed_results_are_one_line(tmp_path, capsys, content):
    from ccreid.cli import main

    (tmp_path / "results.json").write_text(content)
    assert main(["report", str(tmp_path), "--no-samples"]) == 2
    err = capsys.readouterr().err
    assert "results file" in err and "damaged" in err and "Traceback" not in err


def test_report_reuses_the_final_test_features_unless_stale(tmp_path, monkeypatch):
    """A training run keeps its final test features; the report ranks with them instead of
    extracting again, and extracts when they are older than the weights or made without flip."""
    import os

    from ccreid.cli import main
    from ccreid.runs.features_io import TEST_FEATURES_NAME, load_test_features
    from ccreid.viz import ranks
    from tiny_run import TINY

    run = tmp_path / "run"
    assert main(["train", "-c", "synthetic", "--out", str(run), "--quiet", "--no-report",
                 f"data.root={tmp_path / 'data'}", *TINY, "data.synthetic.ids=16"]) == 0
    weights = run / "model.safetensors"
    kept = load_test_features(run / TEST_FEATURES_NAME, weights, flip=True)
    assert kept is not None and load_test_features(run / TEST_FEATURES_NAME, weights, flip=False) is None
    extracted = []
    real = ranks.extract_features
    monkeypatch.setattr(ranks, "extract_features", lambda *a, **k: extracted.append(1) or real(*a, **k))
    write_report(run, device="cpu", num_queries=1, k=2)
    assert extracted == [] and (run / "report_files" / "ranks_baseline_cc.png").is_file()
    later = (run / TEST_FEATURES_NAME).stat().st_mtime + 5
    os.utime(weights, (later, later))  # weights newer than the kept features: extract again
    assert load_test_features(run / TEST_FEATURES_NAME, weights, flip=True) is None
    write_report(run, device="cpu", num_queries=1, k=2)
    assert extracted == [1]


def test_missing_parts_are_warned_one_line_each(folders, tmp_path, capsys, monkeypatch):
    from ccreid.cli import main

    train, _ = folders

    def copy(name: str, *leave_out: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(train, folder, ignore=shutil.ignore_patterns("report*", *leave_out))
        results = json.loads((folder / "results.json").read_text())  # no path to the original weights
        (folder / "results.json").write_text(json.dumps({k: v for k, v in results.items() if k != "weights"}))
        return folder

    def warnings(*args: str) -> str:
        capsys.readouterr()
        assert main(["report", *args]) == 0
        return " ".join(capsys.readouterr().err.split())  # the log handler wraps at the terminal width

    assert "training curves and pictures skipped: no run in" in warnings(str(copy("bare", "metrics.jsonl",
                                                                                   "model.safetensors")))
    err = warnings(str(copy("no_weights", "model.safetensors")))
    assert "CMC curves, ranked lists and activation maps of ours skipped: no model.safetensors found" in err
    err = warnings(str(copy("no_log", "metrics.jsonl")), "--no-samples")
    assert "training curves of ours skipped: no training log (metrics.jsonl) in its folder" in err
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # matplotlib not installed
    err = warnings(str(copy("no_matplotlib")), "--no-samples")
    assert "training curves skipped: plots need matplotlib" in err and "Traceback" not in err
