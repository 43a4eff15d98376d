"""Speed options: ``train.channels_last``, ``train.compile``, loader pinning."""

import json

import pytest
import torch

from ccreid.config import load_config
from ccreid.data.manager import DataManager
from ccreid.engine.trainer import train
from ccreid.errors import CCReIDError
from tiny_run import TINY as BASE

TINY = [*BASE, "model.preset=ours"]


def _losses(data, tmp_path, name, *overrides):
    cfg = load_config("synthetic", [f"data.root={data}", *TINY, *overrides])
    result = train(cfg, tmp_path / name)
    lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines], result.results


def test_channels_last_trains_like_the_default_layout(tiny_data, tmp_path):
    data = tiny_data()
    plain, plain_res = _losses(data, tmp_path, "plain", "train.channels_last=false")
    fast, fast_res = _losses(data, tmp_path, "fast", "train.channels_last=true")
    assert len(plain) == len(fast) > 1
    assert fast[0] == pytest.approx(plain[0], rel=1e-5)  # same weights, other conv kernels
    assert fast == pytest.approx(plain, rel=1e-2)  # Adam amplifies rounding differences a little
    for name, metrics in plain_res.items():
        assert fast_res[name]["mAP"] == pytest.approx(metrics["mAP"], abs=2.0)


@pytest.mark.parametrize("layout, channels_last", [("train.channels_last=true", True),
                                                   ("train.channels_last=false", False)])
def test_compile_wraps_the_training_forward(tiny_data, tmp_path, monkeypatch, layout, channels_last):
    data = tiny_data()
    compiled = []

    def fake_compile(module, **kwargs):  # inductor needs a C++ toolchain and minutes on CPU
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    losses, _ = _losses(data, tmp_path, "compiled", "train.compile=true", layout)
    assert len(compiled) == 1 and losses
    conv = compiled[0].backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) is channels_last


def test_loader_pins_memory_only_for_cuda(tiny_data):
    cfg = load_config("synthetic", [f"data.root={tiny_data()}", *TINY])
    assert DataManager(cfg, need_parsing=False).train_loader.pin_memory is False


@pytest.mark.parametrize("override", ["train.compile=maybe", "train.channels_last=auto", "train.sync_bn=yes please"])
def test_bad_option_values_name_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(CCReIDError, match=key):
        load_config("synthetic", [override])
