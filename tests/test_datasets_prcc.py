"""PRCC adapter on a miniature tree with the real layout."""

from __future__ import annotations

import re
import shutil

import pytest

from ccreid.data.datasets import single_shot_galleries
from test_datasets_common import (
    TRICKY, assert_absent_reported, assert_relabelled, load, raises, stats, write_image, write_npy_map, write_png_map, write_tree,
)

TRAIN = ["train/001/A_cropped_rgb001.jpg", "train/001/B_cropped_rgb002.jpg", "train/001/C_cropped_rgb003.jpg",
         "train/001/C_cropped_rgb004.jpg", "train/040/A_cropped_rgb001.jpg", "train/040/C_cropped_rgb002.jpg",
         "train/007/B_cropped_rgb001.jpg"]
VAL = ["val/090/A_1.jpg", "val/090/B_1.jpg", "val/090/C_1.jpg", "val/091/A_1.jpg", "val/091/C_1.jpg"]
TEST = ["test/A/010/A_1.jpg", "test/A/010/A_2.jpg", "test/A/011/A_1.jpg",
        "test/B/010/B_1.jpg", "test/B/011/B_1.jpg", "test/B/011/B_2.jpg",
        "test/C/010/C_1.jpg", "test/C/012/C_1.jpg"]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / TRICKY / "prcc"
    write_tree(root / "rgb", TRAIN + VAL + TEST)
    return root


def test_counts_protocols_and_val(root):
    ds = load("prcc", root)
    assert stats(ds.train) == {"images": 7, "ids": 3, "cameras": 3, "clothes": 5}
    assert set(ds.protocols) == {"general", "sc", "cc"}
    assert all(split.rule == "general" for split in ds.protocols.values())
    assert stats(ds.protocols["sc"].query) == {"images": 3, "ids": 2, "cameras": 1, "clothes": 2}
    assert stats(ds.protocols["cc"].query) == {"images": 2, "ids": 2, "cameras": 1, "clothes": 2}
    assert stats(ds.protocols["general"].query) == {"images": 5, "ids": 3, "cameras": 2, "clothes": 4}
    for split in ds.protocols.values():
        assert stats(split.gallery) == {"images": 3, "ids": 2, "cameras": 1, "clothes": 2}
    assert set(ds.val) == {"general", "sc", "cc"}
    assert [stats(ds.val[k].query)["images"] for k in ("general", "sc", "cc")] == [3, 1, 2]
    assert stats(ds.val["general"].gallery) == {"images": 2, "ids": 2, "cameras": 1, "clothes": 2}
    assert ds.label_set == "lip"
    assert stats(load("prcc", root / "rgb").train) == stats(ds.train)  # data.root may be the rgb/ folder


def test_cameras_clothes_and_relabelling(root):
    ds = load("prcc", root)
    raw_pid = {r.path: int(r.path.split("/")[-2]) for r in ds.train}
    assert_relabelled(ds.train, lambda r: raw_pid[r.path])
    person1 = [r for r in ds.train if raw_pid[r.path] == 1]
    cams = {r.path.rsplit("/", 1)[1][0]: r for r in person1}
    assert {r.camid for r in person1} == {0, 1, 2} and cams["A"].camid == 0 and cams["C"].camid == 2
    assert cams["A"].clothes_id == cams["B"].clothes_id != cams["C"].clothes_id
    assert len({r.clothes_id for r in person1 if r.camid == 2}) == 1  # both C images: one outfit
    # clothes are per person: 001-A/B, 001-C, 007-B, 040-A, 040-C in sorted key order
    assert sorted({(raw_pid[r.path], r.camid == 2, r.clothes_id) for r in ds.train}) == [
        (1, False, 0), (1, True, 1), (7, False, 2), (40, False, 3), (40, True, 4)]
    gallery = ds.protocols["general"].gallery
    query = ds.protocols["general"].query
    assert sorted({r.pid for r in gallery + query}) == [10, 11, 12]  # test pids stay raw
    outfit = {(r.pid, r.camid): r.clothes_id for r in gallery + query}
    assert outfit[(10, 0)] == outfit[(10, 1)] != outfit[(10, 2)]


def test_parsing_lookup_lip_png_and_atr_npy(root, tmp_path):
    maps = tmp_path / "parsing"
    write_png_map(maps / "rgb/train/001/A_cropped_rgb001.png")
    write_npy_map(maps / "train/040/C_cropped_rgb002.npy", classes=18)  # relative to rgb/
    write_png_map(maps / "rgb/test/A/010/A_1.png")
    ds = load("prcc", root, maps)
    found = {r.path: r.parsing_path for r in ds.train if r.parsing_path}
    assert found == {str(root / "rgb/train/001/A_cropped_rgb001.jpg"): str(maps / "rgb/train/001/A_cropped_rgb001.png"),
                     str(root / "rgb/train/040/C_cropped_rgb002.jpg"): str(maps / "train/040/C_cropped_rgb002.npy")}
    assert sum(r.parsing_path is not None for r in ds.protocols["sc"].gallery) == 1
    assert load("prcc", root, maps, labels="atr").label_set == "atr"
    assert all(r.parsing_path is None for r in load("prcc", root).train)


def test_single_shot_galleries(root):
    gallery = load("prcc", root).protocols["cc"].gallery
    shots = single_shot_galleries(gallery, repeats=10, seed=3)
    assert len(shots) == 10
    assert all(sorted(r.pid for r in shot) == [10, 11] for shot in shots)
    assert shots == single_shot_galleries(gallery, repeats=10, seed=3)
    assert {r.path for shot in shots for r in shot} == {r.path for r in gallery}  # both 010 images drawn


def test_bad_inputs(root):
    shutil.rmtree(root / "rgb/test/C")
    with raises(rf"^PRCC: no folder rgb/test/C under {re.escape(str(root))} \(expected rgb/\{{train,val,test\}}\)$"):
        load("prcc", root)
    write_image(root / "rgb/test/C/010/C_1.jpg")
    write_image(root / "rgb/train/A_flat.jpg")
    with raises(r"PRCC: rgb/train/A_flat.jpg under .* is not inside a person folder \(expected rgb/train/<pid>/"):
        load("prcc", root)
    (root / "rgb/train/A_flat.jpg").unlink()
    write_image(root / "rgb/train/001/X_1.jpg")
    with raises(r"PRCC: cannot parse file name rgb/train/001/X_1.jpg under .* \(expected a name starting with"):
        load("prcc", root)
    (root / "rgb/train/001/X_1.jpg").unlink()
    (root / "rgb/train/abc").mkdir()
    with raises(r"PRCC: folder rgb/train/abc under .* is not a numeric pid"):
        load("prcc", root)
    (root / "rgb/train/abc").rmdir()
    (root / "rgb/train/050").mkdir()
    with raises(r"PRCC: no images in folder rgb/train/050 under "):
        load("prcc", root)
    shutil.rmtree(root / "rgb")
    with raises(r"PRCC: no folder rgb under .* \(expected rgb/\{train,val,test\}\)"):
        load("prcc", root)


def test_query_identity_absent_from_gallery(root):
    assert_absent_reported("prcc", root, "cc", "1 of 2 query identities (1 of 2 query images)", 12,
                           root / "rgb/test/C/012/C_1.jpg")
