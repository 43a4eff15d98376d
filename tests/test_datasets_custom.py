"""Custom CSV-manifest adapter."""

from __future__ import annotations

import pytest

from ccreid.config import DataConfig, ParsingConfig
from ccreid.data.datasets import LOADERS
from test_datasets_common import (
    TRICKY, assert_absent_reported, assert_relabelled, by_name, load, raises, stats, write_png_map,
    write_tree,
)

ROWS = [("imgs/a.jpg", 5, 0, "x", "train"), ("imgs/b.jpg", 5, 1, "y", "train"), ("imgs/c.jpg", 2, 0, "x", "train"),
        ("imgs/q1.jpg", 9, 0, "1", "query"), ("imgs/g1.jpg", 9, 1, "1", "gallery"),
        ("imgs/g2.jpg", 9, 2, "2", "gallery"), ("imgs/g3.jpg", 8, 0, "1", "gallery")]


def write_manifest(folder, rows, header="path,pid,camid,clothes_id,split,parsing_path", parsing=None):
    parsing = parsing or {}
    lines = [header] + [f"{p},{pid},{cam},{c},{s},{parsing.get(p, '')}" for p, pid, cam, c, s in rows]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / TRICKY / "mydata"
    write_tree(folder, [row[0] for row in ROWS])
    return folder


def test_counts_labels_and_parsing(folder, tmp_path):
    write_png_map(folder / "maps/q1.png")
    csv_path = write_manifest(folder, ROWS, parsing={"imgs/q1.jpg": "maps/q1.png", "imgs/g1.jpg": "maps/absent.png"})
    write_png_map(tmp_path / "mirror/imgs/g2.png")
    for root in (folder, csv_path):
        cfg = DataConfig(name="custom", root=str(root), parsing=ParsingConfig(root=str(tmp_path / "mirror"), labels="atr"))
        loaded = LOADERS["custom"](cfg)
        ds = loaded.dataset
        assert loaded.notes == [] and ds.label_set == "atr"
        assert stats(ds.train) == {"images": 3, "ids": 2, "cameras": 2, "clothes": 3}
        assert {k: v.rule for k, v in ds.protocols.items()} == {"general": "general", "sc": "sc", "cc": "cc"}
        assert stats(ds.protocols["cc"].query) == {"images": 1, "ids": 1, "cameras": 1, "clothes": 1}
        assert stats(ds.protocols["cc"].gallery) == {"images": 3, "ids": 2, "cameras": 3, "clothes": 3}
    assert_relabelled(ds.train, lambda r: {"a.jpg": 5, "b.jpg": 5, "c.jpg": 2}[r.path.rsplit("/", 1)[1]])
    train = by_name(ds.train)
    assert [train[n].clothes_id for n in ("a.jpg", "b.jpg", "c.jpg")] == [1, 2, 0]  # (2,x) < (5,x) < (5,y)
    test = by_name(ds.protocols["general"].query + ds.protocols["general"].gallery)
    assert test["q1.jpg"].clothes_id == test["g1.jpg"].clothes_id != test["g3.jpg"].clothes_id  # per person
    assert test["q1.jpg"].parsing_path == str(folder / "maps/q1.png")
    assert test["g1.jpg"].parsing_path is None  # listed but absent
    assert test["g2.jpg"].parsing_path == str(tmp_path / "mirror/imgs/g2.png")
    assert test["g3.jpg"].parsing_path is None


def test_without_clothes_ids(folder):
    lines = ["path,pid,camid,split"] + [f"{p},{pid},{cam},{s}" for p, pid, cam, _, s in ROWS]
    (folder / "manifest.csv").write_text("\ufeff" + "\n".join(lines) + "\n")  # with a BOM, as Excel writes
    loaded = LOADERS["custom"](DataConfig(name="custom", root=str(folder)))
    assert list(loaded.dataset.protocols) == ["general"]
    assert stats(loaded.dataset.train)["clothes"] == 2
    assert "one outfit per person" in loaded.notes[0]


def test_bad_inputs(folder):
    with raises(r"custom: no manifest .*mydata/manifest.csv \(data.root must be a CSV file or a folder"):
        load("custom", folder)
    write_manifest(folder, ROWS, header="path,pid,clothes_id,split,parsing_path,extra")
    with raises(r"custom: .*manifest.csv lacks the column\(s\) camid \(expected path,pid,camid,split"):
        load("custom", folder)
    write_manifest(folder, ROWS[:3] + [("imgs/q1.jpg", 9, 0, "1", "test")] + ROWS[4:])
    with raises(r"custom: .*manifest.csv line 5: split must be train, query or gallery, got 'test'"):
        load("custom", folder)
    write_manifest(folder, [("imgs/a.jpg", "five", 0, "x", "train")] + ROWS[1:])
    with raises(r"custom: .*manifest.csv line 2: column pid must be an integer, got 'five'"):
        load("custom", folder)
    write_manifest(folder, ROWS + [("imgs/nothere.jpg", 1, 0, "x", "train")])
    with raises(r"custom: .*manifest.csv line 9: image .*imgs/nothere.jpg does not exist"):
        load("custom", folder)
    write_manifest(folder, [r for r in ROWS if r[4] != "query"])
    with raises(r"custom: .*manifest.csv has no rows with split=query"):
        load("custom", folder)


def test_query_identity_absent_from_gallery(folder):
    write_tree(folder, ["imgs/q2.jpg"])
    write_manifest(folder, ROWS + [("imgs/q2.jpg", 7, 0, "1", "query")])
    for protocol in ("general", "sc", "cc"):
        assert_absent_reported("custom", folder, protocol, "1 of 2 query identities (1 of 2 query images)", 7,
                               folder / "imgs/q2.jpg")


def test_non_utf8_manifest_is_a_one_line_error(folder):
    (folder / "manifest.csv").write_bytes(b"path,pid,camid,split\nimgs/\xff.jpg,1,0,train\n")
    with raises(r"custom: .*manifest.csv is not UTF-8 text \(byte \d+\); save it as UTF-8 CSV"):
        load("custom", folder)
