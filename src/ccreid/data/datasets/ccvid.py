"""CCVID (Gu et al., CVPR 2022): tracklets listed in ``CCVID/{train,query,gallery}.txt``.

Each line is ``tracklet_path pid clothes_label`` (``session1/001_01 001 u0_l0_s0_c0_a0``);
the frames are the entries of ``CCVID/<tracklet_path>/`` (hidden ones skipped), sorted by
name. As Simple-CCReID's loader: camera = the number after the path's first ``_``, plus 12
when the path lies in ``session3`` (these are FVG walk indices rather than cameras); the
outfit key is ``<pid>_<clothes_label>``, encoded in sorted string order, jointly over query
and gallery; training pids are relabelled in the sorted order of their strings. Protocols
``general``, ``sc`` and ``cc`` on the same query and gallery. Blank lines are skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Loaded, ParsingIndex, dataset_root, encode, find_base, frame_maps, make_dataset, mirror_bases, protocol,
    read_lines, register,
)
from ccreid.data.records import RULES, EvalSplit, TrackletRecord
from ccreid.errors import CCReIDError

LABEL = "CCVID"
LISTS = ("train.txt", "query.txt", "gallery.txt")
EXPECTED = "CCVID/{train,query,gallery}.txt"
WRAPPERS = ("CCVID",)
LINE = "'tracklet_path pid clothes_label' (session1/001_01 001 u0_l0_s0_c0_a0)"
#: Camera offset of the third session's tracklets (its walks continue the numbering).
SESSION3_OFFSET = 12


@dataclass(frozen=True)
class Entry:
    """One list line: the tracklet's folder, its raw pid and outfit key, and where it was listed."""

    path: str
    pid: str
    clothes: str
    camid: int
    where: str  # "<list> line <n> under <base>"


def _camera(path: str, where: str) -> int:
    parts = path.split("_")
    try:
        camid = int(parts[1])
    except (IndexError, ValueError):
        raise CCReIDError(f"{LABEL}: {where}: no camera number after the first '_' of {path!r} "
                          f"(expected session<k>/<pid>_<camera>, e.g. session1/001_01)") from None
    return camid + SESSION3_OFFSET if path.split("/")[0] == "session3" else camid


def _entries(base: Path, name: str) -> List[Entry]:
    entries = []
    for number, line in enumerate(read_lines(LABEL, base / name, base), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{name} line {number} under {base}"
        if len(fields) != 3 or not (fields[1].isascii() and fields[1].isdigit()):
            raise CCReIDError(f"{LABEL}: {where} is not {LINE}: {line.strip()[:80]!r}")
        path, pid, label = fields
        entries.append(Entry(path, pid, f"{pid}_{label}", _camera(path, where), where))
    if not entries:
        raise CCReIDError(f"{LABEL}: {name} under {base} lists no tracklet (expected lines {LINE})")
    return entries


def _frames(base: Path, entry: Entry) -> Tuple[str, ...]:
    """The tracklet folder's entries, sorted (one directory listing, no per-file call)."""
    folder = os.path.join(str(base), entry.path)
    try:
        with os.scandir(folder) as found:
            names = sorted(e.name for e in found if not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        raise CCReIDError(f"{LABEL}: tracklet folder {entry.path} of {entry.where} does not exist") from None
    except OSError as err:
        raise CCReIDError(f"{LABEL}: cannot list tracklet folder {entry.path} of {entry.where} ({err.strerror})") from None
    if not names:
        raise CCReIDError(f"{LABEL}: tracklet folder {entry.path} of {entry.where} holds no frames")
    return tuple(f"{folder}{os.sep}{n}" for n in names)


def _records(base: Path, entries: Sequence[Entry], pids: Dict[str, int], clothes: Dict[str, int],
             parsing: ParsingIndex) -> List[TrackletRecord]:
    out = []
    for e in entries:
        frames = _frames(base, e)
        out.append(TrackletRecord(frames, pids[e.pid], e.camid, clothes[e.clothes], frame_maps(parsing, frames)))
    return out


def train_split(base: Path, name: str, parsing: ParsingIndex) -> List[TrackletRecord]:
    """The tracklets of list ``name``, pids and outfits relabelled ``0..N-1`` (sorted strings)."""
    train = _entries(base, name)
    return _records(base, train, encode(e.pid for e in train), encode(e.clothes for e in train), parsing)


def eval_protocols(base: Path, query_list: str, gallery_list: str, parsing: ParsingIndex) -> Dict[str, EvalSplit]:
    """``general`` / ``sc`` / ``cc`` on two lists: raw integer pids, outfits encoded jointly over both."""
    query, gallery = _entries(base, query_list), _entries(base, gallery_list)
    clothes = encode(e.clothes for e in query + gallery)
    pids = {e.pid: int(e.pid) for e in query + gallery}
    query_records, gallery_records = (_records(base, split, pids, clothes, parsing) for split in (query, gallery))
    return {rule: protocol(query_records, gallery_records, rule) for rule in RULES}


@register("ccvid", video=True)
def load_ccvid(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    base = find_base(LABEL, root, LISTS, EXPECTED, WRAPPERS, files=True)
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, WRAPPERS))
    protocols = eval_protocols(base, LISTS[1], LISTS[2], parsing)
    return Loaded(make_dataset("ccvid", cfg, parsing, train_split(base, LISTS[0], parsing), protocols))
