"""The training loop (after fast-reid's ``TrainerBase``): epochs of the method's step, everything else
a hook (:mod:`ccreid.training.hooks`); exact resume from a checkpoint, mid-epoch too."""

from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from ccreid.config import Config
from ccreid.data.manager import DataManager
from ccreid.engine.training import Training
from ccreid.errors import CCReIDError
from ccreid.runs.checkpoint import WEIGHTS_NAME, restore_weights
from ccreid.runs.outputs import training_run_in
from ccreid.runs.resume import latest_checkpoint, load_checkpoint, same_config, set_rng_state
from ccreid.runs.runlog import RunLog
from ccreid.runtime.distributed import DistInfo
from ccreid.training.hooks import HookBase, TrainState
from ccreid.training.step import TrainStep, check_finite


class Trainer:
    """The training loop: epochs of the method's step; everything else is a hook (:mod:`ccreid.training.hooks`).

    Hooks read and change the run through it: :attr:`state` (a :class:`TrainState`), :attr:`training` (method,
    model, optimizers), :attr:`manager` (data), :attr:`log` (records), :attr:`terms` (the last step's terms).
    """

    def __init__(self, cfg: Config, out: Path, info: DistInfo, training: Training, manager: DataManager,
                 config_yaml: str, progress: bool) -> None:
        self.cfg, self.out, self.info, self.training, self.manager = cfg, out, info, training, manager
        self.config_yaml, self.progress = config_yaml, progress
        self.state = TrainState()
        self.hooks: List[HookBase] = []
        self.terms: Dict[str, float] = {}
        self.saved_rng: Optional[dict] = None  # this rank's random state of a resumed checkpoint, until its replay
        self.started = 0.0  # perf_counter() at the run's start (resumed: as if it had not stopped)
        self.step: Optional[TrainStep] = None  # made by train(), after any resume
        self.log: Optional[RunLog] = None  # given to train()

    @property
    def batches_per_epoch(self) -> int:
        return len(self.manager.train_loader)

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        """Append ``hooks`` (called in list order); each gets ``hook.trainer``."""
        for hook in hooks:
            hook.trainer = weakref.proxy(self)
        self.hooks.extend(hooks)
        names = [hook.name for hook in self.hooks]
        if len(set(names)) != len(names):
            raise ValueError(f"training hooks need distinct names: {names}")

    def train(self, log: RunLog) -> None:
        """The remaining epochs of the run, writing records to ``log``."""
        state, self.log = self.state, log
        self.started = time.perf_counter() - state.seconds
        with log:
            self.step = self.training.start(self.info)
            self._call("before_train")
            while state.epoch < self.cfg.train.epochs:
                self._call("before_epoch")
                for batch in self._batches():
                    self._call("before_step")
                    self._step(batch)
                    self._call("after_step")
                state.batch = 0
                self.info.broadcast_buffers(self.training.model)  # rank 0's BatchNorm statistics for evaluation
                state.epoch += 1
                self._call("after_epoch")
            self._call("after_train")

    def _call(self, event: str) -> None:
        for hook in self.hooks:
            getattr(hook, event)()

    def _batches(self) -> Iterator[Dict[str, torch.Tensor]]:
        """The epoch's batches; resumed mid-epoch, those already trained on are drawn and dropped, then
        the checkpoint's random state is restored (the replay draws from the same generators)."""
        self.step.net.train()
        self.manager.set_epoch(self.state.epoch)
        batches = iter(self.manager.train_loader)
        for _ in range(self.state.batch):
            next(batches)
        if self.saved_rng is not None:
            set_rng_state(self.saved_rng, self.training.generator)
            self.saved_rng = None
        return batches

    def _step(self, batch: Dict[str, torch.Tensor]) -> None:
        """One optimisation step; its terms (summed or averaged over processes) go to :attr:`terms`."""
        terms = self.info.reduce_terms(self.step(batch), summed=("images", "num_erased", "num_without_map"))
        self.state.iteration += 1
        self.state.batch += 1
        check_finite(terms, self.state.epoch + 1, self.state.iteration, self.out)
        self.state.processed += terms.pop("images")
        self.terms = terms

    def elapsed(self) -> float:
        """Training seconds so far (resumed runs: since the run started)."""
        return time.perf_counter() - self.started

    def images_per_second(self) -> float:
        return self.state.processed / self.elapsed()

    def state_dict(self) -> Dict[str, Any]:
        """Everything a resumable checkpoint holds beyond the weights and random states."""
        hooks = {hook.name: hook.state_dict() for hook in self.hooks}
        return self.state.state_dict() | self.training.state_dict() | {"hooks": {k: v for k, v in hooks.items() if v}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (checkpoints from before hooks had state: none)."""
        self.state = TrainState.from_state(state)
        self.training.load_state_dict(state)
        saved = state.get("hooks", {})
        for hook in self.hooks:
            if hook.name in saved:
                hook.load_state_dict(saved[hook.name])

    def resume(self) -> None:
        """Load the newest checkpoint of the run folder (before :meth:`train`); its random states are
        restored by the first epoch, after the replay."""
        folder = latest_checkpoint(self.out)
        if folder is None:
            todo = ("train it again with --overwrite (without --resume)" if training_run_in(self.out)
                    else "train without --resume to start")
            raise CCReIDError(f"--resume: no checkpoint in {self.out / 'checkpoints'}; {todo}")
        same_config(self.out, self.config_yaml)
        required = ("optimizers", "schedulers", "scaler", "method", "rng", *TrainState.REQUIRED)
        weights, state = load_checkpoint(folder, required=required)
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # one per rank (older: a dict)
        if len(rngs) != self.info.world_size:
            raise CCReIDError(f"--resume: {folder} was written by {len(rngs)} process(es), this run has "
                              f"{self.info.world_size}; resume with the same torchrun --nnodes x --nproc_per_node")
        restore_weights(self.training.model, weights, folder / WEIGHTS_NAME)
        self.load_state_dict(state)
        self.saved_rng = rngs[self.info.rank]
