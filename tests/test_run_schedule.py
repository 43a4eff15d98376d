"""What a run keeps and says about its schedule: ``train.keep_checkpoints`` and the warnings of a run
too short for its warm-up or for a method's start epoch."""

from __future__ import annotations

import pytest

import ccreid.engine.trainer as trainer
from ccreid.config import load_config
from tiny_run import TINY


@pytest.fixture
def warnings(monkeypatch):
    notes = []
    monkeypatch.setattr(trainer.logger, "warning", lambda message, *args: notes.append(message % args))
    return notes


def _train(data, tmp_path, name, *overrides):
    cfg = load_config("synthetic", [f"data.root={data}", *TINY, "model.preset=cal", *overrides])
    trainer.train(cfg, tmp_path / name)
    return sorted(p.name for p in (tmp_path / name / "checkpoints").glob("epoch-*"))


def test_a_run_ending_in_its_warmup_or_before_cal_starts_warns(tiny_data, tmp_path, warnings):
    _train(tiny_data(), tmp_path, "short", "train.warmup_epochs=3", "loss.cal.start_epoch=1")
    assert warnings == [
        "train.epochs=1 ends before the learning rate reaches train.lr at epoch 3 (train.warmup_epochs); "
        "raise train.epochs or lower train.warmup_epochs",
        "train.epochs=1 ends before the clothes-based adversarial loss starts at epoch 2 (loss.cal.start_epoch); "
        "raise train.epochs or lower loss.cal.start_epoch"]


def test_keep_checkpoints_keeps_the_last_n(tiny_data, tmp_path, warnings):
    three = ["train.epochs=3", "train.warmup_epochs=3", "loss.cal.start_epoch=2", "train.checkpoint_every=1"]
    data = tiny_data()
    assert _train(data, tmp_path, "default", *three) == ["epoch-0002"]  # the final epoch writes the weights instead
    assert warnings == []  # every gate is reached in the last epoch
    assert _train(data, tmp_path, "two", *three, "train.keep_checkpoints=2") == ["epoch-0001", "epoch-0002"]


def test_the_old_key_name_still_loads():
    assert load_config(None, ["train.keep_last=3"]).train.keep_checkpoints == 3  # configs saved by earlier runs
