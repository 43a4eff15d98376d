"""One optimisation step (batch transforms, forward, objective, backward, update), and the NaN/inf guard."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn

from ccreid.errors import CCReIDError
from ccreid.runs.resume import latest_checkpoint
from ccreid.runtime.amp import autocast


@dataclass
class TrainBatch:
    """A training batch on the device, one row per image, as the batch transforms hand it on.

    A batch transform (:attr:`TrainStep.batch_transforms`) is a callable
    ``transform(batch, generator) -> TrainBatch``: it may change the images or append rows
    (:meth:`with_copies`: CRE's erased copies, PS's sampled copies); the transforms run in order.
    """

    images: torch.Tensor  # [B, 3, H, W], normalised; clips: [B, T, 3, H, W] (maps [B, T, H, W])
    pids: torch.Tensor
    clothes: torch.Tensor
    index: torch.Tensor  # each row's position in the training set
    has_parsing: torch.Tensor  # bool: the row has a parsing map
    is_copy: torch.Tensor  # bool: the row was appended by a batch transform
    parsing: Optional[torch.Tensor] = None  # [B, H, W] labels (-1: no map), when the step uses maps
    camids: Optional[torch.Tensor] = None  # when the network takes camera ids
    counts: Dict[str, int] = field(default_factory=dict)  # logged with the loss terms (a later transform's win)

    def with_copies(self, rows: torch.Tensor, images: torch.Tensor, clothes: Optional[torch.Tensor] = None,
                    **counts: int) -> "TrainBatch":
        """This batch followed by copies of ``rows`` showing ``images``: every label follows its row
        (``clothes`` may be given instead), ``is_copy`` marks them; ``counts`` join :attr:`counts`."""
        cat = lambda x, extra=None: None if x is None else torch.cat([x, x[rows] if extra is None else extra])
        return TrainBatch(images=torch.cat([self.images, images]), pids=cat(self.pids), clothes=cat(self.clothes, clothes),
                          index=cat(self.index), has_parsing=cat(self.has_parsing),
                          is_copy=cat(self.is_copy, torch.ones_like(rows, dtype=torch.bool)),
                          parsing=cat(self.parsing), camids=cat(self.camids), counts=self.counts | counts)


BatchTransform = Callable[[TrainBatch, Optional[torch.Generator]], TrainBatch]


@dataclass(kw_only=True)
class TrainStep:
    """One optimisation step: the batch transforms, forward, the objective, backward, update.

    ``net`` runs the forward: the model itself, its DistributedDataParallel wrapper
    (gradients all-reduced in backward) or its ``torch.compile`` form. A method hooks in at
    three places: :meth:`after_forward` (its own optimizer steps on detached outputs, before
    the loss), :meth:`extra_terms` (loss terms of its own) and :meth:`after_backward` (e.g.
    averaging the gradients of its modules outside ``net``).
    """

    net: nn.Module
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: str = "off"
    batch_transforms: Sequence[BatchTransform] = ()  # applied in order (the method's, then plug-ins')
    generator: Optional[torch.Generator] = None
    channels_last: bool = False
    uses_parsing: bool = True  # a batch transform or the objective needs the parsing maps on the device
    uses_camids: bool = False  # the network takes the camera ids (``net(images, camids=...)``)
    index: Optional[torch.Tensor] = field(default=None, init=False)  # the current rows' training-set positions

    def load(self, batch: Dict[str, torch.Tensor]) -> TrainBatch:
        """The loader's batch on the device."""
        device = self.device
        images = batch["image"].to(device, non_blocking=True)
        return TrainBatch(images=images, pids=batch["pid"].to(device), clothes=batch["clothes"].to(device),
                          index=batch["index"].to(device), has_parsing=batch["has_parsing"].to(device, torch.bool),
                          is_copy=torch.zeros(len(images), dtype=torch.bool, device=device),
                          parsing=batch["parsing"].to(device, non_blocking=True) if self.uses_parsing else None,
                          camids=batch["camid"].to(device) if self.uses_camids else None)

    def __call__(self, loaded: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """The loss and its terms as floats (possibly NaN: the caller checks), the batch transforms'
        counts, and ``images`` (the batch size after them). One host read per step."""
        device = self.device
        batch = self.load(loaded)
        for transform in self.batch_transforms:
            batch = transform(batch, self.generator)
        images, pids, clothes, parsing, camids = batch.images, batch.pids, batch.clothes, batch.parsing, batch.camids
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        frames = parsing if parsing is None or parsing.dim() == 3 else parsing.flatten(0, 1)  # clips: per frame
        body_mask, has_mask = (frames > 0, (frames >= 0).flatten(1).any(1)) if frames is not None else (None, None)
        with autocast(device, self.amp):
            outputs = self.net(images, camids=camids) if self.uses_camids else self.net(images)
        outputs = {k: (v.float() if torch.is_tensor(v) else [a.float() for a in v]) for k, v in outputs.items()}
        loss, terms = self.objective(outputs, pids, clothes, batch.is_copy, body_mask, has_mask)
        self.index = batch.index
        terms |= {name: value.detach().float() for name, value in self.after_forward(outputs, pids, clothes).items()}
        for name, (weight, value) in self.extra_terms(outputs, pids, clothes).items():
            if weight != 0:  # a weight-0 term is only logged (its graph may be spent already)
                loss = loss + weight * value
            terms[name] = value.detach().float()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.after_backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        named = {"loss": loss.detach()} | terms | batch.counts
        values = torch.stack([torch.as_tensor(v, device=device).float().reshape(()) for v in named.values()]).tolist()
        floats = {k: int(v) if k.startswith("num_") else v for k, v in zip(named, values)}
        return floats | {"images": len(pids)}

    def fields(self) -> Dict[str, object]:
        """This step's settings by name: ``MyStep(**base.fields(), extra=...)`` extends a built step."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def after_forward(self, outputs: Dict[str, torch.Tensor], pids: torch.Tensor,
                      clothes: torch.Tensor) -> Dict[str, torch.Tensor]:
        """After the forward, before the loss terms and backward: updates of the method's own
        modules that the loss must see already done (CAL's clothes classifier, on detached
        features). Returns name -> value, logged only."""
        return {}

    def extra_terms(self, outputs: Dict[str, torch.Tensor], pids: torch.Tensor,
                    clothes: torch.Tensor) -> Dict[str, Tuple[float, torch.Tensor]]:
        """Name -> (weight, loss term) added to the objective and logged. One row per image after the
        batch transforms (CRE's copies included); :attr:`index` holds each row's position in the
        training set."""
        return {}

    def after_backward(self) -> None:
        """Between backward and the optimizer step: e.g. average the gradients of modules outside
        ``net`` over the processes (:func:`average_gradients`)."""


def broadcast_parameters(modules: Sequence[nn.Module]) -> None:
    """Give every process of a distributed job process 0's parameters of ``modules`` (nothing in a
    single process): modules outside the DDP-wrapped model start equal on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for module in modules:
        for p in module.parameters():
            dist.broadcast(p.data, 0)


def average_gradients(modules: Sequence[nn.Module]) -> None:
    """Average the gradients of ``modules`` over the processes of a distributed job (nothing in a
    single process): modules that take part in the loss but are not inside the DDP-wrapped model."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for module in modules:
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()


def check_finite(terms: Dict[str, float], epoch: int, iteration: int, out: Path) -> None:
    """Stop with the iteration and the loss terms that are NaN/inf; checkpoints on disk stay good."""
    if math.isfinite(terms["loss"]):
        return
    bad = [k for k, v in terms.items() if isinstance(v, float) and not math.isfinite(v) and k != "loss"]
    last = latest_checkpoint(out)
    kept = f"the last good checkpoint is {last}" if last is not None else "no checkpoint was written yet"
    raise CCReIDError(f"iteration {iteration} (epoch {epoch}): loss became {terms['loss']} "
                      f"(terms: {', '.join(bad) or 'total'}); {kept}; lower train.lr or use train.amp=off")
