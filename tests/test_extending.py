"""docs/EXTENDING.md's BoT center-loss plug-in, run as a user would: its own config section, two batch
transforms, a second optimizer, an after-backward and a per-epoch hook; trains, resumes bit-identically
after kill -9, tests, and tests and exports after its file moved (with the override)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_resume import assert_same_run, data, kill_once, train_args  # noqa: F401  (data: a fixture)

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
def test_documented_center_loss_plugin_trains_resumes_tests_and_exports(tmp_path, data):
    plugin = tmp_path / "center.py"
    plugin.write_text(documented_plugin())
    full, victim = tmp_path / "full", tmp_path / "killed"
    with ThreadPoolExecutor(1) as pool:  # the full run and the run to kill, each in its process, at once
        killed = pool.submit(kill_once, victim, train_args(victim, data) + _extra(plugin), "epoch-0002-iter")
        ccreid(*train_args(full, data), *_extra(plugin))
        killed.result()
    steps = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines() if '"center"' in x]
    assert steps and all(s["center"] > 0 and s["num_erased"] > 0 for s in steps)  # CRE, then the grayscale
    assert "weight: 0.01" in (full / "config.yaml").read_text()  # the plug-in's section is saved with the run

    ccreid(*train_args(victim, data), *_extra(plugin), "--resume")
    assert_same_run(full, victim)

    moved = tmp_path / "moved" / "center.py"
    moved.parent.mkdir()
    plugin.rename(moved)
    weights = str(full / "model.safetensors")
    commands = [("test", "--weights", weights, "--out", str(tmp_path / "t"), "--quiet", "--no-report",
                 f"plugins=[{moved}]"),
                ("export", "onnx", "--weights", weights, "--out", str(tmp_path / "m.onnx"), "--plugins", str(moved))]
    with ThreadPoolExecutor(2) as pool:  # both at once (neither reads what the other writes)
        list(pool.map(lambda args: ccreid(*args), commands))


def test_the_plugins_config_section_is_checked_like_the_built_in_ones(tmp_path):
    """A new process (this one may hold the section from another file already)."""
    plugin = tmp_path / "center.py"
    plugin.write_text(documented_plugin())
    args = train_args(tmp_path / "run", tmp_path / "synthetic") + [f"plugins=[{plugin}]", "loss.center.gray_p=2"]
    done = ccreid(*args, code=2)
    assert "loss.center.gray_p" in done.stderr and "Traceback" not in done.stderr
