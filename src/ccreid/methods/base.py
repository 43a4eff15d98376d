"""The method interface and the preset registry.

A method is one class: the model it trains, its batch transforms, its named loss terms,
its optimizers (with parameter groups and schedules), its epoch gates and the extra state
its checkpoints hold. :class:`Method` itself is the paper's trainer: the baseline with the
CRE, BSGA and BCTri switches (METHOD.md); another method subclasses it and overrides what
it changes (see :mod:`ccreid.methods.cal`). A preset is a name for (method, switches,
options): ``model.preset=<name>`` selects it. Methods in a user's own file or package
register presets the same way and are loaded by the config key ``plugins``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import torch
from torch import nn

from ccreid.config import Config, ModelConfig
from ccreid.data.labels import LabelSet
from ccreid.data.records import ImageRecord, ReIDDataset
from ccreid.losses import ReIDObjective
from ccreid.models import ReIDModel
from ccreid.models.bsga import bsga_loss
from ccreid.models.cre import ClothesErasure
from ccreid.models.presets import Components
from ccreid.registry import Registry
from ccreid.training.hooks import HookBase
from ccreid.training.pretrained import pretrained_backbone
from ccreid.training.step import BatchTransform, TrainBatch, TrainStep

Optimizers = Dict[str, Tuple[torch.optim.Optimizer, Optional[torch.optim.lr_scheduler.LRScheduler]]]


@dataclass(frozen=True)
class DataInfo:
    """What a method may know of its training data."""

    num_pids: int
    num_clothes: int
    pid2clothes: torch.Tensor  # bool [num_pids, num_clothes]: the outfits each identity wears
    clothes_labels: Tuple[int, ...]  # parsing labels that are clothes (CRE)
    label_set: str = "lip"  # name of the parsing label set (PS groups its garments by it)

    @classmethod
    def of(cls, records: Sequence[ImageRecord], label_set: LabelSet) -> "DataInfo":
        """From relabelled training records (pids and clothes ids ``0..N-1``) and the maps' label set."""
        pids = torch.tensor([r.pid for r in records])
        clothes = torch.tensor([r.clothes_id for r in records])
        num_pids, num_clothes = int(pids.max()) + 1, int(clothes.max()) + 1
        mask = torch.zeros(num_pids, num_clothes, dtype=torch.bool)
        mask[pids, clothes] = True
        return cls(num_pids, num_clothes, mask, tuple(sorted(label_set.clothes)), label_set.name)


@dataclass(frozen=True)
class Preset:
    """A named configuration: the method class, the paper's switches under it, its options."""

    name: str
    method: Type["Method"]
    components: Components
    options: Mapping[str, Any] = field(default_factory=dict)


PRESETS: Registry[Preset] = Registry("preset (model.preset)")


def register_preset(name: str, method: Type["Method"], components: Components = Components(False, False, False),
                    **options: Any) -> Preset:
    """Make ``model.preset=<name>`` train ``method`` with ``components`` and ``options``."""
    preset = Preset(name, method, components, options)
    PRESETS.register(name)(preset)
    return preset


def resolve_preset(model: ModelConfig, cfg: Optional[Config] = None) -> Preset:
    """``model.preset``, with explicit ``model.cre/bsga.enabled`` (and ``loss.bctri.enabled``) applied."""
    preset = PRESETS.get(model.preset)
    comps = preset.components
    bctri = cfg.loss.bctri.enabled if cfg is not None else None
    comps = Components(cre=comps.cre if model.cre.enabled is None else model.cre.enabled,
                       bsga=comps.bsga if model.bsga.enabled is None else model.bsga.enabled,
                       bctri=comps.bctri if bctri is None else bctri)
    return replace(preset, components=comps)


class Method:
    """The paper's trainer: baseline (CE + triplet, BNNeck) with the CRE, BSGA and BCTri switches.

    The trainer calls, in order: :meth:`build_model`, :meth:`setup` (loss modules and extra
    modules on the device), :meth:`optimizers`, :meth:`hooks`, :meth:`make_step`; then the
    step and the hooks (:meth:`set_epoch` before each epoch); checkpoints hold :meth:`state_dict`.
    """

    def __init__(self, cfg: Config, preset: Preset, data: DataInfo) -> None:
        self.cfg = cfg
        self.preset = preset
        self.components = preset.components
        self.data = data
        self.epoch = 0

    @classmethod
    def needs_parsing(cls, preset: Preset) -> bool:
        """Whether the training batches of ``preset`` must carry parsing maps."""
        return preset.components.cre or preset.components.bsga

    @classmethod
    def complete_config(cls, cfg: Config, dataset: ReIDDataset) -> None:
        """Fill config keys that depend on the data (before the config is saved with the run)."""

    @classmethod
    def build_network(cls, cfg: Config, preset: Preset, num_classes: int) -> nn.Module:
        """The network this method trains and tests (rebuilt from a checkpoint's config by ``ccreid test``)."""
        model = cfg.model
        backbone = pretrained_backbone(model)
        stages = tuple(model.bsga.stages) if preset.components.bsga else ()
        return ReIDModel(backbone, num_classes, pooling=model.pooling, bsga_stages=stages)

    def build_model(self) -> nn.Module:
        return self.build_network(self.cfg, self.preset, self.data.num_pids)

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Loss modules and batch transforms, on ``device``."""
        self.model = model
        self.transforms = self.batch_transforms()
        self.objective = self.build_objective().to(device)

    def batch_transforms(self) -> List[BatchTransform]:
        """What the step does to each batch before the forward, in order (see
        :class:`~ccreid.training.step.TrainBatch`); a subclass or plug-in extends the list. Here: CRE."""
        if not self.components.cre:
            return []
        cre = self.cfg.model.cre
        labels = cre.clothes_labels if cre.clothes_labels is not None else self.data.clothes_labels
        return [ErasedCopies(ClothesErasure(labels, p=cre.p, fill=cre.fill), self.data.num_clothes)]

    def build_objective(self) -> nn.Module:
        """METHOD.md's total loss; BCTri and BSGA's supervision follow the switches."""
        loss, model = self.cfg.loss, self.cfg.model
        return ReIDObjective(
            self.data.num_pids, label_smoothing=loss.label_smoothing, triplet_margin=loss.triplet_margin,
            w_ce=loss.w_ce, w_tri=loss.w_tri, w_bctri=loss.w_bctri, w_bsga=loss.w_bsga,
            use_bctri=self.components.bctri, bctri_margin=loss.bctri.margin, bctri_metric=loss.bctri.metric,
            bctri_reduction=loss.bctri.reduction, attention_loss=partial(bsga_loss, kind=model.bsga.loss),
            erased_terms=tuple(model.cre.losses))

    def trained_parameters(self) -> List[nn.Parameter]:
        """What the ``main`` optimizer trains: the model's and the loss modules' parameters."""
        return list(self.model.parameters()) + list(self.objective.parameters())

    def main_optimizer(self) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """Adam over :meth:`trained_parameters` and its per-epoch schedule (warm-up, milestones)."""
        train = self.cfg.train
        optimizer = torch.optim.Adam(self.trained_parameters(), lr=train.lr, weight_decay=train.weight_decay,
                                     foreach=True)  # one kernel per op for all tensors: same numbers
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, self.cfg))

    def optimizers(self) -> Optimizers:
        """Name -> (optimizer, per-epoch scheduler or None); ``main`` trains the model."""
        return {"main": self.main_optimizer()}

    def make_step(self, net: nn.Module, optimizers: Optimizers, scaler: torch.amp.GradScaler, device: torch.device,
                  amp: str, generator: torch.Generator, channels_last: bool) -> TrainStep:
        """The optimisation step; ``net`` is the model or its DDP / compiled wrapper."""
        return TrainStep(net=net, objective=self.objective, optimizer=optimizers["main"][0], scaler=scaler,
                         device=device, amp=amp, batch_transforms=self.transforms,
                         generator=generator, channels_last=channels_last,
                         uses_parsing=self.needs_parsing(self.preset),
                         uses_camids=getattr(self.model, "uses_camids", False))

    def hooks(self) -> List[HookBase]:
        """This method's own per-epoch and per-step work, called before the trainer's hooks (in list
        order; see :mod:`ccreid.training.hooks`). The base: :class:`EpochGates`."""
        return [EpochGates(self)]

    def set_epoch(self, epoch: int) -> None:
        """Called before each epoch (0-based): epoch gates read :attr:`epoch`."""
        self.epoch = epoch

    def epoch_gates(self) -> Dict[str, Tuple[int, str]]:
        """Config key -> (the first epoch, 0-based, of what it starts; what that is): a run of no more
        epochs never gets there (``ccreid train`` warns). The base: the end of the lr warm-up."""
        return {"train.warmup_epochs": (max(0, self.cfg.train.warmup_epochs - 1), "the learning rate reaches train.lr")}

    def gate_open(self, key: str) -> bool:
        """Whether the current epoch has reached the gate ``key`` of :meth:`epoch_gates`."""
        return self.epoch >= self.epoch_gates()[key][0]

    def state_dict(self) -> Dict[str, Any]:
        """Extra state for resumable checkpoints (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""


class ErasedCopies:
    """CRE as a batch transform: appends the erased copies of :class:`ClothesErasure` (clothes id
    ``c + num_clothes``: another outfit of the same identity), counted as ``num_erased``."""

    def __init__(self, erasure: ClothesErasure, num_clothes: int) -> None:
        self.erasure, self.num_clothes = erasure, num_clothes

    def __call__(self, batch: TrainBatch, generator: Optional[torch.Generator] = None) -> TrainBatch:
        counts = {"num_without_map": int((~batch.has_parsing).sum())}
        if self.erasure.p == 0.0:
            return replace(batch, counts=batch.counts | {"num_erased": 0} | counts)
        index, copies = self.erasure.copies(batch.images, batch.parsing, batch.has_parsing, generator)
        return batch.with_copies(index, copies, batch.clothes[index] + self.num_clothes,
                                 num_erased=int(index.numel()), **counts)


class EpochGates(HookBase):
    """Before each epoch, :meth:`Method.set_epoch`: the method's epoch gates (CAL's start) open on time."""

    def __init__(self, method: Method) -> None:
        self.method = method

    def before_epoch(self) -> None:
        self.method.set_epoch(self.trainer.state.epoch)


def build_model_from_config(cfg: Config, num_classes: int) -> nn.Module:
    """The network of ``cfg.model.preset`` (its method's :meth:`Method.build_network`)."""
    preset = resolve_preset(cfg.model)
    return preset.method.build_network(cfg, preset, num_classes)


def lr_factor(epoch: int, cfg: Config) -> float:
    """Linear warm-up to the base lr, then x gamma at each milestone (per epoch)."""
    t = cfg.train
    warm = min(1.0, (epoch + 1) / t.warmup_epochs) if t.warmup_epochs > 0 else 1.0
    return warm * t.gamma ** sum(epoch >= m for m in t.milestones)
