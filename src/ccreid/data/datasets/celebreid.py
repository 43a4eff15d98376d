"""Celeb-reID and Celeb-reID-light (Huang et al., 2019): ``{train,query,gallery}/PID_A_B.jpg``.

PID is the person; A and B carry no clothes or camera meaning that the release documents.
No clothes labels and no camera ids exist: as the CAL-style loaders, the outfit key is
(PID, A), which is unique per image, so every image is its own outfit; query images get
camera 0 and gallery images camera 1, so no same-identity gallery image is discarded (as
the PS and CCUP loaders). Protocol: ``general`` only (clothes-based protocols are
undefined); ``data check`` says so.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, NamePattern, ParsingIndex, dataset_root, find_base, make_dataset, mirror_bases, parse_folder,
    protocol, register, to_records, train_records,
)

SPLITS = ("train", "query", "gallery")
NAME = NamePattern(r"(\d+)_(\d+)_(\d+)", "PID_A_B.jpg, three underscore-separated numbers (1_1_0.jpg)")
SPLIT_CAMERA = {"train": 0, "query": 0, "gallery": 1}


def _item(camid: int, path: Path, groups: Tuple[str, ...]) -> Item:
    pid, a = int(groups[0]), int(groups[1])
    return Item(path, pid, camid, (pid, a))


def _loader(name: str, label: str, folder: str) -> Callable[[DataConfig], Loaded]:
    def load(cfg: DataConfig) -> Loaded:
        root = dataset_root(label, cfg.root)
        base = find_base(label, root, SPLITS, f"{folder}/{{train,query,gallery}}", wrappers=(folder,))
        parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, (folder,)))
        items = {split: parse_folder(label, base / split, base, NAME, partial(_item, SPLIT_CAMERA[split]))
                 for split in SPLITS}
        train = train_records(items["train"], parsing)
        query, gallery = to_records([items["query"], items["gallery"]], parsing)
        note = (f"{label}: no clothes labels exist (each image is its own outfit) and no cameras "
                f"(query and gallery count as two); general protocol only")
        return Loaded(make_dataset(name, cfg, parsing, train, {"general": protocol(query, gallery)}), [note])

    return load


load_celebreid = register("celebreid")(_loader("celebreid", "Celeb-reID", "Celeb-reID"))
load_celebreid_light = register("celebreid_light")(_loader("celebreid_light", "Celeb-reID-light", "Celeb-reID-light"))
