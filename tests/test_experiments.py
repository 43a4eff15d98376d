"""Several presets x seeds (`ccreid demo` / `ccreid ablation`): worker processes, failures."""

import json

import pytest
from safetensors.torch import load_file

from ccreid.commands.experiments import run_presets
from ccreid.config import load_config
from ccreid.errors import CCReIDError
from tiny_run import TINY


def tiny_config(tmp_path, *extra):
    return load_config("synthetic", [*TINY, f"data.root={tmp_path / 'synthetic'}", *extra])


def test_worker_processes_render_the_dataset_once_and_match_a_sequential_run(tmp_path):
    # The dataset does not exist yet: two workers must not both render it.
    summary = run_presets(tiny_config(tmp_path), ["baseline", "ours"], [0], tmp_path / "pool", "t", jobs=2)
    assert set(summary["presets"]) == {"baseline", "ours"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool", "synthetic"]  # no leftover render folders
    run_presets(tiny_config(tmp_path), ["ours"], [0], tmp_path / "one", "t")
    pooled = load_file(tmp_path / "pool" / "ours" / "seed0" / "model.safetensors")
    alone = load_file(tmp_path / "one" / "ours" / "seed0" / "model.safetensors")
    assert all(pooled[k].equal(alone[k]) for k in alone)
    assert json.loads((tmp_path / "pool" / "results.json").read_text())["presets"]["ours"] == \
        json.loads((tmp_path / "one" / "results.json").read_text())["presets"]["ours"]


def test_a_failed_worker_run_raises_its_own_error(tmp_path):
    cfg = tiny_config(tmp_path, f"model.pretrained={tmp_path / 'missing.pth'}")
    with pytest.raises(CCReIDError, match="missing.pth"):
        run_presets(cfg, ["baseline"], [0, 1, 2, 3], tmp_path / "out", "t", jobs=2)
    assert not (tmp_path / "out" / "results.json").exists()
