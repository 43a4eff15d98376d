"""train.amp=auto picks bf16 only where this machine's bf16 kernels compute the model's layers right."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from ccreid.errors import CCReIDError
from ccreid.runtime.precision import bf16_wrong_layers, checked_amp


class WrongInBf16(nn.Conv2d):
    """A convolution whose bf16 kernel returns NaN, like oneDNN 3.12's AMX kernel at some shapes."""

    def _conv_forward(self, x, weight, bias):
        out = super()._conv_forward(x, weight, bias)
        return out * float("nan") if out.dtype == torch.bfloat16 else out


def tiny_net(conv: type = nn.Conv2d) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), conv(8, 8, 3, stride=2, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_a_layer_that_bf16_gets_wrong_is_named() -> None:
    example = torch.zeros(2, 3, 16, 8)
    assert bf16_wrong_layers(tiny_net(), example) == []
    assert bf16_wrong_layers(tiny_net(WrongInBf16), example) == ["2"]


def test_auto_falls_back_to_float32_and_explicit_bf16_is_refused(caplog) -> None:
    net, example = tiny_net(WrongInBf16), torch.zeros(2, 3, 16, 8)
    with caplog.at_level(logging.WARNING):
        assert checked_amp(net, example, "auto", "bf16") == "off"
    assert "layer 2 wrongly at 16x8 images" in caplog.text and "training in float32" in caplog.text
    with pytest.raises(CCReIDError, match="config key 'train.amp': bf16 would train on wrong values.*train.amp=off"):
        checked_amp(net, example, "bf16", "bf16")
    assert checked_amp(net, example, "off", "off") == "off"
    assert checked_amp(tiny_net(), example, "auto", "bf16") == "bf16"


def _wrong_against_float64(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """The bf16 forward and gradients of ``conv`` against float64, written out directly."""
    upstream = None
    results = []
    for dtype in (torch.bfloat16, torch.float64):
        xd = x.to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
        wd = conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
        out = torch.nn.functional.conv2d(xd, wd, stride=2, padding=1)
        upstream = torch.ones_like(out, dtype=torch.float64) if upstream is None else upstream
        results.append([out, *torch.autograd.grad(out, (xd, wd), upstream.to(dtype))])
    return any(not bool(((a.double() - b).abs().max() <= 0.05 * b.abs().max())) for a, b in zip(*results))


def test_the_verdict_on_this_machine_matches_float64() -> None:
    """The layer oneDNN 3.12's AMX kernel gets wrong (3x3 stride 2, one output column): the check
    says wrong exactly where a float64 reference disagrees, whatever CPU runs the test."""
    torch.manual_seed(0)
    conv = nn.Conv2d(256, 512, 3, stride=2, padding=1, bias=False).to(memory_format=torch.channels_last)
    example = torch.randn(2, 256, 4, 2).to(torch.bfloat16).float().contiguous(memory_format=torch.channels_last)
    assert (bf16_wrong_layers(conv, example) == [""]) == _wrong_against_float64(conv, example)


def test_bf16_extraction_is_refused_where_a_layer_is_wrong() -> None:
    from ccreid.inference.backends import TorchNet
    from ccreid.runtime.precision import require_right_bf16

    example = torch.zeros(2, 3, 16, 8)
    with pytest.raises(CCReIDError, match="option --precision bf16: the features would be wrong.*--precision fp32"):
        require_right_bf16(tiny_net(WrongInBf16), example)
    net = TorchNet(tiny_net(), torch.device("cpu"), "bf16")
    assert net(example).shape == (2, 4) and net.bf16_checked
