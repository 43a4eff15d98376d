"""The command line's own behaviour: overrides anywhere, stray arguments, numeric bounds, --device,
Ctrl-C, out of memory, a closed pipe, tables at 120 columns, a plug-in calling sys.exit."""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from ccreid import cli
from ccreid.cli import build_parser, main, parse_args
from ccreid.methods.paper import ABLATION
from tiny_run import TINY

SRC = Path(__file__).resolve().parents[1] / "src"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "usage:" not in err, err
    return err


@pytest.mark.parametrize("command", [["train", "-c", "synthetic", "--out", "o"], ["test", "--weights", "w", "--out", "o"],
                                     ["extract", "--weights", "w", "--protocol", "cc", "--out", "o.npz"],
                                     ["demo", "--quick"], ["ablation", "--presets", "baseline", "ours"]])
def test_overrides_anywhere_keep_their_order(command):
    name, *options = command
    argv = [name, "a.b=0", *options[:2], "c.d=[1,2]", *options[2:], "plugins=[x.py]", "--quiet", "a.b=3"]
    args = parse_args(argv)
    assert args.overrides == ["a.b=0", "c.d=[1,2]", "plugins=[x.py]", "a.b=3"]
    assert not any("=" in str(value) for key, value in vars(args).items() if key != "overrides")


def test_stray_arguments_are_one_line(capsys):
    assert main(["eval", "--features", "f.npz", "--bogus"]) == 2
    assert "ccreid eval: unrecognized argument '--bogus'; see ccreid eval --help" in one_line_error(capsys)
    assert main(["eval", "--features", "f.npz", "test.flip=false"]) == 2
    assert "takes no key=value overrides" in one_line_error(capsys)
    assert main(["train", "-c", "synthetic", "--out", "o", "train.epochs=1", "stray"]) == 2
    assert "override 'stray' must look like key=value" in one_line_error(capsys)


def _subparsers(parser):
    """Every leaf sub-command parser (``viz actmap`` included)."""
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for child in action.choices.values():
            yield from (_subparsers(child) if child._subparsers else [child])


#: numeric options whose range the command checks itself, before any work
CHECKED_BY_THE_COMMAND = {"--opset": "13..the newest opset the installed onnx knows (deploy.export_onnx)"}


def test_every_numeric_option_is_bounded():
    bounded = 0
    for parser in _subparsers(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.option_strings[-1] in CHECKED_BY_THE_COMMAND:
                continue
            assert action.type not in (int, float), f"{parser.prog} {action.option_strings} has no bounds"
            if hasattr(action.type, "bounds"):
                low, high = action.type.bounds
                flag = action.option_strings[-1]
                assert cli.span(low, high) in action.help
                too_big = str(high * 2 if isinstance(high, int) else "inf")
                with pytest.raises(cli.CCReIDError, match=f"option {flag}: {too_big} is out of range; use "):
                    action.type(too_big)
                assert action.type(str(low)) == low
                bounded += 1
    assert bounded >= 25


@pytest.mark.parametrize("argv, needle", [
    (["eval", "--features", "f.npz", "--single-gallery-shot", "1000000000"], "--single-gallery-shot: 1000000000 is "
                                                                             "out of range; use 0..1000"),
    (["eval", "--features", "f.npz", "--chunk", "inf"], "--chunk: inf is out of range; use 0.001..1048576"),
    (["extract", "--weights", "w", "--protocol", "cc", "--out", "o.npz", "--batch-size", "0"], "--batch-size: 0"),
    (["search", "--index", "i", "--features", "f.npz", "-k", "99999999"], "option -k: 99999999 is out of range"),
    (["synth", "--out", "s", "--size", "100000x64"], "--size: 100000x64 is out of range"),
    (["export", "onnx", "--weights", "w", "--out", "m.onnx", "--opset", "100000"], "--opset"),
])
def test_numeric_bounds_before_any_work(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in one_line_error(capsys)


DEVICE_COMMANDS = [["extract", "--weights", "w", "--protocol", "cc", "--out", "o.npz"],
                   ["search", "--index", "i", "--features", "f.npz"], ["parse", "--weights", "w", "--images", "i",
                                                                       "--out", "o"],
                   ["viz", "actmap", "--weights", "w", "--out", "o"], ["viz", "cmc", "--weights", "w", "--out", "o"],
                   ["report", "run"], ["data", "check", "--dataset", "prcc", "--root", "r"]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("argv", DEVICE_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_device_errors_name_the_option(argv, capsys):
    assert main([*argv, "--device", "cuda"]) == 2
    err = one_line_error(capsys)
    assert "option --device: cuda requested but no CUDA GPU is visible (use --device cpu)" in err
    assert "train.device" not in err
    assert main([*argv, "--device", "gpu7"]) == 2
    assert "option --device: unknown device 'gpu7'" in one_line_error(capsys)


@pytest.mark.parametrize("argv, target, error, needle", [
    (["eval", "--features", "f.npz"], "ccreid.commands.feature_eval.evaluate_feature_file",
     MemoryError("Unable to allocate 134. GiB"), "lower --chunk"),
    (["extract", "--weights", "w", "--protocol", "cc", "--out", "o.npz", "--batch-size", "4096"],
     "ccreid.commands.extraction.extract_to_file", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"),
     "lower --batch-size"),
    (["train", "-c", "synthetic", "--out", "o", "data.ids_per_batch=512"], "ccreid.engine.trainer.train",
     RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99999999 bytes"),
     "data.ids_per_batch x data.images_per_id"),
    (["test", "--weights", "w", "--out", "o", "test.batch_size=100000"], "ccreid.commands.tester.test_checkpoint",
     torch.OutOfMemoryError("CUDA out of memory."), "lower test.batch_size"),
    (["parse", "--weights", "w", "--images", "i", "--out", "o", "--batch", "1024", "--device", "cpu"],
     "ccreid.parsing.folder_items", RuntimeError("CUDA error: out of memory"), "lower --batch"),
])
def test_out_of_memory_names_what_to_lower(argv, target, error, needle, monkeypatch, tmp_path, capsys):
    def run_out(*args, **kwargs):
        raise error

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(target, run_out)
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"out of memory ({type(error).__name__}): " in err and needle in err


def test_other_runtime_errors_stay_bugs(monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr("ccreid.commands.feature_eval.evaluate_feature_file", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["eval", "--features", "f.npz"])


def _features(path: Path, queries: int, gallery: int = 50) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, qf=rng.standard_normal((queries, 8)).astype(np.float32),
             gf=rng.standard_normal((gallery, 8)).astype(np.float32), q_pids=np.arange(queries) % gallery,
             g_pids=np.arange(gallery), q_camids=np.zeros(queries, int), g_camids=np.ones(gallery, int))
    return path


def test_search_into_a_closed_pipe_exits_quietly(tmp_path):
    feats = _features(tmp_path / "f.npz", queries=3000)
    assert main(["index", "--features", str(feats), "--out", str(tmp_path / "g.index"), "--quiet"]) == 0
    command = [sys.executable, "-m", "ccreid", "search", "--index", str(tmp_path / "g.index"), "--features", str(feats)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONPATH": str(SRC)})
    assert proc.stdout.readline().strip() == b"{"  # `| head -1`: read a line, then leave
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read().decode().strip() == ""


def _interrupt_in_epoch(epoch: int):
    def log_line(record: dict) -> None:
        if record["epoch"] == epoch:
            raise KeyboardInterrupt

    return log_line


def test_ctrl_c_in_training_says_how_to_continue(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["train", "-c", "synthetic", "--out", str(out), "--no-report", *TINY, f"data.root={tmp_path / 'data'}",
            "train.epochs=2", "train.log_every=1"]
    monkeypatch.setattr(cli, "_log_line", _interrupt_in_epoch(1))
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted before the first checkpoint of {out}; start again with "
                   f"`ccreid {shlex.join(argv + ['--overwrite'])}`")
    monkeypatch.setattr(cli, "_log_line", _interrupt_in_epoch(2))
    assert main(argv + ["--overwrite"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"interrupted; continue {out} from its last checkpoint with `ccreid ")
    monkeypatch.setattr(cli, "_log_line", lambda record: None)
    again = shlex.split(err.split("`")[1])
    assert again == ["ccreid", *argv, "--resume"]
    assert main(again[1:] + ["--quiet"]) == 0 and (out / "model.safetensors").is_file()


def test_ctrl_c_elsewhere_is_a_short_line(monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ccreid.commands.feature_eval.evaluate_feature_file", interrupt)
    assert main(["eval", "--features", "f.npz"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_tables_fit_120_columns(tmp_path, monkeypatch, capsys):
    screen = Console(width=120, record=True, file=io.StringIO())
    monkeypatch.setattr(cli, "console", screen)
    row = {"rank1": 97.04, "rank5": 99.0, "mAP": 91.2, "mINP": 60.1, "rank1_std": 0.61, "rank5_std": 0.2,
           "mAP_std": 1.1, "mINP_std": 10.0}
    protocols = ("general", "sc", "cc", "sc_clothes", "cc_clothes")  # VC-Clothes' five
    cli.print_results({preset: {p: row for p in protocols} for preset in ABLATION},
                      "ablation on configs/synthetic.yaml (3 seeds, mean ± std)")
    feats = _features(tmp_path / "f.npz", queries=20)
    assert main(["eval", "--features", str(feats), "--roc", "--rerank", "--aqe", "--single-gallery-shot", "3"]) == 0
    text = screen.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 120
    for header in ("preset", "protocol", "top-1", "top-5", "mAP", "mINP", "top-10", "without match",
                   "TPR@FPR=1e-04", "negative pairs", "sc_clothes", "baseline+bctri", "97.0 ± 0.6", "60.1 ± 10.0"):
        assert header in text


@pytest.mark.parametrize("call", ["sys.exit()", "sys.exit(0)", "sys.exit('bye')"])
def test_a_plugin_calling_sys_exit_is_an_error(call, tmp_path, capsys):
    plugin = tmp_path / f"quits{len(call)}.py"
    plugin.write_text(f"import sys\n{call}\n")
    assert main(["train", "-c", "synthetic", "--out", str(tmp_path / "run"), f"plugins=[{plugin}]"]) == 2
    err = one_line_error(capsys)
    assert f"config key 'plugins': {plugin} called sys.exit(" in err and "remove that call" in err
    assert not (tmp_path / "run").exists()
