"""Resumable checkpoints: ``<out>/checkpoints/epoch-NNNN/{model.safetensors,state.pt}``.

A checkpoint folder is written under a temporary name and renamed when complete, so a
run killed at any moment leaves only whole checkpoints; the last ``keep`` (``train.keep_checkpoints``) are kept.
RNG states (Python, NumPy, torch, the CRE generator) are saved with the optimizer and
scheduler, so a resumed run continues exactly where the uninterrupted one would.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from ccreid.config import load_config, to_yaml
from ccreid.errors import CCReIDError
from ccreid.runs.checkpoint import STATE_NAME, WEIGHTS_NAME, load_state, load_weights, save_state, save_weights

CHECKPOINTS = "checkpoints"


def rng_state(generator: torch.Generator) -> Dict[str, Any]:
    """Every random state a training step draws from (tensors and plain values only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(), "generator": generator.get_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(epoch: int, batch: int = 0, iteration: int = 0) -> str:
    """``epoch-NNNN`` after ``epoch`` whole epochs; ``epoch-NNNN-iter-IIIIIIII`` when
    ``batch`` batches of the next epoch are done too (names sort in training order)."""
    return f"epoch-{epoch:04d}" + (f"-iter-{iteration:08d}" if batch else "")


def save_checkpoint(out: Path, epoch: int, model: torch.nn.Module, config_yaml: str, num_classes: int,
                    state: Dict[str, Any], keep: int) -> Path:
    """Write ``checkpoints/<checkpoint_name>`` atomically and prune older ones."""
    root = out / CHECKPOINTS
    name = checkpoint_name(epoch, state.get("batch", 0), state.get("iteration", 0))
    final = root / name
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_weights(tmp / WEIGHTS_NAME, model, config_yaml, num_classes, epoch=epoch)
        save_state(tmp / STATE_NAME, state)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    finally:  # a failed write (full disk) leaves no half checkpoint behind
        shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(root.glob("epoch-*"))[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: Path) -> Optional[Path]:
    """The newest complete checkpoint folder of a run, if any."""
    done = sorted(p for p in (out / CHECKPOINTS).glob("epoch-*") if (p / STATE_NAME).is_file())
    return done[-1] if done else None


def _readable(folder: Path) -> bool:
    """Whether both files of the checkpoint in ``folder`` load."""
    try:
        load_weights(folder / WEIGHTS_NAME)
        load_state(folder / STATE_NAME)
    except CCReIDError:
        return False
    return True


def _fallback(folder: Path) -> str:
    """What to do when the checkpoint in ``folder`` cannot be used: name the last readable one."""
    earlier = sorted((p for p in folder.parent.glob("epoch-*") if p.name < folder.name), reverse=True)
    good = next((p for p in earlier if _readable(p)), None)
    if good is not None:
        return f"delete {folder} to resume from the last good checkpoint, {good.name}"
    return "no earlier good checkpoint: train again with --overwrite (without --resume)"


def load_checkpoint(folder: Path, required: Sequence[str] = ()) -> tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Weights and state of a checkpoint folder (nothing pickled is executed).

    A missing or damaged file, weights without their config metadata, or a state without a
    key of ``required`` is a one-line :class:`CCReIDError` naming the file and the checkpoint
    to fall back on.
    """
    try:
        weights = load_weights(folder / WEIGHTS_NAME)
        if weights.config_yaml is None:
            raise CCReIDError(f"weights file {folder / WEIGHTS_NAME} has no config metadata")
        state = load_state(folder / STATE_NAME)
        missing = [key for key in required if key not in state]
        if missing:
            raise CCReIDError(f"state file {folder / STATE_NAME} lacks {', '.join(missing)}")
    except CCReIDError as err:
        raise CCReIDError(f"{err}; {_fallback(folder)}") from None
    return weights.state_dict, state


def same_config(out: Path, config_yaml: str) -> None:
    """``--resume``: the run's config must be the one ``out/config.yaml`` saved."""
    saved_cfg = out / "config.yaml"
    if not saved_cfg.is_file() or saved_cfg.read_text() == config_yaml:
        return
    try:  # config sections registered in this process since (a plug-in's) read as their defaults
        same = to_yaml(load_config(str(saved_cfg))) == config_yaml
    except CCReIDError:
        same = False
    if not same:
        raise CCReIDError(f"--resume: the config differs from {saved_cfg}; resume with the same config and overrides")
