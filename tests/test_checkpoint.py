"""Checkpoints never run pickled code; damaged files are one-line errors naming file and fallback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ccreid.errors import CCReIDError
from ccreid.models import build_model
from ccreid.runs.checkpoint import STATE_NAME, WEIGHTS_NAME, load_state, load_weights, restore_weights
from ccreid.runs.resume import load_checkpoint, save_checkpoint


class Evil:
    """Unpickling this would create ``path``: the tests assert it never does."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def tiny_model():
    return build_model(num_classes=3, backbone="resnet18", width_mult=0.125)


@pytest.fixture()
def run(tmp_path) -> Path:
    """A run folder with checkpoints epoch-0001 and epoch-0002 of a tiny model."""
    model = tiny_model()
    for epoch in (1, 2):
        save_checkpoint(tmp_path, epoch, model, "seed: 0\n", 3, {"epoch": epoch, "optimizer": {}}, keep=2)
    return tmp_path


def error(match: str, load, *args, **kwargs) -> str:
    with pytest.raises(CCReIDError, match=match) as err:
        load(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_round_trip(run) -> None:
    weights, state = load_checkpoint(run / "checkpoints" / "epoch-0002", required=("epoch", "optimizer"))
    assert state == {"epoch": 2, "optimizer": {}}
    model = tiny_model()
    restore_weights(model, weights, "model.safetensors")
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("damage", ["truncate", "flip_header", "random"])
def test_damaged_weights_name_the_file_and_the_last_good_checkpoint(run, damage: str) -> None:
    folder = run / "checkpoints" / "epoch-0002"
    path = folder / WEIGHTS_NAME
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_header":
        data[8:40] = bytes(b ^ 0xFF for b in data[8:40])
    else:
        data = bytearray(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    path.write_bytes(bytes(data))
    message = error(f"weights file {path} is damaged", load_checkpoint, folder)
    assert "re-download it or retrain" in message and f"delete {folder}" in message and "epoch-0001" in message


@pytest.mark.parametrize("damage", ["truncate", "random", "not_a_dict"])
def test_damaged_state_files(run, damage: str) -> None:
    folder = run / "checkpoints" / "epoch-0001"
    path = folder / STATE_NAME
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:50])
    elif damage == "random":
        path.write_bytes(bytes(range(256)) * 4)
    else:
        torch.save([1, 2], path)
    message = error(f"state file {path}", load_checkpoint, folder)
    assert "no earlier good checkpoint: train again with --overwrite (without --resume)" in message


def test_malicious_pickles_are_never_executed(run, tmp_path) -> None:
    marker = tmp_path / "pwned"
    folder = run / "checkpoints" / "epoch-0002"
    torch.save({"epoch": 2, "optimizer": Evil(str(marker))}, folder / STATE_NAME)
    error("not a ccreid state file .*UnpicklingError", load_checkpoint, folder)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"epoch": Evil(str(marker))}, protocol=2))
    error(f"state file {raw} is damaged", load_state, raw)
    (folder / WEIGHTS_NAME).write_bytes(pickle.dumps(Evil(str(marker)), protocol=2))
    error("a PyTorch checkpoint .torch.save., not a ccreid model.safetensors", load_weights, folder / WEIGHTS_NAME)
    assert not marker.exists()


def test_missing_files_metadata_and_tensors(run, tmp_path) -> None:
    folder = run / "checkpoints" / "epoch-0002"
    error(f"state file {folder / STATE_NAME} lacks best_state", load_checkpoint, folder, required=("best_state",))
    weights = load_weights(folder / WEIGHTS_NAME).state_dict
    save_file(weights, str(folder / WEIGHTS_NAME), metadata={"num_classes": "3"})
    error("has no config metadata; delete .*epoch-0001", load_checkpoint, folder)
    plain = tmp_path / "plain.safetensors"
    save_file(weights, str(plain))
    error(f"weights file {plain} has no ccreid metadata", load_weights, plain)
    first = run / "checkpoints" / "epoch-0001"
    (first / STATE_NAME).unlink()
    error(f"state file {first / STATE_NAME} not found; no earlier good checkpoint", load_checkpoint, first)
    error("weights file .*missing.safetensors: not found", load_weights, tmp_path / "missing.safetensors")
    del weights["head.bnneck.weight"]
    message = error("does not fit the model: 1 missing .head.bnneck.weight.", restore_weights, tiny_model(),
                    weights, "w.safetensors")
    assert "model.backbone" in message
