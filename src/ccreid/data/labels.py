"""Parsing label sets as data: which labels are clothes, which are the body (METHOD.md).

Background is label 0 in every set. ``lip`` (SCHP's LIP model, the synthetic dataset's
maps), ``atr`` and ``pascal`` (Pascal-Person-Part: no clothes classes) are built in; any other parser is described by a small YAML/JSON table
``{clothes: [...], body: [...]}`` passed by path wherever a label-set name is accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

import torch
import yaml

from ccreid.errors import CCReIDError, first_line
from ccreid.files import require_file


@dataclass(frozen=True)
class LabelSet:
    """A parser's label space split into clothes-relevant and biological labels."""

    name: str
    num_classes: int
    clothes: frozenset[int]
    body: frozenset[int]
    background: int = 0

    def __post_init__(self) -> None:
        if self.clothes & self.body:
            both = sorted(self.clothes & self.body)
            raise ValueError(f"label set {self.name}: labels {both} are both clothes and body")
        labels = self.clothes | self.body
        if self.background in labels:
            raise ValueError(f"label set {self.name}: background {self.background} listed as clothes or body")
        if labels and not (min(labels) >= 0 and max(labels) < self.num_classes):
            raise ValueError(f"label set {self.name}: labels must lie in 0..{self.num_classes - 1}")


LIP = LabelSet(
    name="lip",
    num_classes=20,
    clothes=frozenset({1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19}),
    body=frozenset({2, 13, 14, 15, 16, 17}),
)

ATR = LabelSet(
    name="atr",
    num_classes=18,
    clothes=frozenset({1, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17}),
    body=frozenset({2, 11, 12, 13, 14, 15}),
)

#: Pascal-Person-Part (SCHP's third model): body parts only, so BSGA can use it and CRE cannot.
PASCAL = LabelSet(name="pascal", num_classes=7, clothes=frozenset(), body=frozenset(range(1, 7)))

BUILTIN: dict[str, LabelSet] = {s.name: s for s in (LIP, ATR, PASCAL)}


def _int_list(value: object, key: str, path: Path) -> frozenset[int]:
    if not isinstance(value, list) or not all(type(v) is int and v > 0 for v in value):
        raise CCReIDError(f"label table {path}: '{key}' must be a list of positive integer labels (0 is background)")
    return frozenset(value)


def load_label_table(path: Union[str, Path]) -> LabelSet:
    """A user table ``{clothes: [...], body: [...]}`` (YAML or JSON) as a :class:`LabelSet`."""
    path = Path(path)
    try:
        text = path.read_text()
        table = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise CCReIDError(f"label table {path}: cannot read it ({first_line(err)})")
    if not isinstance(table, dict) or set(table) != {"clothes", "body"}:
        example = "{clothes: [1, 5], body: [2, 13]}"
        raise CCReIDError(f"label table {path}: expected exactly the keys 'clothes' and 'body', e.g. {example}")
    clothes = _int_list(table["clothes"], "clothes", path)
    body = _int_list(table["body"], "body", path)
    if clothes & body:
        both = sorted(clothes & body)
        raise CCReIDError(f"label table {path}: labels {both} are listed as both clothes and body")
    return LabelSet(name=path.stem, num_classes=max(clothes | body, default=0) + 1, clothes=clothes, body=body)


def get_label_set(name_or_path: Union[str, Path, LabelSet]) -> LabelSet:
    """``lip``, ``atr`` or the path of a user table (``data.parsing.labels``)."""
    if isinstance(name_or_path, LabelSet):
        return name_or_path
    key = str(name_or_path)
    if key.lower() in BUILTIN:
        return BUILTIN[key.lower()]
    if Path(key).exists():
        return load_label_table(require_file(key, "config key 'data.parsing.labels':", f"pass {', '.join(BUILTIN)} "
                                             "or a table file ({clothes: [...], body: [...]} in YAML or JSON)"))
    raise CCReIDError(
        f"data.parsing.labels: {key!r} is neither a built-in label set ({', '.join(BUILTIN)}) "
        "nor an existing table file ({clothes: [...], body: [...]} in YAML or JSON)"
    )


def clothes_mask(parsing: torch.Tensor, labels: Union[LabelSet, Iterable[int]]) -> torch.Tensor:
    """``Mc``: True where the label is clothes-relevant (``-1``, no map, gives False)."""
    ids = sorted(labels.clothes) if isinstance(labels, LabelSet) else sorted(int(v) for v in labels)
    return torch.isin(parsing, torch.tensor(ids, dtype=parsing.dtype, device=parsing.device))


def body_shape_mask(parsing: torch.Tensor) -> torch.Tensor:
    """``Ms``: the silhouette, every non-background pixel (``-1``, no map, gives False)."""
    return parsing > 0
