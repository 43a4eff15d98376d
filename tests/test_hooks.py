"""Trainer hooks: the order of their calls, and a plug-in hook with state that resumes bit-identically
(kill -9 mid-epoch; torchrun)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from ccreid.config import load_config
from ccreid.engine.trainer import train
from ccreid.methods import Method
from ccreid.runs.checkpoint import load_weights
from ccreid.runs.resume import latest_checkpoint
from ccreid.training.hooks import HookBase
from test_distributed import _torchrun
from test_resume import assert_kill_and_resume_equals_full, data  # noqa: F401  (data: a fixture)
from tiny_run import TINY


class Recorder(HookBase):
    """Every event with the state's epoch, batch and iteration at that moment."""

    def __init__(self) -> None:
        self.events = []

    def _record(self, event: str) -> None:
        state = self.trainer.state
        self.events.append((event, state.epoch, state.batch, state.iteration))

    def before_train(self): self._record("before_train")
    def before_epoch(self): self._record("before_epoch")
    def before_step(self): self._record("before_step")
    def after_step(self): self._record("after_step")
    def after_epoch(self): self._record("after_epoch")
    def after_train(self): self._record("after_train")


def test_hooks_are_called_in_order_with_the_state_of_each_moment(tmp_path, monkeypatch):
    recorder = Recorder()
    base_hooks = Method.hooks
    monkeypatch.setattr(Method, "hooks", lambda self: base_hooks(self) + [recorder])
    cfg = load_config("synthetic", [f"data.root={tmp_path / 'data'}", *TINY, "data.synthetic.ids=16",
                                    "train.epochs=2"])
    train(cfg, tmp_path / "run")
    per_epoch = 3  # 8 training identities, 4 per batch, each identity's images drawn in groups of 4
    expected = [("before_train", 0, 0, 0)]
    for epoch in range(2):
        expected.append(("before_epoch", epoch, 0, epoch * per_epoch))
        for batch in range(per_epoch):
            iteration = epoch * per_epoch + batch
            expected += [("before_step", epoch, batch, iteration), ("after_step", epoch, batch + 1, iteration + 1)]
        expected.append(("after_epoch", epoch + 1, 0, (epoch + 1) * per_epoch))
    assert recorder.events == expected + [("after_train", 2, 0, 2 * per_epoch)]


def documented_plugin() -> str:
    """The plug-in of docs/EXTENDING.md (the code block after its ``tested`` marker)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "EXTENDING.md").read_text()
    block = text.split("<!-- tested: tests/test_hooks.py -->", 1)[1]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.timeout(300)
def test_documented_plugin_hook_resumes_bit_identically_mid_epoch(tmp_path, data):
    """docs/EXTENDING.md's weight EMA: its shadow weights are hook state, saved and restored."""
    plugin = tmp_path / "ema.py"
    plugin.write_text(documented_plugin())
    extra = [f"plugins=[{plugin}]", "model.preset=ema", "train.checkpoint_every=0", "train.checkpoint_every_iters=2"]
    assert_kill_and_resume_equals_full(tmp_path, data, extra, "epoch-0001-iter")


@pytest.mark.timeout(300)
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="no torch.distributed gloo backend")
def test_documented_plugin_hook_resumes_mid_epoch_under_torchrun(tmp_path):
    """Two processes, stopped after a mid-epoch checkpoint: each rank's RNG and the hook's state come back."""
    plugin = tmp_path / "ema.py"
    plugin.write_text(documented_plugin())
    out, data = tmp_path / "run", tmp_path / "synthetic"
    extra = [f"plugins=[{plugin}]", "model.preset=ema", "train.checkpoint_every_iters=2"]
    _torchrun(out, data, *extra)  # 3 steps an epoch: the last checkpoint is at step 4, one batch into epoch 2
    assert latest_checkpoint(out).name == "epoch-0001-iter-00000004"
    first = load_weights(out / "model.safetensors").state_dict
    losses = lambda: [json.loads(x).get("loss") for x in (out / "metrics.jsonl").read_text().splitlines()]
    before = losses()
    for name in ("model.safetensors", "state.pt", "results.json", "results.md", "report.html"):
        (out / name).unlink(missing_ok=True)
    _torchrun(out, data, *extra, "--resume")
    resumed = load_weights(out / "model.safetensors").state_dict
    for key, value in first.items():
        assert torch.equal(value, resumed[key]), key
    assert losses() == before
