"""Market-1501 adapter on a miniature tree with the real layout."""

from __future__ import annotations

import pytest

from test_datasets_common import (
    TRICKY, assert_absent_reported, assert_relabelled, by_name, load, raises, stats, write_image,
    write_png_map, write_tree,
)

FILES = ["bounding_box_train/0002_c1s1_000451_03.jpg", "bounding_box_train/0002_c2s1_000301_01.jpg",
         "bounding_box_train/0007_c3s1_000001_01.jpg",
         "query/0010_c1s1_000001_00.jpg", "query/0011_c2s1_000001_00.jpg",
         "bounding_box_test/0010_c2s1_000002_01.jpg", "bounding_box_test/0000_c1s1_000003_01.jpg",
         "bounding_box_test/-1_c3s1_000004_01.jpg", "bounding_box_test/0010_c1s1_000005_01.jpg"]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / TRICKY
    write_tree(root / "Market-1501-v15.09.15", FILES)
    (root / "Market-1501-v15.09.15/bounding_box_train/Thumbs.db").write_bytes(b"not an image")
    return root


def test_counts_junk_and_distractors(root):
    ds = load("market1501", root)
    assert stats(ds.train) == {"images": 3, "ids": 2, "cameras": 3, "clothes": 2}
    assert list(ds.protocols) == ["general"] and ds.protocols["general"].rule == "general"
    split = ds.protocols["general"]
    assert stats(split.query) == {"images": 2, "ids": 2, "cameras": 2, "clothes": 2}
    assert stats(split.gallery) == {"images": 3, "ids": 2, "cameras": 2, "clothes": 2}
    assert sorted(r.pid for r in split.gallery) == [0, 10, 10]  # -1 dropped, 0 kept
    assert_relabelled(ds.train, lambda r: int(r.path.rsplit("/", 1)[1][:4]))
    assert all(r.clothes_id == r.pid for r in ds.train)  # one outfit per person
    assert by_name(ds.train)["0002_c2s1_000301_01.jpg"].camid == 1


def test_parsing_png(root, tmp_path):
    write_png_map(tmp_path / "maps/query/0011_c2s1_000001_00.png")
    ds = load("market1501", root / "Market-1501-v15.09.15", tmp_path / "maps")
    assert [n for n, r in by_name(ds.protocols["general"].query).items() if r.parsing_path] == ["0011_c2s1_000001_00.jpg"]


def test_bad_inputs(root):
    base = root / "Market-1501-v15.09.15"
    write_image(base / "query/0012c1s1.jpg")
    with raises(r"Market-1501: cannot parse file name query/0012c1s1.jpg under .* \(expected PPPP_cCsS_FFFFFF_BB.jpg"):
        load("market1501", root)
    for path in (base / "query").iterdir():
        path.unlink()
    write_image(base / "query/-1_c1s1_000001_00.jpg")
    with raises(r"Market-1501: split Market-1501-v15.09.15/query holds no usable images \(only junk images of pid -1\)"):
        load("market1501", root)
    (base / "query/-1_c1s1_000001_00.jpg").unlink()
    (base / "query").rmdir()
    with raises(r"Market-1501: no folder query under .*Market-1501-v15.09.15 \(expected"):
        load("market1501", root)


def test_query_identity_absent_from_gallery(root):
    assert_absent_reported("market1501", root, "general", "1 of 2 query identities (1 of 2 query images)", 11,
                           root / "Market-1501-v15.09.15/query/0011_c2s1_000001_00.jpg")
