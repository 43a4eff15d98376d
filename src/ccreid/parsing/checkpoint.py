"""Official SCHP checkpoint files -> :class:`~ccreid.parsing.network.SCHPNetwork`.

The file is read with ``torch.load(weights_only=True)``: tensors only, pickled code is
never run. Keys may carry DataParallel's ``module.`` prefix; the label set follows from
the classifier width; InPlaceABN's ``|gamma| + eps`` scale is folded into each BatchNorm
weight, so the result is a plain ``nn.Module``.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ccreid.errors import CCReIDError, first_line
from ccreid.files import PICKLE, SAFETENSORS, TORCH_ZIP, describe_format, require_file, weights_format
from ccreid.parsing.network import ABN, SCHPNetwork
from ccreid.parsing.variants import VARIANTS, SCHPVariant, variant_for_classes

#: InPlaceABN's eps, as the C float its kernels use
ABN_EPS = float(np.float32(1e-5))
#: the fusion classifier, whose width gives the label set
CLASSIFIER_KEY = "fushion.3.weight"
EXAMPLE = VARIANTS["lip"].checkpoint


def _fail(label: str, path: Path, what: str) -> CCReIDError:
    return CCReIDError(f"{label} {path}: {what}; pass an SCHP checkpoint such as {EXAMPLE}")


def _torch_load(path: Path) -> object:
    """``torch.load`` with tensors only, memory-mapped where the file format allows (and its name:
    torch reads a path ending in ``.safetensors`` as safetensors, so such a file is read from a handle)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")  # torch's note, not the user's
        if path.suffix == ".safetensors":
            with open(path, "rb") as handle:
                return torch.load(handle, map_location="cpu", weights_only=True)
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # files of torch < 1.6 (the released ones) cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)


def read_state_dict(path: str | Path, label: str = "--weights") -> Dict[str, torch.Tensor]:
    """The tensors of an SCHP checkpoint file, ``module.`` prefix stripped (one-line errors)."""
    path = require_file(path, label, f"download {EXAMPLE} or another SCHP checkpoint")
    kind = weights_format(path)
    if kind == SAFETENSORS:
        raise _fail(label, path, "a safetensors file (ccreid re-ID weights?), not an SCHP checkpoint")
    if kind not in (TORCH_ZIP, PICKLE):
        raise _fail(label, path, describe_format(kind))
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as err:
        detail = "holds pickled Python objects besides tensors (not executed)" \
            if "Weights only load failed" in str(err) else "not a PyTorch checkpoint"
        raise _fail(label, path, detail)
    except Exception as err:  # torch.load raises many types for foreign or truncated files
        raise _fail(label, path, f"not a readable PyTorch checkpoint ({first_line(err)})")
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(label, path, "no 'state_dict' of tensors in it")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def checkpoint_variant(state: Dict[str, torch.Tensor], path: Path, labels: Optional[str] = None,
                       label: str = "--weights") -> SCHPVariant:
    """The label set of ``state``: from the classifier width, or ``labels`` when it fits."""
    weight = state.get(CLASSIFIER_KEY)
    if weight is None or weight.ndim != 4:
        raise _fail(label, path, f"tensor {CLASSIFIER_KEY} is missing (a re-ID or other model?)")
    classes = weight.shape[0]
    if labels is not None:
        if labels not in VARIANTS:
            raise CCReIDError(f"option --labels: {labels!r} is not one of {', '.join(VARIANTS)}")
        if VARIANTS[labels].num_classes != classes:
            raise CCReIDError(f"option --labels: {labels} has {VARIANTS[labels].num_classes} classes but "
                              f"{path} classifies into {classes}")
        return VARIANTS[labels]
    found = variant_for_classes(classes)
    if found is None:
        known = ", ".join(f"{v.name} {v.num_classes}" for v in VARIANTS.values())
        raise _fail(label, path, f"its classifier has {classes} classes, none of the released models' ({known})")
    return found


@dataclass(frozen=True)
class CheckpointInfo:
    """An SCHP checkpoint as a map folder records it: its file, label set and content fingerprint."""

    path: Path
    variant: SCHPVariant
    fingerprint: str


@lru_cache(maxsize=8)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: Path) -> str:
    """``sha256:`` and the first 16 hex digits of the file's SHA-256 (computed once per file version)."""
    stat = path.stat()
    return "sha256:" + _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)[:16]


def inspect_checkpoint(path: str | Path, labels: Optional[str] = None, label: str = "--weights") -> CheckpointInfo:
    """The label set and fingerprint of an SCHP checkpoint, without building its network."""
    path = Path(path).expanduser()
    variant = checkpoint_variant(read_state_dict(path, label), path, labels, label)
    return CheckpointInfo(path, variant, fingerprint(path))


def load_schp(path: str | Path, labels: Optional[str] = None, label: str = "--weights",
              dtype: torch.dtype = torch.float32) -> Tuple[SCHPNetwork, SCHPVariant]:
    """The network of an SCHP checkpoint in eval mode (CPU, ``dtype``) and its variant.

    The ABN scale is folded in ``dtype`` (a float64 network matches SCHP's float64 run)."""
    path = Path(path).expanduser()
    state = read_state_dict(path, label)
    variant = checkpoint_variant(state, path, labels, label)
    model = SCHPNetwork(variant.num_classes)
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    for key, tensor in expected.items():
        if key not in state:
            raise _fail(label, path, f"tensor {key} is missing")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise _fail(label, path, f"tensor {key} has shape {list(state[key].shape)}, "
                                     f"expected {list(tensor.shape)}")
    extra = sorted(k for k in state if k not in expected and not k.endswith("num_batches_tracked"))
    if extra:
        raise _fail(label, path, f"unexpected tensor {extra[0]} (not an AugmentCE2P ResNet-101)")
    model = model.to(dtype)
    model.load_state_dict({k: state[k].to(dtype) for k in expected}, strict=False)
    return fold_abn(model).eval(), variant


@torch.no_grad()
def fold_abn(model: nn.Module) -> nn.Module:
    """InPlaceABN scales by ``|gamma| + eps``: write that into every :class:`ABN` weight (once, at load)."""
    for module in model.modules():
        if isinstance(module, ABN):
            module.weight.copy_(module.weight.abs() + ABN_EPS)
    return model
