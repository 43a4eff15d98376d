"""One tiny train + test run through the CLI, on a tiny synthetic dataset."""

import importlib.util
import json
import math

import pytest

from ccreid.cli import main
from tiny_run import TINY as BASE

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
TINY = [*BASE, "train.epochs=2"]


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    out = base / "run"
    args = ["train", "-c", "synthetic", "--out", str(out), "--quiet", f"data.root={tiny_data()}",
            "model.preset=ours", *TINY]
    assert main(args) == 0
    return base, out


def test_train_writes_outputs_and_results(trained):
    _, out = trained
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "state.pt", "results.json", "results.md"):
        assert (out / name).is_file(), name
    assert (out / "report.html").is_file() == HAVE_MATPLOTLIB
    results = json.loads((out / "results.json").read_text())
    protocols = results["presets"]["ours"]
    assert set(protocols) == {"general", "sc", "cc"}
    for metrics in protocols.values():
        assert set(metrics) >= {"rank1", "rank5", "rank10", "mAP", "queries", "queries_without_match"}
        assert 0.0 <= metrics["rank1"] <= metrics["rank5"] <= metrics["rank10"] <= 100.0
        assert metrics["queries"] > 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "iter" in x]
    assert steps and {"loss", "ce_orig", "tri", "bctri", "bsga", "num_erased"} <= set(steps[0])


def test_test_command_reproduces_training_evaluation(trained):
    base, out = trained
    test_out = base / "test"
    assert main(["test", "--weights", str(out / "model.safetensors"), "--out", str(test_out), "--quiet"]) == 0
    assert (test_out / "report.html").is_file() == HAVE_MATPLOTLIB
    trained_res = json.loads((out / "results.json").read_text())["presets"]["ours"]
    tested_res = json.loads((test_out / "results.json").read_text())["presets"]["ours"]
    for name, metrics in trained_res.items():
        assert tested_res[name]["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)


def test_bad_inputs_are_one_line_errors(trained, tmp_path, capsys):
    base, _ = trained
    assert main(["train", "-c", "synthetic", "--out", str(tmp_path / "x"), "train.epochz=1"]) == 2
    assert main(["test", "--weights", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)]) == 2
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a checkpoint")
    assert main(["test", "--weights", str(damaged), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "train.epochz" in err and "missing.safetensors" in err and "damaged" in err
    assert "Traceback" not in err


def test_bf16_autocast_training_on_cpu(tmp_path):
    out = tmp_path / "bf16"
    args = ["train", "-c", "synthetic", "--out", str(out), "--quiet", f"data.root={tmp_path / 'synthetic'}",
            "model.preset=ours", *TINY, "train.amp=bf16", "train.epochs=1"]
    assert main(args) == 0
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(s["loss"]) for s in steps)
    fp16 = ["train", "-c", "synthetic", "--out", str(tmp_path / "fp16"), f"data.root={tmp_path / 'synthetic'}",
            *TINY, "train.amp=fp16"]
    assert main(fp16) == 2  # fp16 autocast is refused on CPU with a one-line message
    assert not (tmp_path / "fp16").exists()


def test_nan_loss_stops_naming_iteration_and_terms(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "-c", "synthetic", "--out", str(out), "--quiet", "--no-report",
            f"data.root={tmp_path / 'synthetic'}", *TINY, "train.lr=1e30", "train.warmup_epochs=0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "iteration 2 (epoch 1): loss became nan" in err and "terms: " in err and "Traceback" not in err
    assert not (out / "model.safetensors").exists()


def test_nan_after_an_epoch_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from ccreid.config import load_config
    from ccreid.data.manager import DataManager
    from ccreid.engine.trainer import train
    from ccreid.errors import CCReIDError
    from ccreid.runs.resume import load_checkpoint
    from ccreid.training import step

    cfg = load_config("synthetic", [f"data.root={tmp_path / 'synthetic'}", *TINY, "train.epochs=3"])
    per_epoch = len(DataManager(cfg, need_parsing=False).train_loader)
    calls, original = [], step.TrainStep.__call__

    def poisoned(self, batch):
        calls.append(1)
        terms = original(self, batch)
        return terms | ({"loss": math.nan, "tri": math.inf} if len(calls) == per_epoch + 2 else {})

    monkeypatch.setattr(step.TrainStep, "__call__", poisoned)
    with pytest.raises(CCReIDError, match=f"iteration {per_epoch + 2} \\(epoch 2\\).*terms: tri.*epoch-0001"):
        train(cfg, tmp_path / "run")
    weights, state = load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch-0001")
    assert state["epoch"] == 1 and all(bool(v.isfinite().all()) for v in weights.values() if v.is_floating_point())
