"""Mixed precision (``train.amp``, ``ccreid parse --amp``) and the memory format of training."""

from __future__ import annotations

import contextlib

import torch

from ccreid.errors import CCReIDError
from ccreid.runtime.device import cpu_has_native_bf16


def resolve_amp(device: torch.device, amp: str) -> str:
    """``train.amp=auto``: bf16 on CUDA devices that support it and on CPUs with bf16
    instructions, off elsewhere; other values pass through. Training then checks the model's
    layers on a CPU before using bf16 (:func:`ccreid.runtime.precision.checked_amp`)."""
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "off"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "off"


def use_channels_last(device: torch.device, setting: bool | None) -> bool:
    """``train.channels_last``: ``None`` = on for CUDA and CPU (oneDNN's NHWC convolutions and
    BatchNorm: 14 % less train-step time in the fp32 demo, benchmarks/results/demo_speed.md;
    bf16 needs NHWC for speed), off elsewhere; ``True``/``False`` force it."""
    if setting is not None:
        return setting
    return device.type in ("cuda", "cpu")


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Autocast for ``amp`` in ``auto|off|bf16|fp16`` (fp16 only where the device supports it)."""
    amp = resolve_amp(device, amp)
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "fp16" and device.type == "cpu":
        raise CCReIDError("config key 'train.amp': fp16 is not supported on CPU (use bf16 or off)")
    return torch.autocast(device_type=device.type, dtype=dtype)
