"""VC-Clothes adapter on a miniature tree with the real layout."""

from __future__ import annotations

import pytest

from ccreid.data.datasets import LOADERS
from ccreid.config import DataConfig
from test_datasets_common import (
    TRICKY, assert_absent_reported, assert_relabelled, by_name, load, raises, stats, write_image,
    write_npy_map, write_tree,
)

FILES = ["train/0001-01-01-01.jpg", "train/0001-03-02-01.jpg", "train/0002-02-01-05.jpg",
         "query/0010-02-01-01.jpg", "query/0010-03-01-02.jpg", "query/0011-04-02-01.jpg", "query/0013-01-01-01.jpg",
         "gallery/0010-03-01-03.jpg", "gallery/0010-04-02-01.jpg", "gallery/0010-02-01-09.jpg",
         "gallery/0011-03-01-01.jpg", "gallery/0012-01-01-01.jpg"]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / TRICKY
    write_tree(root / "VC-Clothes", FILES)
    return root


def test_counts_and_camera_subset_protocols(root):
    ds = load("vcclothes", root)
    assert stats(ds.train) == {"images": 3, "ids": 2, "cameras": 3, "clothes": 3}
    assert {k: v.rule for k, v in ds.protocols.items()} == {
        "general": "general", "sc": "general", "cc": "general", "sc_clothes": "sc", "cc_clothes": "cc"}
    expected = {
        "general": ({"images": 4, "ids": 3, "cameras": 4, "clothes": 3}, {"images": 5, "ids": 3, "cameras": 4, "clothes": 4}),
        "sc": ({"images": 2, "ids": 1, "cameras": 2, "clothes": 1}, {"images": 3, "ids": 2, "cameras": 2, "clothes": 2}),
        "cc": ({"images": 2, "ids": 2, "cameras": 2, "clothes": 2}, {"images": 3, "ids": 2, "cameras": 2, "clothes": 3}),
    }
    for name, (query, gallery) in expected.items():
        assert (stats(ds.protocols[name].query), stats(ds.protocols[name].gallery)) == (query, gallery), name
    for name in ("sc_clothes", "cc_clothes"):
        assert ds.protocols[name].query == ds.protocols["general"].query
    assert {r.camid for r in ds.protocols["sc"].query + ds.protocols["sc"].gallery} == {1, 2}
    assert {r.camid for r in ds.protocols["cc"].query + ds.protocols["cc"].gallery} == {2, 3}


def test_labels(root):
    ds = load("vcclothes", root / "VC-Clothes")
    assert_relabelled(ds.train, lambda r: int(r.path.rsplit("/", 1)[1][:4]))
    train = by_name(ds.train)
    assert [train[n].clothes_id for n in ("0001-01-01-01.jpg", "0001-03-02-01.jpg", "0002-02-01-05.jpg")] == [0, 1, 2]
    assert train["0001-03-02-01.jpg"].camid == 2
    test = by_name(ds.protocols["general"].query + ds.protocols["general"].gallery)
    assert test["0010-02-01-01.jpg"].clothes_id == test["0010-03-01-03.jpg"].clothes_id != test["0010-04-02-01.jpg"].clothes_id
    assert test["0010-02-01-01.jpg"].clothes_id != test["0011-03-01-01.jpg"].clothes_id  # outfit numbers are per person


def test_parsing_npy_and_missing_subset(root, tmp_path):
    write_npy_map(tmp_path / "p/VC-Clothes/gallery/0012-01-01-01.npy")
    ds = load("vcclothes", root, tmp_path / "p")
    assert [n for n, r in by_name(ds.protocols["general"].gallery).items() if r.parsing_path] == ["0012-01-01-01.jpg"]
    for name in ("0010-03-01-02.jpg", "0011-04-02-01.jpg"):  # no query left from cameras 3 and 4
        (root / "VC-Clothes/query" / name).unlink()
    loaded = LOADERS["vcclothes"](DataConfig(name="vcclothes", root=str(root)))
    assert "cc" not in loaded.dataset.protocols
    assert loaded.notes == ["VC-Clothes: no query or gallery images from cameras 3 and 4; protocol cc not built"]


def test_bad_inputs(root):
    write_image(root / "VC-Clothes/train/0001_01_01_01.jpg")
    with raises(r"VC-Clothes: cannot parse file name train/0001_01_01_01.jpg under .*VC-Clothes \(expected PID-CAM-CLOTHES-FRAME"):
        load("vcclothes", root)
    for path in (root / "VC-Clothes/gallery").iterdir():
        path.unlink()
    (root / "VC-Clothes/train/0001_01_01_01.jpg").unlink()
    with raises(r"VC-Clothes: no images in folder gallery under "):
        load("vcclothes", root)
    (root / "VC-Clothes/gallery").rmdir()
    with raises(r"VC-Clothes: no folder gallery under .*VC-Clothes \(expected \{train,query,gallery\}\)"):
        load("vcclothes", root)


def test_query_identity_absent_from_gallery(root):
    assert_absent_reported("vcclothes", root, "general", "1 of 3 query identities (1 of 4 query images)", 13,
                           root / "VC-Clothes/query/0013-01-01-01.jpg")
