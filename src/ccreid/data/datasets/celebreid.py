"""Celeb-reID and Celeb-reID-light (Huang et al., 2019): ``{train,query,gallery}/PID_IDX_X.jpg``.

PID is the person, IDX the image's number, X carries no meaning. No clothes labels and
no camera ids exist: as CAL-style loaders, every image is its own outfit (clothes key =
(PID, IDX)); query images get camera 0 and gallery images camera 1, so that no
same-identity gallery image is discarded (as the PS and CCUP loaders). Protocol:
``general`` only (clothes-based protocols are undefined).
"""

from __future__ import annotations

from typing import Callable

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, NamePattern, ParsingIndex, dataset_root, find_base, list_images, make_dataset,
    protocol, register, to_records, train_records,
)

SPLITS = ("train", "query", "gallery")
NAME = NamePattern(r"(\d+)_(\d+)_(\d+)", "PID_IDX_X.jpg, three underscore-separated numbers")
SPLIT_CAMERA = {"train": 0, "query": 0, "gallery": 1}


def _loader(name: str, label: str, folder: str) -> Callable[[DataConfig], Loaded]:
    def load(cfg: DataConfig) -> Loaded:
        root = dataset_root(label, cfg.root)
        base = find_base(label, root, SPLITS, f"{folder}/{{train,query,gallery}}", wrappers=(folder,))
        parsing = ParsingIndex(cfg.parsing.root, [root, base])
        items = {}
        for split in SPLITS:
            items[split] = []
            for path in list_images(label, base / split, base, NAME.expected):
                pid, index, _ = (int(g) for g in NAME.match(label, path, base))
                items[split].append(Item(path, pid, SPLIT_CAMERA[split], (pid, index)))
        train = train_records(items["train"], parsing)
        query, gallery = to_records([items["query"], items["gallery"]], parsing)
        note = (f"{label}: no clothes labels exist (each image is its own outfit) and no cameras "
                f"(query and gallery count as two); general protocol only")
        return Loaded(make_dataset(name, cfg, train, {"general": protocol(query, gallery)}), [note])

    return load


load_celebreid = register("celebreid")(_loader("celebreid", "Celeb-reID", "Celeb-reID"))
load_celebreid_light = register("celebreid_light")(_loader("celebreid_light", "Celeb-reID-light", "Celeb-reID-light"))
