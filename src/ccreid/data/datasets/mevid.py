"""MEVID (Davila et al., WACV 2023): frame lists and tracklet tables, as Kitware/MEVID's CAL loader.

Files in the dataset folder: ``train_name.txt`` / ``test_name.txt`` (one frame name per
line), ``track_train_info.txt`` / ``track_test_info.txt`` (rows ``start end pid outfit
camid``: the tracklet's frames are names ``start..end``, end included), ``query_IDX.txt``
(the test rows that are queries; every other test row is in the gallery). A frame lies at
``bbox_{train,test}/<first 4 characters of its name>/<name>``; the frame paths come from the
name lists alone (only each frame folder is checked to exist). A row whose range holds no
name is dropped and counted. Outfit key ``<pid>_<outfit>`` in sorted string order: over the
kept training rows, and over every query and gallery row (dropped ones included, as the
reference); training pids relabelled in numeric order; cameras as given. Protocols
``general``, ``sc`` and ``cc`` on the same query and gallery.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ccreid.config import DataConfig
from ccreid.data.datasets.common import (
    Loaded, ParsingIndex, dataset_root, encode, find_base, frame_maps, make_dataset, mirror_bases, protocol,
    read_lines, register,
)
from ccreid.data.records import RULES, TrackletRecord
from ccreid.errors import CCReIDError

LABEL = "MEVID"
FILES = ("train_name.txt", "test_name.txt", "track_train_info.txt", "track_test_info.txt", "query_IDX.txt")
EXPECTED = "{train,test}_name.txt, track_{train,test}_info.txt and query_IDX.txt"
WRAPPERS = ("MEVID", "mevid")
ROW = "'start end pid outfit camid' (five integers)"


@dataclass(frozen=True)
class Row:
    """One tracklet row and the line it came from."""

    start: int
    end: int
    pid: int
    outfit: int
    camid: int
    where: str  # "<file> line <n>"

    @property
    def clothes(self) -> str:
        return f"{self.pid}_{self.outfit}"


@dataclass(frozen=True)
class Part:
    """One side of the data: its frame names, where its frames lie, and its list file names."""

    names: List[str]
    home: str  # bbox_train or bbox_test
    name_file: str


def _data_lines(base: Path, name: str) -> List[Tuple[int, List[str]]]:
    """(line number, fields) of the lines holding data, as ``numpy.loadtxt`` reads them
    (``#`` comments and blank lines skipped)."""
    lines = enumerate(read_lines(LABEL, base / name, base), 1)
    return [(number, fields) for number, line in lines if (fields := line.split("#", 1)[0].split())]


def _integer(token: str, where: str, what: str) -> int:
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise CCReIDError(f"{LABEL}: {where}: {token!r} is not an integer (expected {what})")
    return int(value)


def _rows(base: Path, name: str) -> List[Row]:
    rows = []
    for number, fields in _data_lines(base, name):
        where = f"{name} line {number} under {base}"
        if len(fields) != 5:
            raise CCReIDError(f"{LABEL}: {where} holds {len(fields)} values (expected {ROW})")
        start, end, pid, outfit, camid = (_integer(f, where, ROW) for f in fields)
        if start < 0 or end < 0:
            raise CCReIDError(f"{LABEL}: {where}: negative frame index (expected {ROW}, start and end >= 0)")
        rows.append(Row(start, end, pid, outfit, camid, where))
    return rows


def _query_rows(base: Path, count: int) -> List[int]:
    """Row indices listed in ``query_IDX.txt`` (in order), each in ``0..count-1``."""
    indices = []
    for number, fields in _data_lines(base, "query_IDX.txt"):
        where = f"query_IDX.txt line {number} under {base}"
        for token in fields:
            index = _integer(token, where, "row indices of track_test_info.txt")
            if not 0 <= index < count:
                raise CCReIDError(f"{LABEL}: {where}: row {index} is outside track_test_info.txt's rows "
                                  f"0..{count - 1}")
            indices.append(index)
    return indices


def _frames(base: Path, part: Part, row: Row, blanks: Sequence[int],
            folders: Dict[str, bool]) -> Tuple[str, ...]:
    """The frame paths of ``row`` (empty when its range holds no name); each frame folder is
    checked to exist once."""
    names = part.names[row.start:row.end + 1]
    if not names:
        return ()
    blank = bisect.bisect_left(blanks, row.start)
    if blank < len(blanks) and blanks[blank] <= row.end:
        raise CCReIDError(f"{LABEL}: {row.where} uses line {blanks[blank] + 1} of {part.name_file}, "
                          f"which is blank (expected a frame name)")
    frames = []
    for name in names:
        folder = os.path.join(str(base), part.home, name[:4])
        if folder not in folders:
            folders[folder] = os.path.isdir(folder)
        if not folders[folder]:
            raise CCReIDError(f"{LABEL}: frame folder {part.home}/{name[:4]} under {base} does not exist "
                              f"(frame {name} of {row.where})")
        frames.append(os.path.join(folder, name))
    return tuple(frames)


def _records(base: Path, part: Part, rows: Sequence[Row], parsing: ParsingIndex,
             clothes: Optional[Dict[str, int]] = None) -> Tuple[List[TrackletRecord], int]:
    """Records of the rows with frames and how many rows were dropped; training labels
    (``clothes`` None) are relabelled over the kept rows."""
    blanks = [i for i, name in enumerate(part.names) if not name]
    folders: Dict[str, bool] = {}
    kept = [(row, frames) for row in rows if (frames := _frames(base, part, row, blanks, folders))]
    pids = {row.pid: row.pid for row, _ in kept}
    if clothes is None:
        pids, clothes = encode(pids), encode(row.clothes for row, _ in kept)
    records = [TrackletRecord(frames, pids[row.pid], row.camid, clothes[row.clothes], frame_maps(parsing, frames))
               for row, frames in kept]
    return records, len(rows) - len(kept)


def _names(base: Path, name: str) -> List[str]:
    """Frame names, one per line (trailing white space removed, as the reference)."""
    return [line.rstrip() for line in read_lines(LABEL, base / name, base)]


@register("mevid", video=True)
def load_mevid(cfg: DataConfig) -> Loaded:
    root = dataset_root(LABEL, cfg.root)
    base = find_base(LABEL, root, FILES, EXPECTED, WRAPPERS, files=True)
    parsing = ParsingIndex(cfg.parsing.root, mirror_bases(base, WRAPPERS))
    train_part = Part(_names(base, "train_name.txt"), "bbox_train", "train_name.txt")
    test_part = Part(_names(base, "test_name.txt"), "bbox_test", "test_name.txt")
    test_rows = _rows(base, "track_test_info.txt")
    query_ids = _query_rows(base, len(test_rows))
    chosen = set(query_ids)
    query_rows = [test_rows[i] for i in query_ids]
    gallery_rows = [row for i, row in enumerate(test_rows) if i not in chosen]
    train, dropped_train = _records(base, train_part, _rows(base, "track_train_info.txt"), parsing)
    test_clothes = encode(row.clothes for row in query_rows + gallery_rows)
    query, dropped_query = _records(base, test_part, query_rows, parsing, test_clothes)
    gallery, dropped_gallery = _records(base, test_part, gallery_rows, parsing, test_clothes)
    dropped = {"train": dropped_train, "query": dropped_query, "gallery": dropped_gallery}
    notes = [f"{LABEL}: {count} {split} tracklet(s) have no frame in their name list's range; dropped"
             for split, count in dropped.items() if count]
    protocols = {rule: protocol(query, gallery, rule) for rule in RULES}
    return Loaded(make_dataset("mevid", cfg, parsing, train, protocols), notes, dropped)
