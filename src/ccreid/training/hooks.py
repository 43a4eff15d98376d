"""The trainer's state and the hook interface (after fast-reid's ``HookBase``).

A hook is told of the training's events, in this order (``hooks`` in the order registered)::

    hook.before_train()
    while state.epoch < train.epochs:
        hook.before_epoch()            # state.epoch: the epoch starting (0-based); state.batch > 0 when resumed mid-epoch
        for batch in the epoch's batches:
            hook.before_step()
            trainer.terms = step(batch)
            hook.after_step()          # state.iteration, state.batch: counted this step
        hook.after_epoch()             # state.epoch: epochs done (1-based); state.batch back to 0
    hook.after_train()

``hook.trainer`` is the :class:`~ccreid.engine.loop.Trainer` (a weak proxy), set when the
hook is registered. What :meth:`HookBase.state_dict` returns is saved in every resumable
checkpoint and given back to :meth:`HookBase.load_state_dict` by ``--resume`` before
``before_train``, so a hook with state resumes bit-identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Optional, Tuple

import torch

if TYPE_CHECKING:
    from ccreid.engine.loop import Trainer

@dataclass
class TrainState:
    """Where a run stands; every field is saved in resumable checkpoints."""

    epoch: int = 0  # whole epochs done
    batch: int = 0  # batches done in the current epoch
    iteration: int = 0  # steps done
    processed: int = 0  # training images seen (after batch transforms, all processes)
    seconds: float = 0.0  # training time up to the last checkpoint
    best_score: float = float("-inf")  # train.select_on=val: the best validation score so far
    best_state: Optional[Dict[str, torch.Tensor]] = None  # ... and the model's state dict then
    val_results: Dict[str, Any] = field(default_factory=dict)  # ... and its results (with "epoch")

    #: the fields a resumable checkpoint must hold (``batch`` is missing from older ones: 0)
    REQUIRED: ClassVar[Tuple[str, ...]] = ("epoch", "iteration", "processed", "seconds", "best_score", "best_state",
                                           "val_results")

    def state_dict(self) -> Dict[str, Any]:
        """The fields by name (not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "TrainState":
        """From a checkpoint's state (fields it lacks keep their defaults)."""
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})


class HookBase:
    """A part of the training run told of its events; override only the events you need.

    ``name`` keys the hook's saved state: hooks with state need distinct names.
    """

    trainer: "Trainer"

    @property
    def name(self) -> str:
        return type(self).__name__

    def before_train(self) -> None:
        """Before the first step (after any ``--resume`` restored the run)."""

    def before_epoch(self) -> None:
        """Before each epoch's first batch is drawn (also the resumed epoch of a mid-epoch resume)."""

    def before_step(self) -> None:
        """Before each optimisation step."""

    def after_step(self) -> None:
        """After each optimisation step (``trainer.terms``: its logged terms)."""

    def after_epoch(self) -> None:
        """After each epoch (schedules, validation, checkpoints)."""

    def after_train(self) -> None:
        """After the last epoch, before the final weights are saved and tested."""

    def state_dict(self) -> Dict[str, Any]:
        """State for resumable checkpoints (tensors and plain values); empty: none."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
