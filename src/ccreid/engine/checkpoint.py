"""Checkpoints: weights as safetensors (with the config as metadata) + a small state file.

Nothing here unpickles code: weights load with safetensors, the state file with
``torch.load(weights_only=True)``. Every file is written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ccreid.engine.runtime import atomic_path
from ccreid.errors import CCReIDError

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "state.pt"


@dataclass
class LoadedWeights:
    """A checkpoint's tensors and the metadata saved with them."""

    state_dict: Dict[str, torch.Tensor]
    config_yaml: Optional[str]
    num_classes: int
    extra: Dict[str, Any]


def save_weights(path: str | Path, model: nn.Module, config_yaml: str, num_classes: int, **extra: Any) -> None:
    """Save ``model``'s weights with the resolved config and class count as metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"config": config_yaml, "num_classes": str(num_classes), "extra": json.dumps(extra)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(path: str | Path) -> LoadedWeights:
    """Read a ccreid ``.safetensors`` checkpoint; a missing or damaged file is a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise CCReIDError(f"weights file {path} not found (pass the model.safetensors of a training run)")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CCReIDError(f"weights file {path} is damaged or not a safetensors file ({err})")
    try:
        num_classes = int(metadata.get("num_classes", "0"))
        extra = json.loads(metadata.get("extra", "{}"))
    except ValueError:
        raise CCReIDError(f"weights file {path}: metadata is damaged (num_classes/extra)")
    return LoadedWeights(tensors, metadata.get("config"), num_classes, extra)


def save_state(path: str | Path, state: Dict[str, Any]) -> None:
    """Save optimizer/scheduler/epoch state (tensors and plain Python values only)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> Dict[str, Any]:
    """Load a state file without executing pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CCReIDError(f"state file {path} not found")
    except Exception as err:  # truncated or tampered files raise many types
        raise CCReIDError(f"state file {path} is damaged or not a ccreid state file ({type(err).__name__})")
