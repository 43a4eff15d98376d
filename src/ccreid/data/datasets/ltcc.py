"""LTCC (Qian et al., ACCV 2020): ``LTCC_ReID/{train,query,test}/PID_CLOTHES_cCAM_FRAME.png``.

``test`` is the gallery. Camera ids 1..12 become 0..11; the outfit is (pid, CLOTHES),
CLOTHES being the person's own outfit number. Protocols: ``general`` and ``cc``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, NamePattern, ParsingIndex, dataset_root, find_base, make_dataset, mirror_bases, parse_folder,
    protocol, register, to_records, train_records,
)

LABEL = "LTCC"
SPLITS = ("train", "query", "test")
EXPECTED = "LTCC_ReID/{train,query,test}"
WRAPPERS = ("LTCC_ReID",)  # folders data.root may name around the splits
NAME = NamePattern(r"(\d+)_(\d+)_c(\d+)_\w+", "PID_CLOTHES_cCAM_FRAME.png (001_1_c11_015861.png)")


def _item(path: Path, groups: Tuple[str, ...]) -> Item:
    pid, clothes, cam = (int(g) for g in groups)
    return Item(path, pid, cam - 1, (pid, clothes))


@register("ltcc")
def load_ltcc(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    base = find_base(LABEL, root, SPLITS, EXPECTED, WRAPPERS)
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, WRAPPERS))
    items = {split: parse_folder(LABEL, base / split, base, NAME, _item) for split in SPLITS}
    train = train_records(items["train"], parsing)
    query, gallery = to_records([items["query"], items["test"]], parsing)
    protocols = {"general": protocol(query, gallery), "cc": protocol(query, gallery, "cc")}
    return Loaded(make_dataset("ltcc", cfg, parsing, train, protocols))
