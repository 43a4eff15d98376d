"""LTCC adapter on a miniature tree with the real layout."""

from __future__ import annotations

import shutil

import pytest

from test_datasets_common import (
    TRICKY, assert_absent_reported, assert_relabelled, by_name, load, raises, stats, write_image,
    write_png_map, write_tree,
)

FILES = ["train/001_1_c11_015861.png", "train/001_2_c3_000100.png", "train/005_1_c1_000001.png",
         "query/010_1_c2_000001.png", "query/011_1_c4_000002.png",
         "test/010_1_c5_000001.png", "test/010_2_c2_000003.png", "test/010_3_c7_000004.png",
         "test/012_1_c1_000001.png"]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / TRICKY  # a directory that would fool a regex searched on the full path
    write_tree(root / "LTCC_ReID", FILES)
    return root


def test_counts_labels_and_protocols(root):
    for given in (root, root / "LTCC_ReID"):
        ds = load("ltcc", given)
        assert stats(ds.train) == {"images": 3, "ids": 2, "cameras": 3, "clothes": 3}
        assert {k: v.rule for k, v in ds.protocols.items()} == {"general": "general", "cc": "cc"}
        split = ds.protocols["cc"]
        assert stats(split.query) == {"images": 2, "ids": 2, "cameras": 2, "clothes": 2}
        assert stats(split.gallery) == {"images": 4, "ids": 2, "cameras": 4, "clothes": 4}
    train = by_name(ds.train)
    assert_relabelled(ds.train, lambda r: int(r.path.rsplit("/", 1)[1][:3]))
    assert (train["001_1_c11_015861.png"].pid, train["001_1_c11_015861.png"].camid) == (0, 10)
    assert [train[n].clothes_id for n in ("001_1_c11_015861.png", "001_2_c3_000100.png", "005_1_c1_000001.png")] == [0, 1, 2]
    test = by_name(split.query + split.gallery)
    assert test["010_1_c2_000001.png"].pid == 10 and test["010_1_c2_000001.png"].camid == 1
    assert test["010_1_c2_000001.png"].clothes_id == test["010_1_c5_000001.png"].clothes_id
    assert len({test[n].clothes_id for n in test if n.startswith("010")}) == 3


def test_parsing_lookup_relative_to_root_or_image_folder(root, tmp_path):
    maps = tmp_path / "maps"
    write_png_map(maps / "LTCC_ReID/train/001_1_c11_015861.png")  # relative to data.root
    write_png_map(maps / "query/010_1_c2_000001.png")  # relative to LTCC_ReID/
    ds = load("ltcc", root, maps, labels="atr")
    assert by_name(ds.train)["001_1_c11_015861.png"].parsing_path == str(maps / "LTCC_ReID/train/001_1_c11_015861.png")
    assert by_name(ds.train)["001_2_c3_000100.png"].parsing_path is None
    assert by_name(ds.protocols["cc"].query)["010_1_c2_000001.png"].parsing_path == str(maps / "query/010_1_c2_000001.png")
    assert ds.label_set == "atr"


def test_bad_inputs(root):
    base = root / "LTCC_ReID"
    write_image(base / "query/010-1-c2.png")
    with raises(r"LTCC: cannot parse file name query/010-1-c2.png under .*LTCC_ReID "
                r"\(expected PID_CLOTHES_cCAM_FRAME.png \(001_1_c11_015861.png\)\)"):
        load("ltcc", root)
    (base / "query/010-1-c2.png").unlink()
    shutil.rmtree(base / "test")
    (base / "test").mkdir()
    with raises(r"LTCC: no images in folder test under .*LTCC_ReID \(expected PID_CLOTHES"):
        load("ltcc", root)
    shutil.rmtree(base / "query")
    with raises(r"LTCC: no folder query under .*LTCC_ReID \(expected LTCC_ReID/\{train,query,test\}\)"):
        load("ltcc", root)


def test_query_identity_absent_from_gallery(root):
    for protocol in ("general", "cc"):
        assert_absent_reported("ltcc", root, protocol, "1 of 2 query identities (1 of 2 query images)", 11,
                               root / "LTCC_ReID/query/011_1_c4_000002.png")
