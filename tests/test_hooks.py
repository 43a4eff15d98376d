"""Trainer hooks: the order of their calls, and a plug-in hook with state that resumes bit-identically."""

from __future__ import annotations

import textwrap

import pytest

from ccreid.cli import main
from ccreid.config import load_config
from ccreid.engine.hooks import HookBase
from ccreid.engine.trainer import train
from ccreid.methods import Method
from test_resume import assert_same_run, kill_once, train_args
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


#: a plug-in whose hook changes training through its state: the main lr is scaled by 1, 1.5 or 2 by the
#: number of steps it has seen, so a resume that lost the count would train other weights
WOBBLE = '''
from ccreid.engine.hooks import HookBase
from ccreid.methods import Method, register_preset
from ccreid.models.presets import PRESETS


class LRWobble(HookBase):
    def __init__(self):
        self.steps = 0

    def before_step(self):
        group = self.trainer.training.main_optimizer.param_groups[0]
        self.scheduled = group["lr"]
        group["lr"] = self.scheduled * (1 + 0.5 * (self.steps % 3))

    def after_step(self):
        self.trainer.training.main_optimizer.param_groups[0]["lr"] = self.scheduled
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class WobbleMethod(Method):
    def hooks(self):
        return super().hooks() + [LRWobble()]


register_preset("wobble", WobbleMethod, PRESETS["baseline"])
'''


@pytest.mark.timeout(300)
def test_plugin_hook_state_resumes_bit_identically_mid_epoch(tmp_path):
    plugin = tmp_path / "wobble.py"
    plugin.write_text(textwrap.dedent(WOBBLE))
    data = tmp_path / "synthetic"
    extra = [f"plugins=[{plugin}]", "model.preset=wobble", "train.checkpoint_every=0",
             "train.checkpoint_every_iters=2"]
    assert main(train_args(tmp_path / "full", data) + extra) == 0
    victim = tmp_path / "killed"
    kill_once(victim, train_args(victim, data) + extra, "epoch-0001-iter")  # 4 steps: 4 % 3 != 0
    assert main(train_args(victim, data) + extra + ["--resume"]) == 0
    assert_same_run(tmp_path / "full", victim)
