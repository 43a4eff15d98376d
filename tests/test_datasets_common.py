"""Shared helpers for the dataset-adapter tests, and tests of the common core."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import pytest
from PIL import Image

import ccreid.data  # noqa: F401  (registers the adapters)
from ccreid.config import DataConfig, ParsingConfig
from ccreid.data.check import check_dataset
from ccreid.data.datasets.common import (
    Item, NamePattern, ParsingIndex, encode, find_base, parse_folder, to_records, train_records,
)
from ccreid.data.records import ImageRecord, ReIDDataset
from ccreid.data.registry import DATASETS
from ccreid.errors import CCReIDError

#: A directory name that would fool each adapter's regex if it were searched on the full
#: path: LTCC 001_2_c3, Market 2_c3, VC-Clothes 0999-09-09-09, DeepChange P0999_C9_D9,
#: Celeb-reID 09_001_2.
TRICKY = "P0999_C9_D9_0999-09-09-09_001_2_c3_x"


def write_image(path: Path, size=(4, 8)) -> Path:
    """A tiny image (width, height); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)
    return path


def write_tree(base: Path, files: Iterable[str]) -> None:
    for name in files:
        write_image(base / name)


def write_png_map(path: Path, size=(4, 8), value: int = 5) -> Path:
    """A palettised class-index PNG (as SCHP writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("P", size, value)
    image.putpalette([0, 0, 0, 255, 0, 0] * 128)
    image.save(path)
    return path


def write_npy_map(path: Path, size=(4, 8), classes: int = 20) -> Path:
    """Per-class scores H x W x C (SCHP ``--logits``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.zeros((size[1], size[0], classes), dtype=np.float32))
    return path


def load(name: str, root: Path, parsing: Optional[Path] = None, labels: str = "lip") -> ReIDDataset:
    cfg = DataConfig(name=name, root=str(root),
                     parsing=ParsingConfig(root=None if parsing is None else str(parsing), labels=labels))
    return DATASETS.get(name)(cfg)


def stats(records: Sequence[ImageRecord]) -> Dict[str, int]:
    return {"images": len(records), "ids": len({r.pid for r in records}),
            "cameras": len({r.camid for r in records}), "clothes": len({r.clothes_id for r in records})}


def by_name(records: Sequence[ImageRecord]) -> Dict[str, ImageRecord]:
    return {Path(r.path).name: r for r in records}


def assert_relabelled(records: Sequence[ImageRecord], raw_pid_of) -> None:
    """pids are 0..N-1 in the sorted order of the raw pids (brute force)."""
    raw = sorted({raw_pid_of(r) for r in records})
    for r in records:
        assert r.pid == raw.index(raw_pid_of(r))
    assert sorted({r.clothes_id for r in records}) == list(range(len({r.clothes_id for r in records})))


def raises(match: str):
    return pytest.raises(CCReIDError, match=match)


def assert_absent_reported(name: str, root: Path, protocol: str, counts: str, pid: int, path: Path) -> None:
    """``data check`` names a query identity absent from the gallery (``counts``: "1 of 2 ... (1 of 3 ...)")."""
    problems = check_dataset(name, str(root))["problems"]
    assert (f"protocol {protocol}: {counts} are absent from the gallery (e.g. pid {pid}: {path})") in problems


# ---------------------------------------------------------------- the common core

def test_name_pattern_matches_the_stem_only(tmp_path):
    pattern = NamePattern(r"(\d+)_c(\d+)", "PID_cCAM.jpg")
    base = tmp_path / "7_c9"
    assert pattern.match("X", base / "12_c3.jpg", base) == ("12", "3")
    with raises(r"X: cannot parse file name bad_c3\.jpg under .*7_c9 \(expected PID_cCAM\.jpg\)"):
        pattern.match("X", base / "bad_c3.jpg", base)


def test_parse_folder_sorted_and_drops_none(tmp_path):
    base = tmp_path / TRICKY
    write_tree(base, ["s/7_c2.jpg", "s/-1_c1.jpg", "s/3_c1.png"])
    (base / "s/notes.txt").write_text("not an image")
    pattern = NamePattern(r"(-?\d+)_c(\d+)", "PID_cCAM.jpg")
    make = lambda path, g: None if g[0] == "-1" else Item(path, int(g[0]), int(g[1]), g[0])
    items = parse_folder("X", base / "s", base, pattern, make)
    assert [(i.path.name, i.pid, i.camid) for i in items] == [("3_c1.png", 3, 1), ("7_c2.jpg", 7, 2)]


def test_find_base_prefers_wrapper_and_names_missing_folder(tmp_path):
    for sub in ("W/train", "W/query", "train"):
        (tmp_path / sub).mkdir(parents=True)
    with raises(r"D: no folder test under .*W \(expected W/\{train,query,test\}\)"):
        find_base("D", tmp_path, ["train", "query", "test"], "W/{train,query,test}", wrappers=("W",))
    (tmp_path / "W/test").mkdir()
    assert find_base("D", tmp_path, ["train", "query", "test"], "", wrappers=("W",)) == tmp_path / "W"


def test_parsing_index_png_preferred_npy_and_bases(tmp_path):
    images, maps = tmp_path / "img", tmp_path / "maps"
    write_png_map(maps / "rgb/train/001/A_1.png")
    write_npy_map(maps / "rgb/train/001/A_1.npy")
    write_npy_map(maps / "train/001/B_1.npy")  # relative to the image folder rgb/
    index = ParsingIndex(str(maps), [images, images / "rgb"])
    assert index.find(images / "rgb/train/001/A_1.jpg") == str(maps / "rgb/train/001/A_1.png")
    assert index.find(images / "rgb/train/001/B_1.jpg") == str(maps / "train/001/B_1.npy")
    assert index.find(images / "rgb/train/001/C_1.jpg") is None
    assert ParsingIndex(None, [images]).find(images / "rgb/train/001/A_1.jpg") is None
    with raises(r"parsing: folder .*nowhere does not exist"):
        ParsingIndex(str(tmp_path / "nowhere"), [images])


def test_encoding_and_relabelling_are_sorted(tmp_path):
    assert encode([(5, "b"), (2, "z"), (5, "a"), (2, "z")]) == {(2, "z"): 0, (5, "a"): 1, (5, "b"): 2}
    items = [Item(tmp_path / f"{k}.jpg", pid, 0, (pid, o)) for k, (pid, o) in
             enumerate([(40, 2), (7, 1), (40, 1), (7, 1), (13, 5)])]
    train = train_records(items, ParsingIndex(None, [tmp_path]))
    assert [r.pid for r in train] == [2, 0, 2, 0, 1]
    assert [r.clothes_id for r in train] == [3, 0, 2, 0, 1]
    query, gallery = to_records([items[:2], items[2:]], ParsingIndex(None, [tmp_path]))
    assert [r.pid for r in query + gallery] == [40, 7, 40, 7, 13]  # test pids stay raw
    assert [r.clothes_id for r in query + gallery] == [3, 0, 2, 0, 1]  # joint encoding


def test_every_name_of_the_issue_is_registered():
    for name in ("prcc", "vcclothes", "nkup", "ltcc", "celebreid", "celebreid_light", "deepchange",
                 "market1501", "custom", "synthetic", "last", "ccvid", "mevid"):
        assert name in DATASETS


def test_missing_root_is_named(tmp_path):
    with raises(r"LTCC: dataset folder .*absent does not exist"):
        load("ltcc", tmp_path / "absent")


def test_a_png_image_is_never_its_own_map(tmp_path):
    image = write_image(tmp_path / "train/001_1_c1_000001.png")
    assert ParsingIndex(str(tmp_path), [tmp_path]).find(image) is None
