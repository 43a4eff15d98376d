"""Inference-only transform: fold each eval-mode BatchNorm2d into the Conv2d that feeds it.

An eval-mode BatchNorm is an affine map per channel, so ``bn(conv(x))`` equals one
convolution with rescaled weights and a bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``).
The pairs are read from a ``torch.fx`` trace of the model (a conv is folded only when its
output goes to that BatchNorm and nowhere else); the model keeps its own modules and
``forward`` (the conv is replaced by the folded one, the BatchNorm by ``nn.Identity``), so
call signatures do not change. Parts fx cannot trace are looked into child by child.
Never apply it to a model that will train again: work on a copy.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Iterable, List, Tuple

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _default_args(module: nn.Module) -> Dict[str, Any]:
    """The forward's optional arguments at their defaults (fixed while tracing)."""
    params = list(inspect.signature(module.forward).parameters.values())[1:]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def conv_bn_pairs(module: nn.Module) -> List[Tuple[str, str]]:
    """``(conv, bn)`` submodule names of ``module`` (eval mode) where the BatchNorm2d's only input
    is the output of a Conv2d that nothing else reads; each module called once."""
    try:
        graph = fx.symbolic_trace(module, concrete_args=_default_args(module)).graph
    except Exception:  # fx cannot trace every model (data-dependent control flow ...): try the children
        return [(f"{name}.{conv}", f"{name}.{bn}") for name, child in module.named_children()
                for conv, bn in conv_bn_pairs(child)]
    calls = [node.target for node in graph.nodes if node.op == "call_module"]
    pairs = []
    for node in graph.nodes:
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not (isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1):
            continue
        conv, bn = module.get_submodule(source.target), module.get_submodule(node.target)
        if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None
                and calls.count(source.target) == 1 and calls.count(node.target) == 1):
            pairs.append((source.target, node.target))
    return pairs


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold, in place, each BatchNorm2d of :func:`conv_bn_pairs` into its Conv2d; returns ``model``.

    ``model`` must be in eval mode (the folded network computes the eval-mode forward)."""
    if model.training:
        raise ValueError("fold_batchnorm folds eval-mode BatchNorm: call model.eval() first")
    return fold_pairs(model, conv_bn_pairs(model))


def _identity(bn: nn.Module) -> nn.Module:
    return nn.Identity()


def fold_pairs(model: nn.Module, pairs: Iterable[Tuple[str, str]],
               replacement: Callable[[nn.Module], nn.Module] = _identity) -> nn.Module:
    """Fold, in place, each eval-mode BatchNorm of ``pairs`` (``(conv, bn)`` submodule names) into
    its Conv2d (``torch.nn.utils.fusion.fuse_conv_bn_eval``); the BatchNorm becomes
    ``replacement(bn)``: ``nn.Identity`` unless the BatchNorm did more (an activation, as
    :class:`ccreid.parsing.network.ABN` does). Returns ``model``."""
    for conv, bn in pairs:
        norm = model.get_submodule(bn)
        _replace(model, conv, fuse_conv_bn_eval(model.get_submodule(conv), norm))
        _replace(model, bn, replacement(norm))
    return model
