"""VC-Clothes (Wang et al., 2020): ``{train,query,gallery}/PID-CAM-CLOTHES-FRAME.jpg``.

Camera ids 1..4 become 0..3; the outfit is (pid, CLOTHES). Protocols (METHOD.md):
``general`` = all cameras; ``sc`` = query and gallery restricted to cameras 2 and 3;
``cc`` = restricted to cameras 3 and 4; each scored with the general rule (cameras 2/3
share clothes, 3/4 do not, by design). ``sc_clothes`` / ``cc_clothes`` apply the
clothes-id rules to all cameras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, NamePattern, ParsingIndex, camera_subset, dataset_root, find_base, make_dataset, mirror_bases,
    parse_folder, protocol, register, to_records, train_records,
)

LABEL = "VC-Clothes"
SPLITS = ("train", "query", "gallery")
EXPECTED = "{train,query,gallery}"
WRAPPERS = ("VC-Clothes",)  # folders data.root may name around the splits
NAME = NamePattern(r"(\d+)-(\d+)-(\d+)-(\d+)", "PID-CAM-CLOTHES-FRAME.jpg (0001-01-01-01.jpg)")
SC_CAMERAS = (1, 2)  # cameras 2 and 3
CC_CAMERAS = (2, 3)  # cameras 3 and 4


def _item(path: Path, groups: Tuple[str, ...]) -> Item:
    pid, cam, clothes, _ = (int(g) for g in groups)
    return Item(path, pid, cam - 1, (pid, clothes))


@register("vcclothes")
def load_vcclothes(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    base = find_base(LABEL, root, SPLITS, EXPECTED, WRAPPERS)
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, WRAPPERS))
    items = {split: parse_folder(LABEL, base / split, base, NAME, _item) for split in SPLITS}
    train = train_records(items["train"], parsing)
    query, gallery = to_records([items["query"], items["gallery"]], parsing)
    protocols = {"general": protocol(query, gallery)}
    notes = []
    for name, cams in (("sc", SC_CAMERAS), ("cc", CC_CAMERAS)):
        sub_query, sub_gallery = camera_subset(query, cams), camera_subset(gallery, cams)
        if sub_query and sub_gallery:
            protocols[name] = protocol(sub_query, sub_gallery)
        else:
            notes.append(f"{LABEL}: no query or gallery images from cameras "
                         f"{' and '.join(str(c + 1) for c in cams)}; protocol {name} not built")
    protocols["sc_clothes"] = protocol(query, gallery, "sc")
    protocols["cc_clothes"] = protocol(query, gallery, "cc")
    return Loaded(make_dataset("vcclothes", cfg, parsing, train, protocols), notes)
