"""`ccreid train` with data.parsing.weights: every check before any parsing, the training split parsed
first, and the same weights whether the maps were parsed in the same process or were already there."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from safetensors.torch import load_file

from ccreid.cli import main
from ccreid.parsing import HumanParser, dataset_items
from test_parsing_datasets import _people, parse_train_args as _train_args




@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache and no network."""
    def no_network(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr("ccreid.training.pretrained.load_state_dict_from_url", no_network)


@pytest.fixture
def no_parsing(monkeypatch):
    def parse(*args, **kwargs):
        raise AssertionError("parsing started before every check passed")

    monkeypatch.setattr(HumanParser, "from_checkpoint", parse)


def test_offline_imagenet_fails_before_any_parsing(tmp_path, schp_checkpoint, offline, no_parsing, capsys):
    imagenet = ["model.pretrained=imagenet", "model.width_mult=1"]
    lip, atr = schp_checkpoint("lip"), schp_checkpoint("atr")
    assert main(_train_args(tmp_path, *imagenet, f"data.parsing.weights={lip}")) == 2
    assert "config key 'model.pretrained': cannot download" in capsys.readouterr().err
    assert not (tmp_path / "maps").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()
    # the pretrained weights come before the parsing checkpoint, which comes before the dataset layout
    assert main(_train_args(tmp_path, *imagenet, f"data.parsing.weights={atr}")) == 2
    assert "cannot download" in capsys.readouterr().err
    assert main(_train_args(tmp_path, f"data.parsing.weights={atr}", f"data.root={tmp_path / 'nowhere.csv'}")) == 2
    assert "is an SCHP atr checkpoint but data.parsing.labels=lip" in capsys.readouterr().err


def test_training_images_are_parsed_first(tmp_path):
    manifest = _people(tmp_path / "people")
    items = dataset_items("custom", manifest, tmp_path / "maps")
    split = [Path(item.image).parent.name for item in items]
    assert split == ["train"] * 12 + ["test"] * 6  # sorted paths alone would put test/ first


def test_parsing_in_process_leaves_the_training_randomness_alone(tmp_path, parsed_run):
    """``parsed_run`` (conftest): ``_train_args`` with the LIP weights, its maps parsed in that process."""
    first = parsed_run / "run"
    assert len(list((parsed_run / "maps").rglob("*.png"))) == 18
    again = tmp_path / "again"  # its config.yaml, the maps there now
    assert main(["train", "-c", str(first / "config.yaml"), "--out", str(again), "--quiet", "--no-report"]) == 0
    parsed, present = load_file(first / "model.safetensors"), load_file(again / "model.safetensors")
    assert parsed.keys() == present.keys()
    assert all(torch.equal(parsed[key], present[key]) for key in parsed)
