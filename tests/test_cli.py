"""The command line: help on every sub-command, synth, data check, one-line errors."""

import json

import pytest

from ccreid.cli import build_parser, main

COMMANDS = ["synth", "train", "test", "demo", "ablation", "eval", "extract", "index", "search", "report",
            "viz actmap", "viz attention", "viz ranks", "viz cmc", "viz curves", "export onnx", "data check", "parse"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert "usage: ccreid " + command in capsys.readouterr().out


def test_parser_lists_commands():
    text = build_parser().format_help()
    for command in {c.split()[0] for c in COMMANDS}:
        assert command in text


def test_synth_writes_and_reuses(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path / "s"), "--ids", "8", "--outfits", "2", "--images-per-outfit", "1",
            "--size", "64x32", "--quiet"]
    assert main(args) == 0
    assert (tmp_path / "s" / "manifest.csv").is_file()
    assert main(args) == 0  # cached
    assert main(args[:-1] + ["--seed", "9", "--quiet"]) == 2
    assert main(["synth", "--out", str(tmp_path / "t"), "--size", "big"]) == 2
    err = capsys.readouterr().err
    assert "other options" in err and "--size" in err and "Traceback" not in err


def test_data_check_json_and_unusable(tmp_path, capsys):
    main(["synth", "--out", str(tmp_path / "s"), "--ids", "8", "--outfits", "2", "--images-per-outfit", "1",
          "--size", "64x32", "--quiet"])
    capsys.readouterr()
    (tmp_path / "prcc").mkdir()
    assert main(["data", "check", "--dataset", "prcc", "--root", str(tmp_path / "prcc")]) == 2
    assert "PRCC" in capsys.readouterr().err
    rows = (tmp_path / "s" / "manifest.csv").read_text().splitlines()
    keep = {"train": "train", "gallery": "gallery", "query_sc": "query", "query_cc": "query"}
    lines = ["path,pid,camid,clothes_id,split,parsing_path"]
    for row in rows[1:]:
        path, pid, cam, clothes, split, parsing = row.split(",")
        if split in keep:
            lines.append(",".join([path, pid, cam, clothes, keep[split], parsing]))
    (tmp_path / "s" / "custom.csv").write_text("\n".join(lines) + "\n")
    assert main(["data", "check", "--dataset", "custom", "--root", str(tmp_path / "s" / "custom.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"dataset", "train", "protocols", "parsing", "problems"}
    assert report["train"]["ids"] == 4 and report["parsing"]["missing"] == 0
    assert report["parsing"]["found"] == len(lines) - 1


def test_ablation_never_replaces_an_earlier_one(tmp_path, capsys):
    out = tmp_path / "ablation"
    out.mkdir()
    (out / "results.json").write_text('{"presets": {}}')
    assert main(["ablation", "--out", str(out), "--seeds", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.json").read_text() == '{"presets": {}}'
