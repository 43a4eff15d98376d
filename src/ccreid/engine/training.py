"""``build_training(cfg, data, device)``: every object a training run needs, built one way for
``ccreid train`` and the training benchmarks alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ccreid.config import Config
from ccreid.data.video import time_axis
from ccreid.methods import DataInfo, Method, Preset, resolve_preset
from ccreid.methods.base import Optimizers
from ccreid.runtime.amp import autocast, resolve_amp, use_channels_last
from ccreid.runtime.distributed import DistInfo
from ccreid.runtime.precision import checked_amp
from ccreid.training.step import TrainStep


@dataclass
class Training:
    """The method, its model (unwrapped), optimizers and AMP scaler of one run; :meth:`start`
    wraps the model (DDP, compile) and makes the step once any checkpoint is restored."""

    cfg: Config
    method: Method
    model: nn.Module
    optimizers: Optimizers
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    device: torch.device
    amp: str
    channels_last: bool

    @property
    def main_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizers["main"][0]

    def state_dict(self) -> Dict[str, Any]:
        """What a checkpoint holds beyond the weights: every optimizer, schedule, the scaler, the method's state."""
        return {"optimizers": {k: opt.state_dict() for k, (opt, _) in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, (_, s) in self.optimizers.items() if s is not None},
                "scaler": self.scaler.state_dict(), "method": self.method.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output: the method's state first (it may rebuild an optimizer
        whose parameters depend on it, as FIRe²'s classifier of the clusters), then the optimizers."""
        self.method.load_state_dict(state["method"])
        for name, (optimizer, scheduler) in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            if scheduler is not None:
                scheduler.load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])

    def start(self, info: Optional[DistInfo] = None) -> TrainStep:
        """The training step over the model, DDP-wrapped under torchrun and compiled if asked."""
        net: nn.Module = self.model
        if info is not None and info.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.cfg.train.compile:
            net = torch.compile(net)
        return self.method.make_step(net, self.optimizers, self.scaler, self.device, self.amp, self.generator,
                                     self.channels_last)


def _example_batch(cfg: Config, device: torch.device, channels_last: bool) -> torch.Tensor:
    """Zeros shaped like one training batch (P x K images at the data size)."""
    shape = (cfg.data.ids_per_batch * cfg.data.images_per_id, *time_axis(cfg), 3, cfg.data.height, cfg.data.width)
    example = torch.zeros(shape, device=device)
    return example.contiguous(memory_format=torch.channels_last) if channels_last else example


def build_training(cfg: Config, data: DataInfo, device: torch.device, info: Optional[DistInfo] = None) -> Training:
    """The method of ``model.preset`` with its model on ``device``, loss modules and optimizers."""
    amp = resolve_amp(device, cfg.train.amp)
    autocast(device, amp)  # an amp mode the device lacks fails here, before any work
    preset = resolve_preset(cfg)
    method = preset.method(cfg, preset, data)
    channels_last = use_channels_last(device, cfg.train.channels_last) and cfg.model.video is None  # 4-D only
    model = method.build_model().to(device)
    model.feature = cfg.test.feature
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if info is not None and info.enabled and cfg.train.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    method.setup(model, device)
    amp = checked_amp(model, _example_batch(cfg, device, channels_last), cfg.train.amp, amp)
    optimizers = method.optimizers()
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    rank = info.rank if info is not None else 0
    generator = torch.Generator(device=device).manual_seed(cfg.seed + rank)
    return Training(cfg, method, model, optimizers, scaler, generator, device, amp, channels_last)


def check_model(cfg: Config, preset: Preset) -> None:
    """Build the network of ``preset`` once with its ``model.pretrained`` weights (from the cache, a
    file or a download) and drop it: a missing file or an offline machine is reported up front."""
    preset.method.build_network(cfg, preset, 1)
