"""`ccreid data check` judges the run a config describes: exit 2 when `ccreid train` would refuse it
(training maps missing under the default data.parsing.missing, or no --parsing for a method that
reads maps), naming the `ccreid parse` command that fills the gap."""

from __future__ import annotations

from ccreid.cli import main
from test_datasets_common import write_png_map
from test_parsing_datasets import _custom


def _check(capsys, *args):
    status = main(["data", "check", "--quiet", *args])
    out = capsys.readouterr()
    return status, out.out + out.err


def _run(manifest, preset="ours"):
    return ["-c", "synthetic", "data.name=custom", f"data.root={manifest}", f"model.preset={preset}"]


def test_missing_training_maps_are_refused_with_the_parse_command(tmp_path, capsys):
    manifest = _custom(tmp_path / "mydata")
    maps = tmp_path / "maps"
    write_png_map(maps / "q1.png")  # a test map only: training still lacks every map
    status, text = _check(capsys, "--parsing", str(maps), *_run(manifest))
    assert status == 2 and "no problems found" not in text
    assert f"`ccreid parse --weights <SCHP .pth> --dataset custom --root {manifest} --out {maps}`" in text
    status, text = _check(capsys, "--parsing", str(maps), *_run(manifest, "baseline"))  # reads no maps
    assert status == 0
    status, text = _check(capsys, "--dataset", "custom", "--root", str(manifest), "--parsing", str(maps))
    assert status == 2 and "ccreid parse --weights" in text  # --parsing alone: the maps are meant to be read


def test_a_run_that_needs_maps_without_parsing_is_refused(tmp_path, capsys):
    manifest = _custom(tmp_path / "mydata")
    status, text = _check(capsys, *_run(manifest))
    assert status == 2 and "no problems found" not in text and "--parsing" in text
    assert f"ccreid parse --weights <SCHP .pth> --dataset custom --root {manifest} --out {manifest}-parsing" in text
    status, text = _check(capsys, "--dataset", "custom", "--root", str(manifest))  # no run described
    assert status == 0 and "no problems found" not in text and "not checked" in text


def test_a_run_that_parses_its_maps_first_is_not_refused(tmp_path, capsys, schp_checkpoint):
    manifest = _custom(tmp_path / "mydata")
    maps = tmp_path / "maps"
    status, text = _check(capsys, *_run(manifest), f"data.parsing.root={maps}",
                          f"data.parsing.weights={schp_checkpoint('lip')}")
    assert status == 0 and "`ccreid train` parses them" in text and not maps.exists()
    status, text = _check(capsys, *_run(manifest), f"data.parsing.root={maps}",
                          f"data.parsing.weights={schp_checkpoint('atr')}")
    assert status == 2 and "set data.parsing.labels=atr" in text
