"""Any data without code: a CSV manifest.

Columns ``path,pid,camid,split`` plus the optional ``clothes_id`` and ``parsing_path``;
``split`` is ``train``, ``query`` or ``gallery``; relative paths are resolved against the
CSV's folder. ``data.root`` is the CSV file or a folder holding ``manifest.csv``.
Clothes ids are outfit labels compared within a person (per-person numbers such as
1, 2 or dataset-wide ids both work); without them every person has one outfit and only
the ``general`` protocol exists, otherwise ``sc`` and ``cc`` too. A row's parsing map is
its ``parsing_path``, else the mirror-tree lookup under ``data.parsing.root``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, ParsingIndex, make_dataset, protocol, register, to_records, train_records,
)
from ccreid.data.manifest import int_cell, read_rows
from ccreid.data.records import ImageRecord
from ccreid.errors import CCReIDError

LABEL = "custom"
MANIFEST = "manifest.csv"
REQUIRED = ("path", "pid", "camid", "split")
SPLITS = ("train", "query", "gallery")


def _manifest_path(root: str) -> Path:
    path = Path(root).expanduser()
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise CCReIDError(f"{LABEL}: no manifest {path} (data.root must be a CSV file or a folder holding {MANIFEST})")
    return path


@register("custom")
def load_custom(cfg: DataConfig) -> Loaded:
    csv_path = _manifest_path(cfg.root)
    folder = csv_path.parent
    items: Dict[str, List[Item]] = {s: [] for s in SPLITS}
    explicit_maps: Dict[Path, Optional[str]] = {}
    all_clothes = True
    for line, row in read_rows(csv_path, REQUIRED, "path,pid,camid,split[,clothes_id][,parsing_path]", LABEL):
        split = row["split"]
        if split not in SPLITS:
            raise CCReIDError(f"{LABEL}: {csv_path} line {line}: split must be train, query or gallery, "
                              f"got {split!r}")
        path = folder / row["path"]
        if not path.is_file():
            raise CCReIDError(f"{LABEL}: {csv_path} line {line}: image {path} does not exist")
        pid = int_cell(row, "pid", line, csv_path, LABEL)
        outfit = row.get("clothes_id", "")
        all_clothes = all_clothes and outfit != ""
        items[split].append(Item(path, pid, int_cell(row, "camid", line, csv_path, LABEL), (pid, outfit)))
        if row.get("parsing_path"):
            parsing_file = folder / row["parsing_path"]
            explicit_maps[path] = str(parsing_file) if parsing_file.is_file() else None
    for split, found in items.items():
        if not found:
            raise CCReIDError(f"{LABEL}: {csv_path} has no rows with split={split}")
    parsing = ParsingIndex(cfg.parsing.root, [folder])

    def with_maps(records: List[ImageRecord]) -> List[ImageRecord]:
        return [ImageRecord(r.path, r.pid, r.camid, r.clothes_id, explicit_maps[Path(r.path)])
                if Path(r.path) in explicit_maps else r for r in records]

    train = with_maps(train_records(items["train"], parsing))
    query, gallery = (with_maps(r) for r in to_records([items["query"], items["gallery"]], parsing))
    protocols = {"general": protocol(query, gallery)}
    notes = []
    if all_clothes:
        protocols.update(sc=protocol(query, gallery, "sc"), cc=protocol(query, gallery, "cc"))
    else:
        notes.append(f"{LABEL}: {csv_path} gives no clothes_id for some or all rows; one outfit per person "
                     f"assumed there, general protocol only")
    return Loaded(make_dataset("custom", cfg, parsing, train, protocols), notes)
