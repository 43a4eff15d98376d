"""DeepChange (Xu et al., 2021): ``{train-set,val-set-*,test-set-*}/P<pid>_C<cam>_<day>_...jpg``.

Each folder comes with a list ``<folder>-bbox.txt`` of ``file name,tracklet id`` lines;
a list and its folder must hold the same images. DeepChange has no clothes labels: the
outfit is approximated by (person, day), as Simple-CCReID does. For query and gallery
the camera id is replaced by the tracklet id (as Simple-CCReID, following the DeepChange
paper), so same-camera matches from other tracklets count; without a list the camera is
used and ``data check`` says so. Protocol ``general`` on the test sets; ``val`` from
``val-set-{query,gallery}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, NamePattern, ParsingIndex, dataset_root, find_base, make_dataset, mirror_bases, parse_folder,
    protocol, register, rel, to_records, train_records,
)
from ccreid.errors import CCReIDError

LABEL = "DeepChange"
SPLITS = ("train-set", "val-set-query", "val-set-gallery", "test-set-query", "test-set-gallery")
EXPECTED = "{train-set,val-set-query,val-set-gallery,test-set-query,test-set-gallery}"
WRAPPERS = ("DeepChangeDataset",)  # folders data.root may name around the splits
NAME = NamePattern(r"P(\d+)_C(\d+)_([^_]+)_.+", "P<pid>_C<cam>_<day>_<hour>_<x>_<y>.jpg (P00001_C01_D01_H08_1_2.jpg)")
NOTE = f"{LABEL}: no clothes labels; outfit approximated by (person, day)"


def _tracklets(list_file: Path, base: Path) -> Optional[Dict[str, int]]:
    """file name -> tracklet id from ``<folder>-bbox.txt`` (None when the list is absent)."""
    if not list_file.is_file():
        return None
    out = {}
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        fields = [f.strip() for f in line.split(",")]
        if not line.strip() or (number == 1 and len(fields) >= 2 and not fields[1].lstrip("-").isdigit()):
            continue  # blank line or header
        if len(fields) < 2 or not fields[1].lstrip("-").isdigit():
            raise CCReIDError(f"{LABEL}: {rel(list_file, base)} line {number} is not "
                              f"'file name,tracklet id': {line.strip()[:80]!r}")
        out[Path(fields[0]).name] = int(fields[1])
    return out


def _day_item(path: Path, groups: Tuple[str, ...]) -> Item:
    pid, cam, day = int(groups[0]), int(groups[1]), groups[2]
    return Item(path, pid, cam, (pid, day))


def _items(folder: Path, base: Path, notes: List[str]) -> List[Item]:
    """Images of ``folder`` checked against its list; query/gallery cameras = tracklet ids."""
    items = parse_folder(LABEL, folder, base, NAME, _day_item)
    list_name = f"{folder.name}-bbox.txt"
    tracklets = _tracklets(base / list_name, base)
    if tracklets is None:
        if folder.name != "train-set":
            notes.append(f"{LABEL}: no {list_name} under {base}; camera ids used instead of tracklet ids")
        return items
    unlisted = [i.path for i in items if i.path.name not in tracklets]
    if unlisted:
        raise CCReIDError(f"{LABEL}: {rel(unlisted[0], base)} is not listed in {list_name} under {base} "
                          f"({len(unlisted)} images of {folder.name}/ unlisted)")
    absent = sorted(set(tracklets) - {i.path.name for i in items})
    if absent:
        raise CCReIDError(f"{LABEL}: {list_name} under {base} lists {absent[0]}, which is not in folder "
                          f"{folder.name}/ ({len(absent)} listed images missing)")
    if folder.name == "train-set":
        return items
    return [Item(i.path, i.pid, tracklets[i.path.name], i.clothes) for i in items]


@register("deepchange")
def load_deepchange(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    base = find_base(LABEL, root, SPLITS, EXPECTED, WRAPPERS)
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, WRAPPERS))
    notes = [NOTE]
    items = {split: _items(base / split, base, notes) for split in SPLITS}
    train = train_records(items["train-set"], parsing)
    val_query, val_gallery = to_records([items["val-set-query"], items["val-set-gallery"]], parsing)
    query, gallery = to_records([items["test-set-query"], items["test-set-gallery"]], parsing)
    dataset = make_dataset("deepchange", cfg, parsing, train, {"general": protocol(query, gallery)},
                           {"general": protocol(val_query, val_gallery)})
    return Loaded(dataset, notes)
