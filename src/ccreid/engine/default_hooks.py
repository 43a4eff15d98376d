"""The hooks every training run has (:func:`default_hooks`), in the order they are called:
LR schedules, validation and model selection, logging, the progress bar, checkpoints."""

from __future__ import annotations

import logging
from typing import Dict, List

import torch
from tqdm import tqdm

from ccreid.data.records import EvalSplit
from ccreid.inference.evaluator import evaluate_splits
from ccreid.runs.checkpoint import STATE_NAME, WEIGHTS_NAME, save_state, save_weights
from ccreid.runs.results import strip_curves
from ccreid.runs.resume import rng_state, save_checkpoint
from ccreid.training.hooks import HookBase
from ccreid.plugins import plugin_modules

logger = logging.getLogger(__name__)

#: what the final ``state.pt`` keeps of the :class:`~ccreid.training.hooks.TrainState`
FINAL_STATE = ("epoch", "iteration", "processed", "seconds", "val_results")


def selection_score(results: Dict[str, dict]) -> float:
    """Validation score used by ``train.select_on=val``: CC top-1 + mAP where defined."""
    name = "cc" if "cc" in results else next(iter(results))
    return results[name]["rank1"] + results[name]["mAP"]


class LRSchedule(HookBase):
    """After each epoch every per-epoch schedule advances."""

    def after_epoch(self) -> None:
        for _, scheduler in self.trainer.training.optimizers.values():
            if scheduler is not None:
                scheduler.step()


class Validation(HookBase):
    """``train.select_on=val``: the validation splits every ``train.eval_every`` epochs and after the
    last; the best weights (:func:`selection_score`) are kept and restored after training."""

    def __init__(self, splits: Dict[str, EvalSplit]) -> None:
        self.splits = splits

    def after_epoch(self) -> None:
        t = self.trainer
        state, train = t.state, t.cfg.train
        due = train.eval_every > 0 and state.epoch % train.eval_every == 0
        if not (due or state.epoch == train.epochs):
            return
        model = t.training.model
        results = evaluate_splits(model, self.splits, t.manager.loader, t.info.device, t.cfg.test, progress=t.progress)
        t.log.validation(state.epoch, state.iteration, strip_curves(results))
        score = selection_score(results)
        if score > state.best_score:
            state.best_score, state.val_results = score, results | {"epoch": state.epoch}
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def after_train(self) -> None:
        if self.trainer.state.best_state is not None:
            self.trainer.training.model.load_state_dict(self.trainer.state.best_state)


class Logging(HookBase):
    """Each step's record (``metrics.jsonl``, ``on_log``, TensorBoard: :class:`~ccreid.runs.runlog.RunLog`);
    after the first epoch, the warning of parsing labels outside the label set."""

    def before_train(self) -> None:
        self.first_epoch = self.trainer.state.epoch

    def after_step(self) -> None:
        t = self.trainer
        lr = t.training.main_optimizer.param_groups[0]["lr"]
        record = {"epoch": t.state.epoch + 1, "iter": t.state.iteration, "lr": lr,
                  "images_per_s": round(t.images_per_second(), 2)} | t.terms
        device = t.info.device
        if device.type == "cuda":
            record["gpu_mem_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        t.log.step(record)

    def after_epoch(self) -> None:
        t = self.trainer
        note = t.manager.foreign_labels_note() if t.state.epoch == self.first_epoch + 1 and t.info.is_main else None
        if note:
            logger.warning(note)
        t.log.flush()


class Progress(HookBase):
    """The progress bar of each epoch (``progress``, rank 0)."""

    def before_epoch(self) -> None:
        t = self.trainer
        self.bar = tqdm(desc=f"epoch {t.state.epoch + 1}/{t.cfg.train.epochs}", total=t.batches_per_epoch,
                        initial=t.state.batch, disable=not (t.progress and t.info.is_main), leave=False, unit="batch")

    def after_step(self) -> None:
        self.bar.update()
        self.bar.set_postfix(loss=f"{self.trainer.terms['loss']:.3f}", img_s=f"{self.trainer.images_per_second():.0f}")

    def after_epoch(self) -> None:
        self.bar.close()


class Checkpointer(HookBase):
    """Resumable checkpoints every ``train.checkpoint_every_iters`` steps (not at an epoch's end) and every
    ``train.checkpoint_every`` epochs (not the last); after training, the final weights and state."""

    def after_step(self) -> None:
        t = self.trainer
        every = t.cfg.train.checkpoint_every_iters
        if every > 0 and t.state.iteration % every == 0 and t.state.batch < t.batches_per_epoch:
            self.save()

    def after_epoch(self) -> None:
        t = self.trainer
        every = t.cfg.train.checkpoint_every
        if every > 0 and t.state.epoch % every == 0 and t.state.epoch < t.cfg.train.epochs:
            self.save()

    def after_train(self) -> None:
        t = self.trainer
        t.state.seconds = t.elapsed()
        if t.info.is_main:
            save_weights(t.out / WEIGHTS_NAME, t.training.model, t.config_yaml, t.manager.num_train_pids,
                         preset=t.cfg.model.preset, plugin_modules=plugin_modules(t.cfg.plugins))
            state = t.state.state_dict()
            save_state(t.out / STATE_NAME, {k: state[k] for k in FINAL_STATE} | t.training.state_dict())
        t.info.barrier()

    def save(self) -> None:
        """A resumable checkpoint of the whole run (all ranks take part, rank 0 writes)."""
        t = self.trainer
        t.log.flush()
        t.state.seconds = t.elapsed()
        rngs = t.info.all_gather_object(rng_state(t.training.generator))
        if t.info.is_main:
            save_checkpoint(t.out, t.state.epoch, t.training.model, t.config_yaml, t.manager.num_train_pids,
                            t.state_dict() | {"rng": rngs}, t.cfg.train.keep_checkpoints)
        t.info.barrier()


def default_hooks(val_splits: Dict[str, EvalSplit]) -> List[HookBase]:
    """The hooks of every run (:class:`Validation` only with validation splits), in calling order."""
    validation = [Validation(val_splits)] if val_splits else []
    return [LRSchedule(), *validation, Logging(), Progress(), Checkpointer()]
