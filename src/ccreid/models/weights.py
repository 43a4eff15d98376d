"""Pretrained weights (already read): unwrap, map keys onto a backbone, report.

Reading files and downloads live in :mod:`ccreid.training.pretrained`. The tensors may be a
torchvision or timm state dict (ResNets use the same names in both: ``conv1``, ``bn1``,
``layer1``..``layer4``, ``fc``); containers such as ``{"state_dict": ...}`` / ``{"model": ...}``
and prefixes such as ``module.`` are removed (:func:`state_tensors`).

The :class:`LoadReport` (a plain dict, ready to log) lists full key names:

- ``source``: the file (or weight set) read;
- ``loaded``: backbone keys copied from the file;
- ``missing``: backbone keys the file lacks (they keep their random init);
- ``unexpected``: file keys the backbone does not have;
- ``mismatched``: keys present in both with different shapes (skipped);
- ``ignored``: classifier keys of the file (``fc.*``, ``classifier.*``, ``head.*``), unused by design.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, TypedDict

import torch
from torch import nn

from ccreid.errors import CCReIDError

#: Checkpoint key prefixes removed before matching (DataParallel, re-ID codebases).
STRIP_PREFIXES = ("module.", "backbone.", "model.", "base.")
#: Container keys a training checkpoint may wrap its state dict under.
CONTAINERS = ("state_dict", "model", "model_state_dict")
#: ImageNet classifier keys: never part of a re-ID backbone.
CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.")


class LoadReport(TypedDict):
    """What loading weights into a backbone matched (see the module docstring)."""

    source: str
    loaded: List[str]
    missing: List[str]
    unexpected: List[str]
    mismatched: List[str]
    ignored: List[str]


def count_names(kind: str, names: List[str], first: int = 3) -> str:
    """``"5 missing (a, b, c, ...)"``: a count and the first few names, for one-line messages."""
    return f"{len(names)} {kind} ({', '.join(names[:first])}{', ...' if len(names) > first else ''})"


def summarize(report: LoadReport) -> str:
    """One log line: how many tensors loaded, and count + first names of every other non-empty list."""
    parts = [f"{len(report['loaded'])} tensors loaded from {report['source']}"]
    for kind in ("missing", "unexpected", "mismatched", "ignored"):
        if report[kind]:  # type: ignore[literal-required]
            parts.append(count_names(kind, report[kind]))  # type: ignore[literal-required]
    return "; ".join(parts)


def _canonical_key(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def state_tensors(obj: object) -> Dict[str, torch.Tensor]:
    """The tensors of a (possibly wrapped) state dict, under canonical key names."""
    while isinstance(obj, Mapping) and any(isinstance(obj.get(k), Mapping) for k in CONTAINERS):
        obj = next(obj[k] for k in CONTAINERS if isinstance(obj.get(k), Mapping))
    if not isinstance(obj, Mapping):
        return {}
    return {_canonical_key(str(k)): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_state_into(module: nn.Module, tensors: Mapping[str, torch.Tensor], source: str, arch: str) -> LoadReport:
    """Copy the tensors whose name and shape match ``module``'s; report the rest.

    Raises :class:`CCReIDError` when nothing matched (wrong architecture or not weights).
    """
    own = module.state_dict()
    report = LoadReport(source=source, loaded=[], missing=[], unexpected=[], mismatched=[], ignored=[])
    matched = {}
    for key, value in tensors.items():
        if key in own and own[key].shape == value.shape:
            matched[key] = value
        elif key in own:
            report["mismatched"].append(key)
        elif key.startswith(CLASSIFIER_PREFIXES):
            report["ignored"].append(key)
        else:
            report["unexpected"].append(key)
    if not matched:
        raise CCReIDError(
            f"config key 'model.pretrained': no backbone weights matched in {source}; expected a torchvision/timm "
            f"{arch} state dict (its first keys: {', '.join(list(tensors)[:3]) or 'none'})"
        )
    module.load_state_dict(matched, strict=False)
    report["loaded"] = sorted(matched)
    report["missing"] = sorted(k for k in own if k not in matched and not k.endswith("num_batches_tracked"))
    return report
