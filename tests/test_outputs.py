"""Nothing the user has is replaced by surprise: every writing command refuses existing results
without --overwrite, `ccreid test` never writes into a training run, one writer per run folder."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ccreid.cli import main
from ccreid.errors import CCReIDError
from ccreid.runs.outputs import LOCK_NAME, run_lock
from test_viz_common import make_train_run, write_dataset

QUIET = ["--quiet", "--no-report"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("outputs")
    manifest = write_dataset(folder / "data")
    return make_train_run(folder / "run", manifest), manifest


def train_args(out, manifest, *extra, quiet=True):
    """``ccreid train`` of a tiny ResNet-18 on the custom-manifest dataset of test_viz_common."""
    return ["train", "--out", str(out), "-c", "synthetic", *(QUIET if quiet else ["--no-report"]),
            "data.name=custom", f"data.root={manifest}", "data.height=64", "data.width=32", "data.workers=0",
            "data.ids_per_batch=2", "data.images_per_id=2", "model.backbone=resnet18", "model.width_mult=0.25",
            "model.pretrained=none", "train.device=cpu", "train.amp=off", "train.threads=1", *extra]


def one_line(capsys, *expected):
    err = capsys.readouterr().err
    assert all(e in err for e in expected) and "Traceback" not in err, err
    return err


def test_test_never_writes_into_a_training_run(run, capsys):
    folder, _ = run
    before = (folder / "results.json").read_bytes(), (folder / "config.yaml").read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["test", "--weights", str(folder / "model.safetensors"), "--out", str(folder), *QUIET, *extra]) == 2
        one_line(capsys, "holds a training run", str(folder / "test"))
    assert ((folder / "results.json").read_bytes(), (folder / "config.yaml").read_bytes()) == before


def test_second_test_needs_overwrite(run, tmp_path, capsys):
    folder, _ = run
    args = ["test", "--weights", str(folder / "model.safetensors"), "--out", str(tmp_path / "t"), *QUIET]
    assert main(args) == 0
    stamp = (tmp_path / "t" / "results.json").stat().st_mtime_ns
    assert main(args) == 2
    one_line(capsys, "already holds results (results.json)", "--overwrite")
    assert (tmp_path / "t" / "results.json").stat().st_mtime_ns == stamp
    assert main(args + ["--overwrite"]) == 0


def test_train_demo_and_ablation_keep_existing_results(run, tmp_path, capsys):
    folder, manifest = run
    held = tmp_path / "held"
    held.mkdir()
    (held / "results.json").write_text('{"presets": {}}')
    for command in (["train", "-c", "synthetic"], ["demo"], ["ablation"]):
        assert main([*command, "--out", str(held), *QUIET]) == 2
        one_line(capsys, f"{held} already holds results (results.json)")
    assert (held / "results.json").read_text() == '{"presets": {}}' and sorted(p.name for p in held.iterdir()) == \
        ["results.json"]


def test_extract_index_and_export_keep_existing_files(run, tmp_path, capsys):
    folder, _ = run
    weights = str(folder / "model.safetensors")
    feats, index, onnx = tmp_path / "f.npz", tmp_path / "g.index", tmp_path / "m.onnx"
    for path in (feats, index, onnx):
        path.write_bytes(b"mine")
    commands = [["extract", "--weights", weights, "--protocol", "cc", "--out", str(feats)],
                ["index", "--features", str(feats), "--out", str(index)],
                ["export", "onnx", "--weights", weights, "--out", str(onnx)]]
    for command in commands:
        assert main([*command, "--quiet"]) == 2
        one_line(capsys, "already exists", "--overwrite")
    assert all(p.read_bytes() == b"mine" for p in (feats, index, onnx))
    assert main(commands[0] + ["--quiet", "--overwrite"]) == 0 and feats.read_bytes() != b"mine"
    assert main(["extract", "--weights", weights, "--protocol", "cc", "--out", str(tmp_path), "--quiet"]) == 2
    one_line(capsys, "is a folder")


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, caplog):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{holder.pid}\n")
        with pytest.raises(CCReIDError, match=f"being written by process {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):  # the holder is gone: its stale lock is taken over, and said so
        assert (tmp_path / LOCK_NAME).read_text().strip() != str(holder.pid)
    assert "no longer running" in caplog.text and not (tmp_path / LOCK_NAME).exists()


def test_two_trainings_into_one_folder_one_is_refused(run, tmp_path, capsys):
    _, manifest = run
    out = tmp_path / "shared"
    args = train_args(out, manifest, "train.epochs=40")
    first = subprocess.Popen([sys.executable, "-m", "ccreid", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / LOCK_NAME).exists():
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        assert main(args) == 2
        one_line(capsys, f"being written by process {first.pid}")
    finally:
        first.kill()
        first.wait()


def test_a_failed_final_evaluation_is_finished_by_resume(run, tmp_path, capsys):
    import shutil

    _, manifest = run
    data = tmp_path / "data"
    shutil.copytree(manifest.parent, data)
    gallery = sorted((data / "images").glob("*_0_c1.png"))[-1]  # a test-split gallery image (read at the end)
    good = gallery.read_bytes()
    gallery.write_bytes(b"damaged")
    out = tmp_path / "run"
    args = train_args(out, data / "manifest.csv", "train.epochs=1", "train.checkpoint_every=0")
    assert main(args) == 2
    one_line(capsys, str(gallery), "`ccreid train --resume`", "without retraining")
    weights = (out / "model.safetensors").read_bytes()
    log = (out / "metrics.jsonl").read_text()
    gallery.write_bytes(good)
    assert main(args + ["--resume"]) == 0
    assert (out / "model.safetensors").read_bytes() == weights and (out / "metrics.jsonl").read_text() == log
    assert "cc" in json.loads((out / "results.json").read_text())["presets"]["baseline"]
    assert main(args + ["--resume"]) == 2
    one_line(capsys, "is a finished run", "ccreid test --weights", "--overwrite")


def test_resume_drops_a_partial_last_log_line_and_says_so(run, tmp_path, capsys):
    _, manifest = run
    out = tmp_path / "run"
    args = train_args(out, manifest, "train.epochs=2", "train.checkpoint_every=1", quiet=False)
    assert main(args + ["--quiet"]) == 0
    for name in ("model.safetensors", "state.pt", "results.json", "results.md"):
        (out / name).unlink()  # as if killed during epoch 2, after writing part of a log line
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "iter": 9, "lo')
    assert main(args + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "is damaged (a partial write?); dropped it" in err and "Traceback" not in err
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)


def test_parsing_labels_outside_the_label_set_are_counted_and_named(run, tmp_path, capsys):
    _, manifest = run
    args = train_args(tmp_path / "run", manifest, "train.epochs=1", "model.preset=baseline+bsga",
                      "data.parsing.labels=pascal", quiet=False)  # the maps are LIP (5, 9, 13): beyond Pascal's 0..6
    assert main(args) == 0
    err = " ".join(capsys.readouterr().err.split())  # the log handler wraps long lines
    assert "12 parsing map(s) hold labels outside data.parsing.labels=pascal (0..6), e.g." in err
    assert str(manifest.parent / "parsing") in "".join(err.split())


def test_a_damaged_saved_config_names_the_weights_file(run, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    folder, _ = run
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    metadata["config"] = metadata["config"].replace("data:", "data: [", 1)
    bad = tmp_path / "tampered.safetensors"
    save_file(load_file(str(folder / "model.safetensors")), str(bad), metadata=metadata)
    assert main(["test", "--weights", str(bad), "--out", str(tmp_path / "t"), "--quiet"]) == 2
    err = one_line(capsys, f"weights file {bad}: its saved config line", "cannot parse YAML")
    assert "/tmp" not in err.replace(str(tmp_path), "")  # no temporary copy named


def test_damaged_checkpoints_lead_to_overwrite_not_in_a_circle(run, tmp_path, capsys):
    _, manifest = run
    out = tmp_path / "run"
    args = train_args(out, manifest, "train.epochs=2", "train.checkpoint_every=1")
    assert main(args) == 0
    for name in ("model.safetensors", "state.pt", "results.json", "results.md"):
        (out / name).unlink()
    for weights in (out / "checkpoints").glob("epoch-*/model.safetensors"):
        weights.write_bytes(b"damaged")
    assert main(args) == 2
    one_line(capsys, "already holds a training run", "--overwrite")
    assert main(args + ["--resume"]) == 2
    one_line(capsys, "no earlier good checkpoint: train again with --overwrite")
    assert main(args + ["--overwrite"]) == 0
