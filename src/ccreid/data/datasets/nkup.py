"""NKUP (Nankai University, 107 identities) in two layouts.

- NKUP+ (``NKUP2``): ``bounding_box_train/<pid>/<appearance>/<img>`` and
  ``bounding_box_test/{query,gallery_sameapp,gallery_crossapp_moderate,
  gallery_crossapp_dramatic}/<pid>/<appearance>/<img>``; the appearance folder is the
  outfit; camera = characters 13-14 of the file name; parsing maps ship as the mirror
  tree ``NKUP2_Parsing/``. Protocols: ``general`` (query vs every gallery), ``sc`` (vs
  ``gallery_sameapp``, same-clothes rule), ``cc`` (vs both cross-appearance galleries,
  clothes-changing rule), ``cc_moderate``, ``cc_dramatic``.
- Market style: ``{bounding_box_train,bounding_box_test,query}/<pid>_<x>_<c><CAM>..._*.jpg``
  (pid = first field, camera = characters 2-3 of the third field). Names carry no
  outfit: clothes ids come from ``clothes.csv`` (columns ``path,clothes_id``, paths
  relative to the dataset folder) when present, which adds ``cc``; without it every
  person has one outfit, only ``general`` exists and ``data check`` says so.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, NamePattern, ParsingIndex, dataset_root, find_base, int_folder,
    list_subfolders, make_dataset, mirror_bases, parse_folder, protocol, register, rel, stray_images, to_records,
    train_records,
)
from ccreid.data.manifest import read_rows
from ccreid.errors import CCReIDError

LABEL = "NKUP"
TEST = "bounding_box_test"
PLUS_GALLERIES = ("gallery_sameapp", "gallery_crossapp_moderate", "gallery_crossapp_dramatic")
PLUS_SPLITS = ("bounding_box_train", f"{TEST}/query") + tuple(f"{TEST}/{g}" for g in PLUS_GALLERIES)
PLUS_WRAPPERS = ("NKUP2_0126/NKUP2", "NKUP2")
MARKET_WRAPPERS = ("NKUP",)
MARKET_SPLITS = ("bounding_box_train", "query", TEST)
EXPECTED = ("{bounding_box_train,bounding_box_test,query} or the NKUP+ layout bounding_box_train/<pid>/"
            "<appearance>/ + bounding_box_test/{query,gallery_sameapp,gallery_crossapp_*}/<pid>/<appearance>/")
PLUS_NAME = NamePattern(r".{12}(\d{2}).*", "a name whose characters 13-14 are the camera number (0001_01_000105_0.jpg)")
MARKET_NAME = NamePattern(r"(\d+)_[^_]+_[^_](\d{2})[^_]*(?:_.*)?",
                          "PID_X_cCC_*.jpg, camera CC = characters 2-3 of the third field (0001_01_c05_0001.jpg)")
MANIFEST = "clothes.csv"
PLUS_PARSING = "NKUP2_Parsing"  # the release's parsing tree, next to NKUP2/


def _plus_item(pid: int, appearance: str, path: Path, groups: Tuple[str, ...]) -> Item:
    return Item(path, pid, int(groups[0]) - 1, (pid, appearance))


def _plus_items(split: Path, base: Path) -> List[Item]:
    """``split/<pid>/<appearance>/<img>``; outfit = (pid, appearance folder name)."""
    items = []
    for folder in [split] + list_subfolders(split):
        strays = stray_images(folder)
        if strays:
            raise CCReIDError(f"{LABEL}: {rel(strays[0], base)} under {base} is not inside an appearance folder "
                              f"(expected {rel(split, base)}/<pid>/<appearance>/<image>)")
    for person in list_subfolders(split):
        pid = int_folder(LABEL, person, base, "pid")
        for appearance in list_subfolders(person):
            items += parse_folder(LABEL, appearance, base, PLUS_NAME, partial(_plus_item, pid, appearance.name))
    if not items:
        raise CCReIDError(f"{LABEL}: no images in folder {rel(split, base)} under {base} "
                          f"(expected {rel(split, base)}/<pid>/<appearance>/<image>)")
    return items


def _load_plus(cfg: DataConfig, base: Path) -> Loaded:
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, PLUS_WRAPPERS))
    train = train_records(_plus_items(base / "bounding_box_train", base), parsing)
    query, same, moderate, dramatic = to_records(
        [_plus_items(base / TEST / s, base) for s in ("query",) + PLUS_GALLERIES], parsing)
    protocols = {
        "general": protocol(query, same + moderate + dramatic),
        "sc": protocol(query, same, "sc"),
        "cc": protocol(query, moderate + dramatic, "cc"),
        "cc_moderate": protocol(query, moderate, "cc"),
        "cc_dramatic": protocol(query, dramatic, "cc"),
    }
    maps = base.parent / PLUS_PARSING
    notes = [f"{LABEL}: parsing maps found in {maps}; pass them with data.parsing.root / --parsing"] \
        if cfg.parsing.root is None and maps.is_dir() else []
    return Loaded(make_dataset("nkup", cfg, parsing, train, protocols), notes)


def _manifest(base: Path) -> Optional[Dict[str, str]]:
    """relative path -> clothes id from ``clothes.csv`` (None when absent)."""
    path = base / MANIFEST
    if not path.is_file():
        return None
    rows = read_rows(path, ["path", "clothes_id"], "path,clothes_id", LABEL)
    return {Path(row["path"]).as_posix(): row["clothes_id"] for _, row in rows}


def _market_item(clothes: Optional[Dict[str, str]], base: Path, path: Path, groups: Tuple[str, ...]) -> Item:
    """A Market-style image; its outfit from the manifest (one per person without it)."""
    pid, cam = int(groups[0]), int(groups[1])
    outfit = ""
    if clothes is not None:
        outfit = clothes.get(rel(path, base), "")
        if not outfit:
            raise CCReIDError(f"{LABEL}: {rel(path, base)} has no clothes id in {base / MANIFEST} "
                              f"(columns path,clothes_id)")
    return Item(path, pid, cam - 1, (pid, outfit))


def _load_market_style(cfg: DataConfig, base: Path) -> Loaded:
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, MARKET_WRAPPERS))
    clothes = _manifest(base)
    make = partial(_market_item, clothes, base)
    items = {split: parse_folder(LABEL, base / split, base, MARKET_NAME, make) for split in MARKET_SPLITS}
    train = train_records(items["bounding_box_train"], parsing)
    query, gallery = to_records([items["query"], items[TEST]], parsing)
    protocols = {"general": protocol(query, gallery)}
    notes = []
    if clothes is None:
        notes.append(f"{LABEL}: clothes ids cannot be derived from this layout's file names; one outfit per "
                     f"person assumed and no cc protocol (add {MANIFEST} with columns path,clothes_id "
                     f"under {base}, or use the NKUP+ layout or the custom dataset)")
    else:
        protocols["cc"] = protocol(query, gallery, "cc")
    return Loaded(make_dataset("nkup", cfg, parsing, train, protocols), notes)


@register("nkup")
def load_nkup(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    if any((root / w / TEST / "query").is_dir() for w in PLUS_WRAPPERS + ("",)):
        return _load_plus(cfg, find_base(LABEL, root, PLUS_SPLITS, EXPECTED, PLUS_WRAPPERS))
    return _load_market_style(cfg, find_base(LABEL, root, MARKET_SPLITS, EXPECTED, MARKET_WRAPPERS))
