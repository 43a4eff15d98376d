"""LaST (Shu et al., 2021): ``last/train/<folder>/*.jpg``, ``last/{val,test}/query/*.jpg``,
``last/{val,test}/gallery/<folder>/*.jpg``.

As Simple-CCReID's (and FIRe²'s) loader: a name ``<pid>_..._<x>.jpg`` (split at ``_`` up to
the first ``.``) gives the pid (the first field) and, in training, the outfit key
``<pid>_<x>`` (first and last fields), encoded in sorted string order; training pids are
relabelled in numeric order. Images are taken in sorted path order, and each is its own
camera (query ``0..Q-1``, gallery ``Q..``, training ``0..N-1``), so no gallery image is
discarded as same-camera. Val and test have no clothes labels: clothes id = pid. Protocol
``general`` on test, ``val`` from ``val/{query,gallery}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Loaded, ParsingIndex, dataset_root, encode, find_base, make_dataset, mirror_bases, protocol, register, rel,
)
from ccreid.data.records import ImageRecord
from ccreid.errors import CCReIDError

LABEL = "LaST"
SPLITS = ("train", "val/query", "val/gallery", "test/query", "test/gallery")
EXPECTED = "last/{train,val/query,val/gallery,test/query,test/gallery}"
WRAPPERS = ("last",)
NAME = "<pid>_..._<outfit>.jpg (000001_000_000_00001_0.jpg)"
NOTE = (f"{LABEL}: no clothes labels in val and test (clothes id = pid) and every image is its own camera; "
        "general protocol only")


def _jpgs(folder: str) -> List[str]:
    """``*.jpg`` entries of ``folder`` (hidden ones skipped, as glob), full paths."""
    with os.scandir(folder) as entries:
        return [e.path for e in entries if e.name.endswith(".jpg") and not e.name.startswith(".")]


def _images(base: Path, split: str, nested: bool) -> List[str]:
    """Sorted paths of ``split/*.jpg`` (``split/*/*.jpg`` when ``nested``); error if none."""
    folder = str(base / split)
    if nested:
        with os.scandir(folder) as entries:
            subfolders = [e.path for e in entries if e.is_dir() and not e.name.startswith(".")]
        paths = [path for sub in subfolders for path in _jpgs(sub)]
    else:
        paths = _jpgs(folder)
    if not paths:
        where = f"{split}/<folder>/*.jpg" if nested else f"{split}/*.jpg"
        raise CCReIDError(f"{LABEL}: no images {where} under {base} (expected {EXPECTED})")
    return sorted(paths)


def _fields(path: str, base: Path) -> Tuple[int, str]:
    """(pid, outfit key) from the file name."""
    names = os.path.basename(path).split(".")[0].split("_")
    try:
        pid = int(names[0])
    except ValueError:
        raise CCReIDError(f"{LABEL}: cannot parse file name {rel(Path(path), base)} under {base} "
                          f"(expected {NAME})") from None
    return pid, f"{names[0]}_{names[-1]}"


def _train(base: Path, parsing: ParsingIndex) -> List[ImageRecord]:
    paths = _images(base, "train", nested=True)
    fields = [_fields(path, base) for path in paths]
    pids, clothes = encode(pid for pid, _ in fields), encode(key for _, key in fields)
    return [ImageRecord(path, pids[pid], camid, clothes[key], parsing.find(path))
            for camid, (path, (pid, key)) in enumerate(zip(paths, fields))]


def _test(base: Path, split: str, parsing: ParsingIndex) -> Tuple[List[ImageRecord], List[ImageRecord]]:
    """Query and gallery of ``split`` (val or test): raw pids, clothes id = pid, one camera per image."""
    query = _images(base, f"{split}/query", nested=False)
    gallery = _images(base, f"{split}/gallery", nested=True)
    out = []
    for first_camid, paths in ((0, query), (len(query), gallery)):
        pids = [_fields(path, base)[0] for path in paths]
        out.append([ImageRecord(path, pid, first_camid + i, pid, parsing.find(path))
                    for i, (path, pid) in enumerate(zip(paths, pids))])
    return out[0], out[1]


@register("last")
def load_last(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    base = find_base(LABEL, root, SPLITS, EXPECTED, WRAPPERS)
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, WRAPPERS))
    train = _train(base, parsing)
    protocols = {"general": protocol(*_test(base, "test", parsing))}
    val = {"general": protocol(*_test(base, "val", parsing))}
    return Loaded(make_dataset("last", cfg, parsing, train, protocols, val), [NOTE])
