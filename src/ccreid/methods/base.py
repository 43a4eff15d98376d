"""The method interface and the preset registry.

A method is one class: the model it trains, its batch transforms, its named loss terms,
its optimizers (with parameter groups and schedules), its epoch gates and the extra state
its checkpoints hold. :class:`Method` itself trains the baseline (BNNeck ResNet, CE + triplet,
Adam); a method subclasses it and overrides what it changes: the paper's method
(:mod:`ccreid.methods.paper`), CAL, PS, PCB, the ViT, FIRe². A preset is a name for (method,
options): ``model.preset=<name>`` selects it. Methods in a user's own file or package
register presets the same way and are loaded by the config key ``plugins``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import torch
from torch import nn

from ccreid.config import Config, ModelConfig
from ccreid.data.labels import LabelSet
from ccreid.data.records import ImageRecord, ReIDDataset
from ccreid.data.registry import is_video_dataset
from ccreid.errors import CCReIDError
from ccreid.losses import ReIDObjective
from ccreid.models import ReIDModel, VideoReIDModel, build_video_backbone
from ccreid.registry import Registry
from ccreid.training.hooks import HookBase
from ccreid.training.pretrained import pretrained_backbone
from ccreid.training.step import BatchTransform, TrainStep

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
    """A named configuration: the method class and its options (the paper's switches, CAL's
    triplet weighting, ...), read by the method."""

    name: str
    method: Type["Method"]
    options: Mapping[str, Any] = field(default_factory=dict)


PRESETS: Registry[Preset] = Registry("preset (model.preset)")


def register_preset(name: str, method: Type["Method"], **options: Any) -> Preset:
    """Make ``model.preset=<name>`` train ``method`` with ``options``."""
    preset = Preset(name, method, options)
    PRESETS.register(name)(preset)
    return preset


def resolve_preset(cfg: Config) -> Preset:
    """``model.preset`` as its method reads it with ``cfg`` (:meth:`Method.resolve`: e.g. the paper's
    switches with explicit ``model.cre.enabled`` applied)."""
    preset = PRESETS.get(cfg.model.preset)
    return preset.method.resolve(preset, cfg)


class Method:
    """The baseline: a BNNeck ResNet trained with label-smoothed CE and the batch-hard triplet loss.

    The trainer calls, in order: :meth:`build_model`, :meth:`setup` (loss modules and extra
    modules on the device), :meth:`optimizers`, :meth:`hooks`, :meth:`make_step`; then the
    step and the hooks (:meth:`set_epoch` before each epoch); checkpoints hold :meth:`state_dict`.
    """

    #: whether the method trains on clips of tracklets (video datasets); one that does not is refused there
    runs_on_clips: ClassVar[bool] = True

    def __init__(self, cfg: Config, preset: Preset, data: DataInfo) -> None:
        self.cfg = cfg
        self.preset = preset
        self.data = data
        self.epoch = 0

    @classmethod
    def resolve(cls, preset: Preset, cfg: Config) -> Preset:
        """``preset`` with what ``cfg`` says of its options applied (the base: as registered)."""
        return preset

    @classmethod
    def needs_parsing(cls, preset: Preset) -> bool:
        """Whether the training batches of ``preset`` must carry parsing maps."""
        return False

    @classmethod
    def check_before_work(cls, cfg: Config, preset: Preset) -> None:
        """What this method can refuse before data, parsing or training start (the paper's: CRE
        needs clothes classes)."""

    @classmethod
    def complete_config(cls, cfg: Config, dataset: ReIDDataset) -> None:
        """Fill config keys that depend on the data (before the config is saved with the run)."""

    @classmethod
    def build_network(cls, cfg: Config, preset: Preset, num_classes: int) -> nn.Module:
        """The network this method trains and tests (rebuilt from a checkpoint's config by ``ccreid test``):
        on clips (``model.video``) the image backbone inside a video backbone."""
        model = cfg.model
        backbone, options = pretrained_backbone(model), cls.network_options(cfg, preset)
        if model.video is None:
            return ReIDModel(backbone, num_classes, pooling=model.pooling, **options)
        return VideoReIDModel(build_video_backbone(model.video, backbone), num_classes, pooling=model.pooling,
                              **options)

    @classmethod
    def network_options(cls, cfg: Config, preset: Preset) -> Dict[str, Any]:
        """Keyword arguments of :class:`~ccreid.models.ReIDModel` beyond the backbone and the pooling."""
        return {}

    def build_model(self) -> nn.Module:
        return self.build_network(self.cfg, self.preset, self.data.num_pids)

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Loss modules and batch transforms, on ``device``."""
        self.model = model
        self.transforms = self.batch_transforms()
        self.objective = self.build_objective().to(device)

    def batch_transforms(self) -> List[BatchTransform]:
        """What the step does to each batch before the forward, in order (see
        :class:`~ccreid.training.step.TrainBatch`); a subclass or plug-in extends the list."""
        return []

    def build_objective(self) -> nn.Module:
        """The total loss (:class:`~ccreid.losses.ReIDObjective` with :meth:`objective_options`)."""
        return ReIDObjective(self.data.num_pids, **self.objective_options())

    def objective_options(self) -> Dict[str, Any]:
        """Keyword arguments of :class:`~ccreid.losses.ReIDObjective`: the baseline's CE and triplet."""
        loss = self.cfg.loss
        return dict(label_smoothing=loss.label_smoothing, triplet_margin=loss.triplet_margin,
                    w_ce=loss.w_ce, w_tri=loss.w_tri)

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


class EpochGates(HookBase):
    """Before each epoch, :meth:`Method.set_epoch`: the method's epoch gates (CAL's start) open on time."""

    def __init__(self, method: Method) -> None:
        self.method = method

    def before_epoch(self) -> None:
        self.method.set_epoch(self.trainer.state.epoch)


def complete_video(cfg: Config, preset: Preset) -> None:
    """``model.video`` from the dataset: ``c2d`` when a video dataset leaves it unset; a video backbone
    on an image dataset, or a method that does not train on clips, is refused in one line."""
    video = is_video_dataset(cfg.data.name)
    if video and cfg.model.video is None:
        cfg.model.video = "c2d"
    if not video and cfg.model.video is not None:
        raise CCReIDError(f"config key 'model.video': dataset {cfg.data.name!r} holds images, not tracklets; "
                          "leave model.video unset (it is for video datasets: ccvid, mevid, synthetic_video)")
    if video and not preset.method.runs_on_clips:
        raise CCReIDError(f"model.preset={preset.name} does not train on clips yet; on video dataset "
                          f"{cfg.data.name!r} use baseline, baseline+bsga, baseline+bctri or cal")


def build_model_from_config(cfg: Config, num_classes: int) -> nn.Module:
    """The network of ``cfg.model.preset`` (its method's :meth:`Method.build_network`)."""
    preset = resolve_preset(cfg)
    return preset.method.build_network(cfg, preset, num_classes)


def lr_factor(epoch: int, cfg: Config) -> float:
    """Linear warm-up to the base lr, then x gamma at each milestone (per epoch)."""
    t = cfg.train
    warm = min(1.0, (epoch + 1) / t.warmup_epochs) if t.warmup_epochs > 0 else 1.0
    return warm * t.gamma ** sum(epoch >= m for m in t.milestones)
