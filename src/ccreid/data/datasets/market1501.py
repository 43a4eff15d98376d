"""Market-1501 (Zheng et al., ICCV 2015): ``{bounding_box_train,query,bounding_box_test}``.

Names ``PPPP_cCsS_FFFFFF_BB.jpg``; camera ids 1..6 become 0..5. Images of pid -1 (junk)
are dropped; pid 0 (distractors) stays in the gallery and never matches a query.
Short-term data without clothes labels: every person has one outfit (clothes id = pid),
so the clothes-changing terms see no cross-clothes pair. Protocol: ``general``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, NamePattern, ParsingIndex, dataset_root, find_base, make_dataset, mirror_bases, parse_folder,
    protocol, register, rel, require_images, to_records, train_records,
)

LABEL = "Market-1501"
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
EXPECTED = "{bounding_box_train,query,bounding_box_test}"
WRAPPERS = ("Market-1501-v15.09.15", "market1501")  # folders data.root may name around the splits
NAME = NamePattern(r"(-?\d+)_c(\d)\w*", "PPPP_cCsS_FFFFFF_BB.jpg (0002_c1s1_000451_03.jpg)")
NOTE = f"{LABEL}: no clothes labels; clothes id = person id (one outfit each), general protocol only"


def _item(path: Path, groups: Tuple[str, ...]) -> Optional[Item]:
    pid, cam = (int(g) for g in groups)
    return None if pid == -1 else Item(path, pid, cam - 1, (pid, 0))


@register("market1501")
def load_market1501(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    base = find_base(LABEL, root, SPLITS, EXPECTED, WRAPPERS)
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, WRAPPERS))
    items = {}
    for split in SPLITS:
        items[split] = parse_folder(LABEL, base / split, base, NAME, _item)
        require_images(LABEL, rel(base / split, root), items[split], "only junk images of pid -1")
    train = train_records(items["bounding_box_train"], parsing)
    query, gallery = to_records([items["query"], items["bounding_box_test"]], parsing)
    return Loaded(make_dataset("market1501", cfg, parsing, train, {"general": protocol(query, gallery)}), [NOTE])
