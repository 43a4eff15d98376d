"""Checkpoints survive a SIGKILL: a resumed run ends exactly as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from ccreid.cli import main
from ccreid.runs.checkpoint import load_weights
from ccreid.runs.resume import latest_checkpoint
from tiny_run import TINY as BASE

TINY = [*BASE, "data.synthetic.ids=16", "model.preset=ours", "train.epochs=4", "train.milestones=[3]",
        "train.checkpoint_every=1"]


def train_args(out, data):
    return ["train", "-c", "synthetic", "--out", str(out), "--quiet", f"data.root={data}", *TINY]


def kill_once(victim, args, reached: str) -> None:
    """Start ``ccreid train`` in a subprocess and SIGKILL it once its newest checkpoint's
    name sorts at or after ``reached``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ccreid", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while latest_checkpoint(victim) is None or latest_checkpoint(victim).name < reached:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (victim / "model.safetensors").exists()


def assert_same_run(full, resumed) -> None:
    """Bit-identical final weights and identical per-iteration losses."""
    full_w, resumed_w = (load_weights(run / "model.safetensors").state_dict for run in (full, resumed))
    for key, value in full_w.items():
        assert torch.equal(value, resumed_w[key]), key
    log = lambda run: [json.loads(x).get("loss") for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert log(full) == log(resumed)


@pytest.fixture
def data(tiny_data):
    """The synthetic dataset of ``train_args`` (rendered once a session; the runs only read it)."""
    return tiny_data("data.synthetic.ids=16")


def assert_kill_and_resume_equals_full(tmp_path, data, extra, reached: str):
    """Train ``extra`` on ``data`` once through and once killed (at checkpoint ``reached``) then resumed:
    the same run. Returns the two run folders (full, killed)."""
    full, victim = tmp_path / "full", tmp_path / "killed"
    rendered = (data / "meta.json").is_file()
    if not rendered:  # the full run renders the data first
        assert main(train_args(full, data) + extra) == 0
    with ThreadPoolExecutor(1) as pool:  # the run to kill in its process while this one trains the full run
        killed = pool.submit(kill_once, victim, train_args(victim, data) + extra, reached)
        if rendered:
            assert main(train_args(full, data) + extra) == 0
        killed.result()
    if reached.endswith("-iter"):  # the kill came after a mid-epoch checkpoint
        assert "-iter-" in latest_checkpoint(victim).name
    assert main(train_args(victim, data) + extra + ["--resume"]) == 0
    assert_same_run(full, victim)
    return full, victim


@pytest.mark.timeout(300)
@pytest.mark.parametrize("preset", ["ours", "cal", "ours+cal"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, data, preset):
    """Every method: CAL's classifier and its optimizer resume too (active from epoch 2)."""
    method = [f"model.preset={preset}", "loss.cal.start_epoch=1"]
    _, victim = assert_kill_and_resume_equals_full(tmp_path, data, method, "epoch-0002")
    res = lambda run: json.loads((tmp_path / run / "results.json").read_text())["presets"][preset]
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
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, data, workers):
    """Checkpoints every 2 iterations (3 batches per epoch): the kill lands after a mid-epoch
    one, and the resumed run replays that epoch's data up to it (workers included)."""
    extra = ["train.checkpoint_every=0", "train.checkpoint_every_iters=2", f"data.workers={workers}"]
    assert_kill_and_resume_equals_full(tmp_path, data, extra, "epoch-0001-iter")  # resumed from a mid-epoch checkpoint
