"""PRCC (Yang et al., TPAMI 2019): ``rgb/{train,val}/<pid>/*.jpg``, ``rgb/test/{A,B,C}/<pid>/*.jpg``.

Camera = first letter of the file name (A/B/C -> 0/1/2; in ``test`` the camera folder).
Cameras A and B show one outfit, C the other, so every identity has two clothes ids.
Protocols (METHOD.md, multi-shot as Simple-CCReID): gallery = camera A; ``sc`` query =
camera B, ``cc`` query = camera C, ``general`` = both; all scored with the general rule.
:func:`single_shot_galleries` builds the original single-shot x10 galleries.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, List, Sequence

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Item, Loaded, NamePattern, ParsingIndex, camera_subset, dataset_root, find_base, int_folder,
    list_images, list_subfolders, make_dataset, mirror_bases, protocol, register, rel, stray_images, to_records,
    train_records,
)
from ccreid.data.records import EvalSplit, ImageRecord
from ccreid.errors import CCReIDError

LABEL = "PRCC"
CAMERAS = "ABC"
EXPECTED = "rgb/{train,val,test}"
NAME = NamePattern(r"([ABC]).*", "a name starting with the camera letter A, B or C (A_cropped_rgb001.jpg)")


def _person_items(folder: Path, base: Path, camera_folder: str = "") -> List[Item]:
    """Images of ``folder/<pid>/``; camera from the file name (or ``camera_folder``)."""
    strays = stray_images(folder)
    if strays:
        raise CCReIDError(f"{LABEL}: {rel(strays[0], base)} under {base} is not inside a person folder "
                          f"(expected {rel(folder, base)}/<pid>/<image>.jpg)")
    items = []
    for person in list_subfolders(folder):
        pid = int_folder(LABEL, person, base, "pid")
        for path in list_images(LABEL, person, base, "<camera letter>_*.jpg images"):
            camera = camera_folder or NAME.match(LABEL, path, base)[0]
            items.append(Item(path, pid, CAMERAS.index(camera), (pid, camera == "C")))
    if not items:
        raise CCReIDError(f"{LABEL}: no person folders in {rel(folder, base)} under {base} "
                          f"(expected {rel(folder, base)}/<pid>/*.jpg)")
    return items


def _camera_protocols(query_pool: Sequence[ImageRecord], gallery: Sequence[ImageRecord]) -> Dict[str, EvalSplit]:
    """sc = B vs A, cc = C vs A, general = B+C vs A (those whose query camera exists)."""
    same, changed = camera_subset(query_pool, [1]), camera_subset(query_pool, [2])
    out = {"general": protocol(same + changed, gallery)} if same or changed else {}
    if same:
        out["sc"] = protocol(same, gallery)
    if changed:
        out["cc"] = protocol(changed, gallery)
    return out


@register("prcc")
def load_prcc(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    if not (root / "rgb").is_dir() and (root / "train").is_dir():
        rgb = root  # data.root points at the rgb/ folder itself
    else:
        rgb = find_base(LABEL, root, ["rgb"], EXPECTED) / "rgb"
    for sub in ("train", "test", "test/A", "test/B", "test/C"):
        if not (rgb / sub).is_dir():
            raise CCReIDError(f"{LABEL}: no folder {rel(rgb / sub, root)} under {root} (expected {EXPECTED})")
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(rgb, ("rgb",)))
    notes = []
    train = train_records(_person_items(rgb / "train", root), parsing)
    gallery, query_b, query_c = to_records(
        [_person_items(rgb / "test" / cam, root, camera_folder=cam) for cam in CAMERAS], parsing)
    protocols = {"general": protocol(query_b + query_c, gallery), "sc": protocol(query_b, gallery),
                 "cc": protocol(query_c, gallery)}
    val: Dict[str, EvalSplit] = {}
    if (rgb / "val").is_dir():
        (val_records,) = to_records([_person_items(rgb / "val", root)], parsing)
        val_gallery = camera_subset(val_records, [0])
        val = _camera_protocols(val_records, val_gallery) if val_gallery else {}
        if not val:
            notes.append(f"{LABEL}: {rel(rgb / 'val', root)} lacks camera A or both B and C; no validation split")
    else:
        notes.append(f"{LABEL}: no folder {rel(rgb / 'val', root)}; no validation split "
                     f"(train.select_on=val unavailable)")
    return Loaded(make_dataset("prcc", cfg, parsing, train, protocols, val), notes)


def single_shot_galleries(gallery: Sequence[ImageRecord], repeats: int = 10, seed: int = 3) -> List[List[ImageRecord]]:
    """The original PRCC single-shot protocol: ``repeats`` galleries of one random image
    per identity (fixed ``seed``); the caller scores each and averages."""
    by_pid: Dict[int, List[ImageRecord]] = {}
    for record in gallery:
        by_pid.setdefault(record.pid, []).append(record)
    rng = random.Random(seed)
    return [[rng.choice(by_pid[pid]) for pid in sorted(by_pid)] for _ in range(repeats)]
