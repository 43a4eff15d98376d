"""Device selection, seeding, mixed precision and atomic file writes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import random
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from ccreid.errors import CCReIDError, first_line


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



def resolve_amp(device: torch.device, amp: str) -> str:
    """``train.amp=auto``: bf16 on CUDA devices that support it and on CPUs with bf16
    instructions, off elsewhere; other values pass through. Training then checks the model's
    layers on a CPU before using bf16 (:func:`ccreid.engine.precision.checked_amp`)."""
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: errno -> (the cause in plain words, what to do)
WRITE_ERRORS = {
    errno.ENOSPC: ("no space left on device", "free some space or choose another --out"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose another --out"),
    errno.EROFS: ("read-only file system", "choose a writable --out"),
    errno.EACCES: ("permission denied", "choose a folder you may write, or change its permissions"),
    errno.EPERM: ("permission denied", "choose a folder you may write, or change its permissions"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another --out"),
    errno.EISDIR: ("it is a folder", "pass a file path"),
}


def _errno_of(err: BaseException) -> Optional[int]:
    """The OS error behind ``err``: its errno, or what a library's message says: safetensors
    ``(os error 28)``, torch's zip writer ``unexpected pos`` (a full disk)."""
    if getattr(err, "errno", None) is not None:
        return err.errno
    found = re.search(r"os error (\d+)", str(err))
    if found:
        return int(found.group(1))
    return errno.ENOSPC if "unexpected pos" in str(err) else None


def write_failure(path: str | os.PathLike, err: BaseException, todo: Optional[str] = None) -> CCReIDError:
    """A one-line error for a failed write of ``path``: the cause in plain words and what to do
    (``todo``, where the usual advice, about ``--out``, does not fit)."""
    code = _errno_of(err)
    cause, usual = WRITE_ERRORS.get(code, (getattr(err, "strerror", None) or first_line(err), "check the path"))
    return CCReIDError(f"cannot write {path}: {cause}; {todo or usual} (files written before are intact)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, todo: Optional[str] = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only on success. A failed
    write leaves ``path`` as it was and no temp file, and is a one-line :func:`write_failure`
    (saying ``todo``, when given)."""
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except CCReIDError:
        raise
    except Exception as err:  # libraries wrap OS errors in their own types
        if _errno_of(err) is None:
            raise
        raise write_failure(target, err, todo) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indented, UTF-8)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


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
