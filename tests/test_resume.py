"""Checkpoints survive a SIGKILL: a resumed run ends exactly as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ccreid.cli import main
from ccreid.engine.checkpoint import load_weights
from ccreid.engine.resume import latest_checkpoint
from tiny_run import TINY as BASE

TINY = [*BASE, "data.synthetic.ids=16", "model.preset=ours", "train.epochs=4", "train.milestones=[3]",
        "train.checkpoint_every=1"]


def train_args(out, data):
    return ["train", "-c", "synthetic", "--out", str(out), "--quiet", f"data.root={data}", *TINY]


@pytest.mark.timeout(300)
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    data = tmp_path / "synthetic"
    assert main(train_args(tmp_path / "full", data)) == 0
    victim = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ccreid", *train_args(victim, data)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while latest_checkpoint(victim) is None or latest_checkpoint(victim).name < "epoch-0002":
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (victim / "model.safetensors").exists()
    assert main(train_args(victim, data) + ["--resume"]) == 0
    full = load_weights(tmp_path / "full" / "model.safetensors").state_dict
    resumed = load_weights(victim / "model.safetensors").state_dict
    for key, value in full.items():
        assert torch.equal(value, resumed[key]), key
    log = lambda run: [json.loads(x)["loss"] for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    assert log("full") == log("killed")
    res = lambda run: json.loads((tmp_path / run / "results.json").read_text())["presets"]["ours"]
    assert res("full") == res("killed")
    assert len(list((victim / "checkpoints").glob("epoch-*"))) <= 2


def test_existing_run_is_never_overwritten_and_resume_needs_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"precious")
    assert main(train_args(out, tmp_path / "synthetic")) == 2
    assert (out / "model.safetensors").read_bytes() == b"precious"
    assert main(train_args(tmp_path / "empty", tmp_path / "synthetic") + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "no checkpoint" in err


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [0, 1])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, workers):
    """Checkpoints every 2 iterations (3 batches per epoch): the kill lands after a mid-epoch
    one, and the resumed run replays that epoch's data up to it (workers included)."""
    data = tmp_path / "synthetic"
    extra = ["train.checkpoint_every=0", "train.checkpoint_every_iters=2", f"data.workers={workers}"]
    assert main(train_args(tmp_path / "full", data) + extra) == 0
    victim = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ccreid", *train_args(victim, data), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while latest_checkpoint(victim) is None or latest_checkpoint(victim).name < "epoch-0001-iter":
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "-iter-" in latest_checkpoint(victim).name
    assert main(train_args(victim, data) + extra + ["--resume"]) == 0
    full = load_weights(tmp_path / "full" / "model.safetensors").state_dict
    resumed = load_weights(victim / "model.safetensors").state_dict
    for key, value in full.items():
        assert torch.equal(value, resumed[key]), key
    log = lambda run: [json.loads(x).get("loss") for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    assert log("full") == log("killed")
