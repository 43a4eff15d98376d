"""The optimizer and learning-rate schedule of the comparison methods' published recipes: the
config section ``train.optim``, read by the methods that derive from :class:`RecipeOptimizer`
(presets ``ps``, ``pcb``, ``vit``).

Left at its defaults the section changes nothing (Adam with ``train.lr`` / ``train.weight_decay``,
ccreid's linear warm-up and milestones: :func:`ccreid.methods.base.lr_factor`). Otherwise:

- ``name``: ``adam`` or ``sgd`` (momentum ``momentum``);
- ``bias_lr_factor`` / ``weight_decay_bias``: the learning-rate factor and weight decay of the
  parameters whose name contains ``bias`` (the BoT / TransReID ``make_optimizer`` rule);
- ``pretrained_lr_factor``: the learning-rate factor of the pretrained network (the model's
  ``backbone``, the ViT's ``vit``), the new layers at ``train.lr`` (PCB's paper: 0.1);
- ``schedule=step`` with ``warmup_factor`` f: ``f + (1 - f) * e / W`` in the 0-based epochs
  ``e < W = train.warmup_epochs`` (BoT's ``WarmupMultiStepLR``), then ``train.gamma`` at each of
  ``train.milestones``; unset f: ccreid's ``(e + 1) / W``;
- ``schedule=cosine`` (TransReID's ``CosineLRScheduler``, stepped with the 1-based epoch
  ``t = e + 1``): ``f + t * (1 - f) / W`` while ``t < W``, then
  ``m + (1 - m) * (1 + cos(pi * t / train.epochs)) / 2`` with ``m = min_factor``; no milestones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Tuple

import torch

from ccreid.config import register_check, register_section, setting
from ccreid.errors import CCReIDError
from ccreid.methods.base import PRESETS, Method, lr_factor

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("step", "cosine")


@dataclass
class OptimConfig:
    """The recipe's optimizer and schedule (presets ps, pcb, vit): the config section ``train.optim``."""

    name: str = setting("adam", choices=OPTIMIZERS)
    momentum: float = setting(0.9, range=(0, 1))  # sgd only
    schedule: str = setting("step", choices=SCHEDULES)  # step: warm-up + train.milestones; cosine: TransReID's
    # warm-up start as a fraction of train.lr (None: ccreid's (e + 1) / W rule)
    warmup_factor: Optional[float] = setting(None, range=(0, 1))
    min_factor: float = setting(0.002, range=(0, 1))  # cosine: the final lr as a fraction of train.lr
    bias_lr_factor: float = setting(1.0, above=0)  # lr factor of parameters named *bias*
    # lr factor of the pretrained network (PCB's paper: 0.1, the new layers at train.lr)
    pretrained_lr_factor: float = setting(1.0, above=0)
    weight_decay_bias: Optional[float] = setting(None, min=0.0, meaning="None: train.weight_decay")


register_section("train.optim", OptimConfig)


def is_default(optim: OptimConfig) -> bool:
    """Whether ``train.optim`` is left at its defaults (the trainer's own Adam and schedule)."""
    return all(getattr(optim, f.name) == f.default for f in fields(OptimConfig))


def recipe_lr_factor(epoch: int, cfg: Any) -> float:
    """The factor of ``train.lr`` in the 0-based ``epoch`` (module docstring)."""
    train, optim = cfg.train, cfg.train.optim
    warm, f = train.warmup_epochs, optim.warmup_factor
    if optim.schedule == "cosine":
        t = epoch + 1
        if t < warm:
            start = f or 0.0
            return start + t * (1.0 - start) / warm
        m = optim.min_factor
        return m + 0.5 * (1.0 - m) * (1.0 + math.cos(math.pi * t / train.epochs))
    if f is None or epoch >= warm:
        return lr_factor(epoch, cfg)
    return (f + (1.0 - f) * epoch / warm) * train.gamma ** sum(epoch >= m for m in train.milestones)


class RecipeOptimizer(Method):
    """A method whose main optimizer and schedule follow ``train.optim``."""

    #: name prefix of the pretrained network's parameters (``train.optim.pretrained_lr_factor``)
    pretrained_prefix = "backbone."

    def parameter_groups(self) -> List[dict]:
        """:meth:`trained_parameters` grouped by learning rate and weight decay: parameters named
        *bias* (``bias_lr_factor``, ``weight_decay_bias``), those of the pretrained network
        (``pretrained_lr_factor``), the rest at ``train.lr`` / ``train.weight_decay``."""
        train, optim = self.cfg.train, self.cfg.train.optim
        names = {id(p): n for n, p in self.model.named_parameters()}
        names.update({id(p): f"objective.{n}" for n, p in self.objective.named_parameters()})
        decay_bias = train.weight_decay if optim.weight_decay_bias is None else optim.weight_decay_bias
        groups: Dict[Tuple[float, float], List[torch.nn.Parameter]] = {}
        for param in self.trained_parameters():
            name = names.get(id(param), "")
            lr = train.lr * (optim.bias_lr_factor if "bias" in name else 1.0)
            lr *= optim.pretrained_lr_factor if name.startswith(self.pretrained_prefix) else 1.0
            groups.setdefault((lr, decay_bias if "bias" in name else train.weight_decay), []).append(param)
        return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]

    def main_optimizer(self) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """The trainer's Adam at the defaults; else ``train.optim``'s optimizer and schedule."""
        optim = self.cfg.train.optim
        if is_default(optim):
            return super().main_optimizer()
        groups = self.parameter_groups()
        if optim.name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=self.cfg.train.lr, momentum=optim.momentum, foreach=True)
        else:
            optimizer = torch.optim.Adam(groups, lr=self.cfg.train.lr, foreach=True)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: recipe_lr_factor(e, self.cfg))


@register_check
def check_optim(cfg: Any) -> None:
    """``train.optim`` away from its defaults only for the methods that read it."""
    preset = PRESETS.get(cfg.model.preset) if cfg.model.preset in PRESETS else None
    if preset is None or is_default(cfg.train.optim) or issubclass(preset.method, RecipeOptimizer):
        return
    readers = sorted(name for name in PRESETS if issubclass(PRESETS.get(name).method, RecipeOptimizer))
    raise CCReIDError(f"config key 'train.optim': model.preset={cfg.model.preset} trains with its own optimizer "
                      f"and ignores train.optim.*; leave them at their defaults (they are read by the presets "
                      f"{', '.join(readers)})")
