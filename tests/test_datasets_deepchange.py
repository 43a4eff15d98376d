"""DeepChange adapter on a miniature tree with the real layout."""

from __future__ import annotations

import pytest

from ccreid.config import DataConfig, ParsingConfig
from ccreid.data.datasets import LOADERS
from test_datasets_common import (
    TRICKY, assert_absent_reported, assert_relabelled, by_name, load, raises, stats, write_image,
    write_npy_map, write_tree,
)

SPLITS = {
    "train-set": {"P0001_C3_D1_H10_12_34.jpg": 1, "P0001_C5_D2_H11_12_34.jpg": 2, "P0001_C5_D2_H12_12_34.jpg": 2,
                  "P0004_C1_D1_H09_1_1.jpg": 3},
    "val-set-query": {"P0100_C2_D3_H10_1_1.jpg": 1},
    "val-set-gallery": {"P0100_C2_D3_H11_1_1.jpg": 2, "P0100_C7_D4_H10_1_1.jpg": 3},
    "test-set-query": {"P0200_C1_D1_H10_1_1.jpg": 7, "P0201_C1_D1_H10_1_1.jpg": 8},
    "test-set-gallery": {"P0200_C1_D1_H12_1_1.jpg": 9, "P0200_C2_D5_H12_1_1.jpg": 10, "P0201_C3_D2_H1_1_1.jpg": 8},
}


@pytest.fixture
def base(tmp_path):
    base = tmp_path / TRICKY / "DeepChangeDataset"
    for folder, files in SPLITS.items():
        write_tree(base, [f"{folder}/{name}" for name in files])
        lines = ["image_name,tracklet_id"] + [f"{name},{tracklet}" for name, tracklet in files.items()]
        (base / f"{folder}-bbox.txt").write_text("\n".join(lines) + "\n")
    return base


def test_counts_tracklets_and_val(base):
    ds = load("deepchange", base.parent)
    assert stats(ds.train) == {"images": 4, "ids": 2, "cameras": 3, "clothes": 3}
    assert_relabelled(ds.train, lambda r: int(r.path.rsplit("/", 1)[1][1:5]))
    train = by_name(ds.train)
    assert train["P0001_C5_D2_H11_12_34.jpg"].camid == 5  # camera from the name in train
    assert train["P0001_C5_D2_H11_12_34.jpg"].clothes_id == train["P0001_C5_D2_H12_12_34.jpg"].clothes_id
    assert train["P0001_C3_D1_H10_12_34.jpg"].clothes_id != train["P0001_C5_D2_H11_12_34.jpg"].clothes_id
    assert list(ds.protocols) == ["general"]
    split = ds.protocols["general"]
    assert stats(split.query) == {"images": 2, "ids": 2, "cameras": 2, "clothes": 2}
    assert stats(split.gallery) == {"images": 3, "ids": 2, "cameras": 3, "clothes": 3}
    camids = {n: r.camid for n, r in by_name(split.query + split.gallery).items()}
    assert camids == {**SPLITS["test-set-query"], **SPLITS["test-set-gallery"]}  # tracklet ids
    assert list(ds.val) == ["general"]
    assert stats(ds.val["general"].query) == {"images": 1, "ids": 1, "cameras": 1, "clothes": 1}
    assert stats(ds.val["general"].gallery) == {"images": 2, "ids": 1, "cameras": 2, "clothes": 2}


def test_missing_list_falls_back_to_cameras_with_a_note(base, tmp_path):
    (base / "test-set-gallery-bbox.txt").unlink()
    write_npy_map(tmp_path / "hp/test-set-gallery/P0201_C3_D2_H1_1_1.npy")
    loaded = LOADERS["deepchange"](DataConfig(name="deepchange", root=str(base),
                                              parsing=ParsingConfig(root=str(tmp_path / "hp"))))
    gallery = by_name(loaded.dataset.protocols["general"].gallery)
    assert gallery["P0200_C2_D5_H12_1_1.jpg"].camid == 2
    assert gallery["P0201_C3_D2_H1_1_1.jpg"].parsing_path == str(tmp_path / "hp/test-set-gallery/P0201_C3_D2_H1_1_1.npy")
    assert loaded.notes[0] == "DeepChange: no clothes labels; outfit approximated by (person, day)"
    assert loaded.notes[1].startswith("DeepChange: no test-set-gallery-bbox.txt under ")


def test_bad_inputs(base):
    write_image(base / "test-set-query/P0202_C1_D1_H10_1_2.jpg")
    with raises(r"DeepChange: test-set-query/P0202_C1_D1_H10_1_2.jpg is not listed in test-set-query-bbox.txt under "):
        load("deepchange", base)
    (base / "test-set-query-bbox.txt").write_text("P0200_C1_D1_H10_1_1.jpg,7\nP0201_C1_D1_H10_1_1.jpg;8\n")
    with raises(r"DeepChange: test-set-query-bbox.txt line 2 is not 'file name,tracklet id'"):
        load("deepchange", base)
    write_image(base / "train-set/0001_C3.jpg")
    with raises(r"DeepChange: cannot parse file name train-set/0001_C3.jpg under .* \(expected P<pid>_C<cam>_<day>"):
        load("deepchange", base)
    (base / "train-set/0001_C3.jpg").unlink()
    for path in (base / "val-set-gallery").iterdir():
        path.unlink()
    with raises(r"DeepChange: no images in folder val-set-gallery under "):
        load("deepchange", base)
    (base / "val-set-gallery").rmdir()
    with raises(r"DeepChange: no folder val-set-gallery under .*DeepChangeDataset \(expected \{train-set,"):
        load("deepchange", base.parent)


def test_lists_must_match_their_folders(base):
    with open(base / "val-set-gallery-bbox.txt", "a") as handle:
        handle.write("P0100_C9_D9_H10_1_1.jpg,4\n")
    with raises(r"^DeepChange: val-set-gallery-bbox.txt under .*DeepChangeDataset lists P0100_C9_D9_H10_1_1.jpg, "
                r"which is not in folder val-set-gallery/ \(1 listed images missing\)$"):
        load("deepchange", base)
    (base / "val-set-gallery-bbox.txt").unlink()
    write_image(base / "train-set/P0004_C1_D2_H09_1_1.jpg")  # the train list is checked too
    with raises(r"^DeepChange: train-set/P0004_C1_D2_H09_1_1.jpg is not listed in train-set-bbox.txt under .* "
                r"\(1 images of train-set/ unlisted\)$"):
        load("deepchange", base)


def test_query_identity_absent_from_gallery(base):
    write_image(base / "test-set-query/P0300_C4_D1_H10_1_1.jpg")
    with open(base / "test-set-query-bbox.txt", "a") as handle:
        handle.write("P0300_C4_D1_H10_1_1.jpg,11\n")
    assert_absent_reported("deepchange", base, "general", "1 of 3 query identities (1 of 3 query images)", 300,
                           base / "test-set-query/P0300_C4_D1_H10_1_1.jpg")
