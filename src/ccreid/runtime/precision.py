"""Is bf16 right on this machine? A check of a model's own layers at the run's input size.

Some CPU bf16 kernels are wrong for some shapes: oneDNN 3.12's AMX convolution (torch 2.14 on
Sapphire Rapids and later) returns wrong values or NaN, in the forward pass and in the
weight gradient, for a 3x3 stride-2 convolution whose output is one column wide (a
ResNet's layer4 entry on a 64x32 image with last stride 2); the same layer is right at
other sizes and on CPUs without AMX. ``train.amp=auto`` therefore picks bf16 only after
every convolution and linear layer of the model, at the run's batch and image size, has
agreed with float32 (forward and gradients) on random inputs.
"""

from __future__ import annotations

import copy
import logging
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.errors import CCReIDError

logger = logging.getLogger(__name__)

#: largest error allowed, relative to the largest float32 value (bf16 rounding stays below 1e-2)
TOLERANCE = 0.05

#: a layer at one input: (module, input shape, channels_last)
Probe = Tuple[nn.Module, Tuple[int, ...], bool]


def layer_inputs(model: nn.Module, example: torch.Tensor) -> Dict[str, Probe]:
    """Every convolution and linear layer of ``model`` with the input it gets from ``example``
    (one float32 forward of a training-mode copy, so the classifier layers run too)."""
    probes: Dict[str, Probe] = {}

    def record(name: str, module: nn.Module, x: torch.Tensor) -> None:
        probes.setdefault(name, (module, tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last)))

    twin = copy.deepcopy(model).train()
    hooks = [module.register_forward_hook(lambda m, inputs, _, name=name: record(name, m, inputs[0]))
             for name, module in twin.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            twin(example)
    finally:
        for hook in hooks:
            hook.remove()
    return probes


def _apply(module: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    bias = None if module.bias is None else module.bias.detach().to(weight.dtype)
    if isinstance(module, nn.Conv2d):
        return module._conv_forward(x, weight, bias)
    return F.linear(x, weight, bias)


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    error = (value.double() - reference.double()).abs().max() / reference.abs().max().clamp(min=1e-12)
    return float(error) if torch.isfinite(error) else float("inf")


def bf16_is_wrong(probe: Probe, backward: bool) -> bool:
    """Whether the layer's bf16 output (and, with ``backward``, its input and weight gradients)
    differ from float32 on the same bf16-rounded random input by more than :data:`TOLERANCE`."""
    module, shape, channels_last = probe
    generator = torch.Generator().manual_seed(0)
    weight = module.weight.detach()
    device = weight.device
    x = torch.randn(shape, generator=generator).to(device, torch.bfloat16)
    upstream = None
    results = []
    for dtype in (torch.bfloat16, torch.float32):
        xd, wd = x.to(dtype), weight.to(dtype)
        if channels_last:
            xd, wd = (t.contiguous(memory_format=torch.channels_last) for t in (xd, wd))
        xd.requires_grad_(backward)
        wd.requires_grad_(backward)
        with torch.autocast(device.type, enabled=False):
            out = _apply(module, xd, wd)
            if upstream is None:
                upstream = torch.randn(out.shape, generator=generator).to(device)
            grads = torch.autograd.grad(out, (xd, wd), upstream.to(dtype)) if backward else ()
        results.append((out.detach(), *grads))
    return any(_relative_error(a, b) > TOLERANCE for a, b in zip(*results))


def bf16_wrong_layers(model: nn.Module, example: torch.Tensor, backward: bool = True) -> List[str]:
    """Names of ``model``'s layers that bf16 gets wrong at ``example``'s size (each distinct
    layer shape is checked once)."""
    verdicts: Dict[tuple, bool] = {}
    wrong = []
    for name, (module, shape, channels_last) in layer_inputs(model, example).items():
        key = (repr(module), shape, channels_last)
        if key not in verdicts:
            verdicts[key] = bf16_is_wrong((module, shape, channels_last), backward)
        if verdicts[key]:
            wrong.append(name)
    return wrong


def _wrong_layers_text(wrong: List[str], example: torch.Tensor) -> str:
    size = "x".join(map(str, example.shape[-2:]))
    more = f" and {len(wrong) - 2} more" if len(wrong) > 2 else ""
    return (f"this CPU's bf16 kernels compute layer {', '.join(wrong[:2])}{more} wrongly at {size} images "
            "(a oneDNN bug; see docs/ERRORS.md)")


def checked_amp(model: nn.Module, example: torch.Tensor, requested: str, resolved: str) -> str:
    """``resolved`` (the ``train.amp`` in force) unless it is bf16 on a CPU whose bf16 kernels get
    a layer of ``model`` wrong at ``example``'s size: then ``auto`` trains in float32 (with a
    warning) and an explicit ``bf16`` is refused before any work."""
    if resolved != "bf16" or example.device.type != "cpu":
        return resolved
    wrong = bf16_wrong_layers(model, example)
    if not wrong:
        return resolved
    what = _wrong_layers_text(wrong, example)
    if requested == "auto":
        logger.warning("train.amp=auto: %s; training in float32", what)
        return "off"
    raise CCReIDError(f"config key 'train.amp': bf16 would train on wrong values: {what}; "
                      "use train.amp=off (or auto), or another data.height/data.width")


def require_right_bf16(model: nn.Module, example: torch.Tensor) -> None:
    """Extraction with ``--precision bf16`` on a CPU: refused where a bf16 kernel gets a layer of
    ``model`` wrong at ``example``'s size (forward only)."""
    if example.device.type != "cpu":
        return
    wrong = bf16_wrong_layers(model, example, backward=False)
    if wrong:
        raise CCReIDError(f"option --precision bf16: the features would be wrong: "
                          f"{_wrong_layers_text(wrong, example)}; use --precision fp32")
