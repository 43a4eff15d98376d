"""``train.tensorboard``: scalars of every loss term, lr, speed and validation metrics."""

import json
import sys

import pytest

from ccreid.config import load_config
from ccreid.engine.trainer import train
from ccreid.errors import CCReIDError
from tiny_run import TINY as BASE

TINY = [*BASE, "model.preset=ours"]


def test_scalars_are_written_to_the_run_folder(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config("synthetic", [f"data.root={tmp_path / 'synthetic'}", *TINY, "train.tensorboard=true",
                                    "train.select_on=val"])
    out = tmp_path / "run"
    train(cfg, out)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    terms = {"loss", "ce_orig", "ce_erased", "tri", "bctri", "bsga", "num_erased", "lr", "images_per_s"}
    assert {f"train/{t}" for t in terms} <= tags
    assert {"val/cc/rank1", "val/cc/mAP"} <= tags
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"iter"' in x]
    assert [e.step for e in events.Scalars("train/loss")] == [s["iter"] for s in steps]
    assert "gpu_mem_mib" not in steps[0]  # recorded on CUDA only


def test_missing_tensorboard_is_a_one_line_error_before_any_output(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    cfg = load_config("synthetic", [f"data.root={tmp_path / 'synthetic'}", *TINY, "train.tensorboard=true"])
    with pytest.raises(CCReIDError, match="train.tensorboard.*pip install tensorboard"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
