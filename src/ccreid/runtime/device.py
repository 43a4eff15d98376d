"""Which device runs a job, seeding, what the CPU can do, and what ran a job (``machine_info``)."""

from __future__ import annotations

import os
import platform
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ccreid.errors import CCReIDError


def resolve_device(name: str = "auto", option: str = "train.device") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable device is a clear error naming ``option``:
    a config key (``train.device``) or a command-line option (``--device``)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    where, cpu = (f"option {option}", f"{option} cpu") if option.startswith("-") else (f"config key '{option}'",
                                                                                          f"{option}=cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CCReIDError(f"{where}: unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CCReIDError(f"{where}: cuda requested but no CUDA GPU is visible (use {cpu})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CCReIDError(f"{where}: mps requested but not available (use {cpu})")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (x86 AVX512-BF16 or AMX-BF16, Arm BF16), read from
    ``/proc/cpuinfo`` (False where that file does not exist). There CPU bf16 autocast runs
    natively (1.74x the fp32 training images/s on a 2-core AVX512-BF16 CPU, cpu_bf16.md);
    elsewhere bf16 is emulated, so ``train.amp=auto`` keeps fp32."""
    try:
        return cpuinfo_has_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """Whether a ``/proc/cpuinfo`` text lists a bf16 instruction set among its flags."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def machine_info(device: torch.device) -> dict:
    """What ran the job: recorded beside every result."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cpu":
        info["cpu_bf16"] = cpu_has_native_bf16()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
