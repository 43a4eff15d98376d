"""Checkpoints: weights as safetensors (with the config as metadata) + a small state file.

Nothing here unpickles code: weights load with safetensors, the state file with
``torch.load(weights_only=True)``. Every file is written atomically; a missing, truncated or
tampered file is a one-line :class:`CCReIDError` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ccreid.errors import CCReIDError, first_line
from ccreid.files import EMPTY, PICKLE, SAFETENSORS, TORCH_ZIP, describe_format, require_file, weights_format
from ccreid.models.weights import count_names
from ccreid.runtime.io import atomic_path

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "state.pt"
REDO = "re-download it or retrain"


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


PASS_WEIGHTS = "pass the model.safetensors of a training run (or its folder)"
#: where a PyTorch checkpoint passed as ccreid weights belongs instead
TORCH_FILE_TODO = ("a backbone's .pth goes to model.pretrained, an SCHP checkpoint to data.parsing.weights "
                   "or ccreid parse")


def _weights_path(path: Path) -> Path:
    """``path``, or a run folder's ``model.safetensors``; one-line errors for anything else."""
    if path.is_dir():
        if not (path / WEIGHTS_NAME).is_file():
            raise CCReIDError(f"weights file {path}: a folder without {WEIGHTS_NAME}; {PASS_WEIGHTS}")
        path = path / WEIGHTS_NAME
    path = require_file(path, "weights file", PASS_WEIGHTS)
    kind = weights_format(path)
    if kind in (TORCH_ZIP, PICKLE):
        raise CCReIDError(f"weights file {path}: {describe_format(kind)}, not a ccreid model.safetensors; "
                          f"{PASS_WEIGHTS} ({TORCH_FILE_TODO})")
    if kind == EMPTY:
        raise CCReIDError(f"weights file {path}: {describe_format(kind)}; {REDO}")
    if kind != SAFETENSORS:
        raise CCReIDError(f"weights file {path} is damaged or not a safetensors file (no safetensors header); {REDO}")
    return path


def load_weights(path: str | Path) -> LoadedWeights:
    """Read a ccreid ``.safetensors`` checkpoint; a missing or damaged file is a one-line error."""
    path = _weights_path(Path(path))
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors, OS and torch errors for truncated or tampered files
        raise CCReIDError(f"weights file {path} is damaged ({type(err).__name__}: {first_line(err)}); {REDO}")
    if "num_classes" not in metadata:
        raise CCReIDError(f"weights file {path} has no ccreid metadata (num_classes); pass a model.safetensors "
                          "written by ccreid train")
    try:
        num_classes = int(metadata["num_classes"])
        extra = json.loads(metadata.get("extra", "{}"))
    except ValueError:
        raise CCReIDError(f"weights file {path}: metadata is damaged (num_classes/extra); {REDO}")
    return LoadedWeights(tensors, metadata.get("config"), num_classes, extra)


def restore_weights(model: nn.Module, state_dict: Dict[str, torch.Tensor], path: str | Path) -> None:
    """``model.load_state_dict(state_dict)``; missing, unexpected or reshaped tensors are a one-line error."""
    own = model.state_dict()
    problems = {
        "missing": [k for k in own if k not in state_dict],
        "unexpected": [k for k in state_dict if k not in own],
        "other shape": [k for k in own if k in state_dict and state_dict[k].shape != own[k].shape],
    }
    found = [count_names(kind, keys) for kind, keys in problems.items() if keys]
    if found:
        raise CCReIDError(f"weights file {path} does not fit the model: {'; '.join(found)}; was it trained with "
                          "other model.backbone / model.preset / model.width_mult settings?")
    model.load_state_dict(state_dict)


def save_state(path: str | Path, state: Dict[str, Any]) -> None:
    """Save optimizer/scheduler/epoch state (tensors and plain Python values only)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> Dict[str, Any]:
    """Load a state file without executing pickled code; a damaged file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CCReIDError(f"state file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or tampered files raise many types; never unpickle code
        raise CCReIDError(f"state file {path} is damaged or not a ccreid state file ({type(err).__name__}); {REDO}")
    if not isinstance(state, dict):
        raise CCReIDError(f"state file {path} holds a {type(state).__name__}, not a ccreid state dict; {REDO}")
    return state
