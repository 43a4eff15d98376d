"""Every write failure is one line: the path, the cause in plain words and what to do; earlier
files stay intact and no temporary file is left. Full and read-only disks are small tmpfs mounts
(skipped, with the reason, where this process may not mount)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from ccreid.cli import main
from test_viz_common import make_train_run, write_dataset

TINY = ["-c", "synthetic", "--quiet", "--no-report", "data.name=custom", "data.height=64", "data.width=32",
        "data.workers=0", "data.ids_per_batch=2", "data.images_per_id=2", "model.backbone=resnet18",
        "model.width_mult=0.25", "model.pretrained=none", "train.epochs=2", "train.device=cpu", "train.amp=off",
        "train.threads=1", "test.batch_size=16"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"))


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A small tmpfs at ``path`` for the block (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): needs root in a VM")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_out_below_a_file(manifest, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["train", *TINY, f"data.root={manifest}", "--out", str(afile / "run")]) == 2
    err = capsys.readouterr().err
    assert "a part of the path is a file, not a folder" in err and "Traceback" not in err
    assert afile.read_text() == "mine"


def test_full_disk_while_checkpointing(manifest, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "size=96k") as disk:
        assert main(["train", *TINY, f"data.root={manifest}", "--out", str(disk / "run")]) == 2
        err = capsys.readouterr().err
        assert "no space left on device" in err and "free some space" in err and "Traceback" not in err
        assert not list(disk.rglob("*.tmp")) and "unexpected pos" not in err


def test_read_only_disk(manifest, tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as disk:
        assert main(["train", *TINY, f"data.root={manifest}", "--out", str(disk / "run")]) == 2
        err = capsys.readouterr().err
        assert "read-only file system" in err and "choose a writable --out" in err and "Traceback" not in err
        run = make_train_run(tmp_path / "run", manifest)
        assert main(["test", "--weights", str(run / "model.safetensors"), "--out", str(disk / "t"), "--quiet"]) == 2
        assert "read-only file system" in capsys.readouterr().err
