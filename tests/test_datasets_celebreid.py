"""Celeb-reID and Celeb-reID-light adapters on miniature trees."""

from __future__ import annotations

import pytest

from ccreid.config import DataConfig
from ccreid.data.datasets import LOADERS
from test_datasets_common import (
    TRICKY, assert_absent_reported, assert_relabelled, by_name, load, raises, stats, write_image,
    write_png_map, write_tree,
)

FILES = ["train/1_1_0.jpg", "train/1_2_0.jpg", "train/3_1_0.jpg",
         "query/10_5_1.jpg", "query/11_1_1.jpg", "gallery/10_6_0.jpg", "gallery/10_7_0.jpg"]


@pytest.mark.parametrize("name,folder", [("celebreid", "Celeb-reID"), ("celebreid_light", "Celeb-reID-light")])
def test_counts_labels_and_note(tmp_path, name, folder):
    root = tmp_path / TRICKY
    write_tree(root / folder, FILES)
    ds = load(name, root)
    assert ds.name == name
    assert stats(ds.train) == {"images": 3, "ids": 2, "cameras": 1, "clothes": 3}  # one outfit per image
    assert list(ds.protocols) == ["general"]
    split = ds.protocols["general"]
    assert stats(split.query) == {"images": 2, "ids": 2, "cameras": 1, "clothes": 2}
    assert stats(split.gallery) == {"images": 2, "ids": 1, "cameras": 1, "clothes": 2}
    assert {r.camid for r in split.query} == {0} and {r.camid for r in split.gallery} == {1}
    assert_relabelled(ds.train, lambda r: int(r.path.rsplit("/", 1)[1].split("_")[0]))
    notes = LOADERS[name](DataConfig(name=name, root=str(root))).notes
    assert len(notes) == 1 and "no clothes labels exist" in notes[0] and "general protocol only" in notes[0]


def test_parsing_and_bad_inputs(tmp_path):
    root = tmp_path / "Celeb-reID"
    write_tree(root, FILES)
    write_png_map(tmp_path / "maps/gallery/10_7_0.png")
    ds = load("celebreid", root, tmp_path / "maps", labels="atr")
    assert [n for n, r in by_name(ds.protocols["general"].gallery).items() if r.parsing_path] == ["10_7_0.jpg"]
    write_image(root / "train/1_a_0.jpg")
    with raises(r"Celeb-reID: cannot parse file name train/1_a_0.jpg under .* \(expected PID_A_B.jpg, three underscore-separated numbers \(1_1_0.jpg\)\)$"):
        load("celebreid", root)
    with raises(r"Celeb-reID-light: no folder train under .* \(expected Celeb-reID-light/\{train,query,gallery\}\)"):
        load("celebreid_light", tmp_path / "maps")


def test_query_identity_absent_from_gallery(tmp_path):
    root = tmp_path / TRICKY
    write_tree(root / "Celeb-reID-light", FILES)
    assert_absent_reported("celebreid_light", root, "general", "1 of 2 query identities (1 of 2 query images)", 11,
                           root / "Celeb-reID-light/query/11_1_1.jpg")
