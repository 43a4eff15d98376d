"""CAL: Clothes-based Adversarial Loss (Gu et al., CVPR 2022), trained as Simple-CCReID trains it.

A cosine clothes classifier (no bias, scale ``s``, margin 0) learns, on detached features
and with its own Adam (no lr schedule), to tell the outfits apart; from ``loss.cal.start_epoch``
on, each step first updates it, then adds the clothes-based adversarial loss to the
model's objective: every sample's target is ``1 - eps`` on its own outfit plus ``eps``
spread over all outfits of its identity, and each outfit is contrasted only against the
other identities' outfits, so the features stop separating one person's clothes.
Presets: ``cal`` (the baseline with CAL; triplet weight ``loss.cal.w_tri``, 0 as in
Simple-CCReID) and ``ours+cal`` (CAL on top of the paper's method; CRE's erased copies
count as outfits of their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.config import register_section, setting
from ccreid.methods.base import Optimizers, register_preset
from ccreid.methods.paper import ABLATION_SWITCHES, PaperMethod
from ccreid.training.step import TrainStep, average_gradients, broadcast_parameters


@dataclass
class CALConfig:
    """Clothes-based Adversarial Loss (presets ``cal`` and ``ours+cal``; Simple-CCReID's defaults):
    the config section ``loss.cal``."""

    # first epoch (0-based) with classifier updates and the adversarial loss
    start_epoch: int = setting(25, min=0, meaning="0: from the start")
    scale: float = 16.0  # cosine-logit scale of the clothes classifier (margin 0)
    epsilon: float = 0.1  # target mass spread over the identity's outfits
    w_tri: float = 0.0  # triplet weight of preset `cal` (Simple-CCReID trains CAL without it)


register_section("loss.cal", CALConfig)


class CosineClassifier(nn.Module):
    """``cos(x, w_k)`` for every class ``k``: bias-free, weights and inputs L2-normalised; ``weight``
    ``[num_classes, in_features]`` (default: random rows of norm at most 1)."""

    def __init__(self, in_features: int, num_classes: int, weight: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        if weight is None:  # rows of norm <= 1 (as Simple-CCReID): their scale sets how far one Adam step turns them
            weight = torch.empty(num_classes, in_features).uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5)
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


def clothes_adversarial_loss(logits: torch.Tensor, clothes: torch.Tensor, positive: torch.Tensor,
                             epsilon: float = 0.1) -> torch.Tensor:
    """CAL's loss on scaled clothes logits ``[B, C]``.

    ``positive`` (bool ``[B, C]``) marks the outfits of each sample's identity. Class ``j``'s
    log-probability is ``z_j - log(sum_{k not positive} e^{z_k} + e^{z_j})``; the target is
    ``(1 - eps)`` on the sample's outfit plus ``eps / |positive|`` on every positive outfit."""
    positive = positive.to(logits.dtype)
    exp = logits.exp()
    log_prob = logits - torch.log((exp * (1 - positive)).sum(1, keepdim=True) + exp)
    own = F.one_hot(clothes, logits.shape[1]).to(logits.dtype)
    target = (1 - epsilon) * own + epsilon * positive / positive.sum(1, keepdim=True)
    return -(target * log_prob).sum(1).mean()


@dataclass(kw_only=True)
class CALStep(TrainStep):
    """The trainer's step plus CAL: the classifier update after the forward, then the adversarial term."""

    classifier: nn.Module
    classifier_optimizer: torch.optim.Optimizer
    pid2clothes: torch.Tensor
    scale: float
    epsilon: float
    active: Callable[[], bool]

    def after_forward(self, outputs: Dict[str, torch.Tensor], pids: torch.Tensor,
                      clothes: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The clothes classifier learns on detached features (a step of its own Adam, after the gate)."""
        clothes_ce = F.cross_entropy(self.scale * self.classifier(outputs["bn_feat"].detach()), clothes)
        if self.active():
            self.classifier_optimizer.zero_grad(set_to_none=True)
            clothes_ce.backward()
            average_gradients([self.classifier])  # one classifier for all processes
            self.classifier_optimizer.step()
        return {"cal_clothes_ce": clothes_ce}

    def extra_terms(self, outputs: Dict[str, torch.Tensor], pids: torch.Tensor,
                    clothes: torch.Tensor) -> Dict[str, Tuple[float, torch.Tensor]]:
        """The adversarial term through the updated classifier (after the gate; logged as 0 before)."""
        if not self.active():
            return {"cal_adv": (0.0, outputs["bn_feat"].new_zeros((), dtype=torch.float32))}
        adv = clothes_adversarial_loss(self.scale * self.classifier(outputs["bn_feat"]), clothes,
                                       self.pid2clothes[pids], self.epsilon)
        return {"cal_adv": (1.0, adv)}


class CALMethod(PaperMethod):
    """The paper's trainer (any switches) plus CAL."""

    def setup(self, model: nn.Module, device: torch.device) -> None:
        super().setup(model, device)
        mask = self.data.pid2clothes
        if self.switches.cre:  # erased copies carry clothes id c + C: outfits of the same identity
            mask = torch.cat([mask, mask], dim=1)
        self.pid2clothes = mask.to(device)
        self.classifier = CosineClassifier(model.out_dim, mask.shape[1]).to(device)
        broadcast_parameters([self.classifier])  # every process starts from rank 0's classifier

    def build_objective(self) -> nn.Module:
        objective = super().build_objective()
        if self.preset.options.get("cal_triplet_weight"):
            objective.weights["tri"] = self.cfg.loss.cal.w_tri
        return objective

    def optimizers(self) -> Optimizers:
        train = self.cfg.train
        clothes = torch.optim.Adam(self.classifier.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        return super().optimizers() | {"clothes": (clothes, None)}

    def make_step(self, net: nn.Module, optimizers: Optimizers, *args: Any, **kwargs: Any) -> TrainStep:
        base = super().make_step(net, optimizers, *args, **kwargs)
        cal = self.cfg.loss.cal
        return CALStep(**base.fields(), classifier=self.classifier, classifier_optimizer=optimizers["clothes"][0],
                       pid2clothes=self.pid2clothes, scale=cal.scale, epsilon=cal.epsilon,
                       active=lambda: self.gate_open("loss.cal.start_epoch"))

    def epoch_gates(self) -> Dict[str, Tuple[int, str]]:
        start = (self.cfg.loss.cal.start_epoch, "the clothes-based adversarial loss starts")
        return super().epoch_gates() | {"loss.cal.start_epoch": start}

    def state_dict(self) -> Dict[str, Any]:
        return {"clothes_classifier": self.classifier.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.classifier.load_state_dict(state["clothes_classifier"])


register_preset("cal", CALMethod, cal_triplet_weight=True)
register_preset("ours+cal", CALMethod, **vars(ABLATION_SWITCHES["ours"]))
