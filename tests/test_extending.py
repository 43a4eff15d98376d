"""docs/EXTENDING.md's BoT center-loss plug-in, run as a user would: its own config section, two batch
transforms, a second optimizer, an after-backward and a per-epoch hook; trains, resumes bit-identically
after kill -9, tests, and tests and exports after its file moved (with the override)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_resume import assert_same_run, kill_once, train_args

MARKER = "<!-- tested: tests/test_extending.py -->"


def documented_plugin() -> str:
    text = (Path(__file__).resolve().parents[1] / "docs" / "EXTENDING.md").read_text()
    return text.split(MARKER, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def ccreid(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    """A ccreid command in a new process, as a user runs it (the plug-in's section stays out of this one)."""
    done = subprocess.run([sys.executable, "-m", "ccreid", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == code, done.stderr[-2000:]
    return done


def _extra(plugin: Path) -> list:
    return [f"plugins=[{plugin}]", "model.preset=ours+center", "loss.center.weight=0.01",
            "loss.center.warmup_epochs=2", "loss.center.gray_p=0.3", "train.checkpoint_every=0",
            "train.checkpoint_every_iters=2"]


@pytest.mark.timeout(400)
def test_documented_center_loss_plugin_trains_resumes_tests_and_exports(tmp_path):
    plugin = tmp_path / "center.py"
    plugin.write_text(documented_plugin())
    data, full = tmp_path / "synthetic", tmp_path / "full"
    ccreid(*train_args(full, data), *_extra(plugin))
    steps = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines() if '"center"' in x]
    assert steps and all(s["center"] > 0 and s["num_erased"] > 0 for s in steps)  # CRE, then the grayscale
    assert "weight: 0.01" in (full / "config.yaml").read_text()  # the plug-in's section is saved with the run

    victim = tmp_path / "killed"
    kill_once(victim, train_args(victim, data) + _extra(plugin), "epoch-0002-iter")
    ccreid(*train_args(victim, data), *_extra(plugin), "--resume")
    assert_same_run(full, victim)

    moved = tmp_path / "moved" / "center.py"
    moved.parent.mkdir()
    plugin.rename(moved)
    weights = str(full / "model.safetensors")
    ccreid("test", "--weights", weights, "--out", str(tmp_path / "t"), "--quiet", "--no-report", f"plugins=[{moved}]")
    ccreid("export", "onnx", "--weights", weights, "--out", str(tmp_path / "m.onnx"), "--plugins", str(moved))


def test_the_plugins_config_section_is_checked_like_the_built_in_ones(tmp_path):
    """A new process (this one may hold the section from another file already)."""
    plugin = tmp_path / "center.py"
    plugin.write_text(documented_plugin())
    args = train_args(tmp_path / "run", tmp_path / "synthetic") + [f"plugins=[{plugin}]", "loss.center.gray_p=2"]
    done = ccreid(*args, code=2)
    assert "loss.center.gray_p" in done.stderr and "Traceback" not in done.stderr
