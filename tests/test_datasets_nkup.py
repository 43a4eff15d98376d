"""NKUP adapter: the NKUP+ appearance-folder layout and the Market-style layout."""

from __future__ import annotations

import pytest

from ccreid.config import DataConfig
from ccreid.data.datasets import LOADERS
from test_datasets_common import (
    TRICKY, assert_absent_reported, assert_relabelled, by_name, load, raises, stats, write_image,
    write_png_map, write_tree,
)


def plus_name(pid: int, app: int, frame: int, cam: int) -> str:
    """12 characters, then the two camera digits (characters 13-14)."""
    return f"{pid:04d}_{app:02d}_{frame:04d}{cam:02d}_0.jpg"


PLUS = {
    "bounding_box_train": [(1, 1, 1, 5), (1, 1, 2, 5), (1, 2, 3, 6), (3, 1, 1, 1)],
    "bounding_box_test/query": [(10, 1, 1, 2), (11, 1, 1, 3)],
    "bounding_box_test/gallery_sameapp": [(10, 1, 2, 4), (11, 1, 2, 3)],
    "bounding_box_test/gallery_crossapp_moderate": [(10, 2, 1, 5)],
    "bounding_box_test/gallery_crossapp_dramatic": [(10, 3, 1, 2), (11, 2, 1, 1)],
}


@pytest.fixture
def plus_root(tmp_path):
    root = tmp_path / TRICKY
    for split, rows in PLUS.items():
        write_tree(root / "NKUP2_0126/NKUP2", [f"{split}/{p:04d}/app{a}/{plus_name(p, a, f, c)}" for p, a, f, c in rows])
    return root


def test_plus_layout_counts_and_protocols(plus_root):
    ds = load("nkup", plus_root)
    assert stats(ds.train) == {"images": 4, "ids": 2, "cameras": 3, "clothes": 3}
    assert_relabelled(ds.train, lambda r: int(r.path.rsplit("/", 3)[1]))
    assert {k: v.rule for k, v in ds.protocols.items()} == {
        "general": "general", "sc": "sc", "cc": "cc", "cc_moderate": "cc", "cc_dramatic": "cc"}
    galleries = {"general": (5, 2, 5, 5), "sc": (2, 2, 2, 2), "cc": (3, 2, 3, 3), "cc_moderate": (1, 1, 1, 1),
                 "cc_dramatic": (2, 2, 2, 2)}
    for name, counts in galleries.items():
        assert tuple(stats(ds.protocols[name].gallery).values()) == counts, name
        assert stats(ds.protocols[name].query) == {"images": 2, "ids": 2, "cameras": 2, "clothes": 2}
    test = by_name(ds.protocols["general"].query + ds.protocols["general"].gallery)
    query, same, moderate = test[plus_name(10, 1, 1, 2)], test[plus_name(10, 1, 2, 4)], test[plus_name(10, 2, 1, 5)]
    assert (query.pid, query.camid, same.camid) == (10, 1, 3)
    assert query.clothes_id == same.clothes_id != moderate.clothes_id


def test_plus_parsing_mirror_tree(plus_root, tmp_path):
    maps = tmp_path / "NKUP2_Parsing"
    write_png_map(maps / "bounding_box_train/0003/app1" / plus_name(3, 1, 1, 1).replace(".jpg", ".png"))
    ds = load("nkup", plus_root / "NKUP2_0126/NKUP2", maps)
    assert [n for n, r in by_name(ds.train).items() if r.parsing_path] == [plus_name(3, 1, 1, 1)]


def test_plus_bad_layout(plus_root):
    base = plus_root / "NKUP2_0126/NKUP2"
    write_image(base / "bounding_box_train/0001" / plus_name(1, 1, 9, 5))
    with raises(r"NKUP: bounding_box_train/0001/0001_01_000905_0.jpg under .* is not inside an appearance folder"):
        load("nkup", plus_root)
    (base / "bounding_box_train/0001" / plus_name(1, 1, 9, 5)).unlink()
    write_image(base / "bounding_box_train/0001/app1/short.jpg")
    with raises(r"NKUP: cannot parse file name bounding_box_train/0001/app1/short.jpg under .* \(expected a name whose"):
        load("nkup", plus_root)


MARKET = ["bounding_box_train/0001_01_c05_0001.jpg", "bounding_box_train/0001_02_c06_0002.jpg",
          "bounding_box_train/0003_01_c01_0001.jpg", "query/0010_01_c02_0001.jpg",
          "bounding_box_test/0010_01_c04_0002.jpg", "bounding_box_test/0010_02_c02_0003.jpg"]


@pytest.fixture
def market_root(tmp_path):
    root = tmp_path / TRICKY / "NKUP"
    write_tree(root, MARKET)
    return root


def test_market_style_without_clothes_says_so(market_root):
    loaded = LOADERS["nkup"](DataConfig(name="nkup", root=str(market_root.parent)))
    ds = loaded.dataset
    assert stats(ds.train) == {"images": 3, "ids": 2, "cameras": 3, "clothes": 2}
    assert list(ds.protocols) == ["general"]
    assert stats(ds.protocols["general"].gallery) == {"images": 2, "ids": 1, "cameras": 2, "clothes": 1}
    assert by_name(ds.protocols["general"].query)["0010_01_c02_0001.jpg"].camid == 1
    assert len(loaded.notes) == 1 and "clothes ids cannot be derived" in loaded.notes[0]


def test_market_style_clothes_from_manifest(market_root):
    outfits = ["a", "b", "a", "1", "1", "2"]
    (market_root / "clothes.csv").write_text(
        "path,clothes_id\n" + "".join(f"{p},{c}\n" for p, c in zip(MARKET, outfits)))
    loaded = LOADERS["nkup"](DataConfig(name="nkup", root=str(market_root)))
    ds = loaded.dataset
    assert loaded.notes == []
    assert stats(ds.train)["clothes"] == 3
    assert {k: v.rule for k, v in ds.protocols.items()} == {"general": "general", "cc": "cc"}
    test = by_name(ds.protocols["cc"].query + ds.protocols["cc"].gallery)
    assert test["0010_01_c02_0001.jpg"].clothes_id == test["0010_01_c04_0002.jpg"].clothes_id
    assert test["0010_01_c02_0001.jpg"].clothes_id != test["0010_02_c02_0003.jpg"].clothes_id
    (market_root / "clothes.csv").write_text("path,clothes_id\n" + f"{MARKET[0]},a\n")
    with raises(r"NKUP: bounding_box_train/0001_02_c06_0002.jpg has no clothes id in .*NKUP/clothes.csv"):
        load("nkup", market_root)


def test_market_style_bad_inputs(market_root):
    write_image(market_root / "query/10-c02.jpg")
    with raises(r"NKUP: cannot parse file name query/10-c02.jpg under .*NKUP \(expected PID_X_cCC"):
        load("nkup", market_root)
    for path in (market_root / "query").iterdir():
        path.unlink()
    with raises(r"NKUP: no images in folder query under "):
        load("nkup", market_root)
    (market_root / "query").rmdir()
    with raises(r"NKUP: no folder query under .*NKUP \(expected \{bounding_box_train,bounding_box_test,query\} or the NKUP\+"):
        load("nkup", market_root.parent)


def test_plus_parsing_tree_next_to_images_is_pointed_out(plus_root):
    assert LOADERS["nkup"](DataConfig(name="nkup", root=str(plus_root))).notes == []
    (plus_root / "NKUP2_0126/NKUP2_Parsing").mkdir()
    notes = LOADERS["nkup"](DataConfig(name="nkup", root=str(plus_root))).notes
    assert notes == [f"NKUP: parsing maps found in {plus_root / 'NKUP2_0126/NKUP2_Parsing'}; "
                     f"pass them with data.parsing.root / --parsing"]


def test_market_style_camera_after_any_character(market_root):
    write_image(market_root / "query/0011_01_D07_0001.jpg")
    query = by_name(load("nkup", market_root).protocols["general"].query)
    assert (query["0011_01_D07_0001.jpg"].pid, query["0011_01_D07_0001.jpg"].camid) == (11, 6)


def test_query_identity_absent_from_gallery(plus_root, market_root):
    extra = plus_root / "NKUP2_0126/NKUP2/bounding_box_test/query/0012/app1" / plus_name(12, 1, 1, 3)
    write_image(extra)
    for protocol in ("general", "sc", "cc"):  # cc_moderate holds person 10 only
        assert_absent_reported("nkup", plus_root, protocol, "1 of 3 query identities (1 of 3 query images)", 12, extra)
    write_image(market_root / "query/0004_01_c01_0001.jpg")
    assert_absent_reported("nkup", market_root, "general", "1 of 2 query identities (1 of 2 query images)", 4,
                           market_root / "query/0004_01_c01_0001.jpg")
