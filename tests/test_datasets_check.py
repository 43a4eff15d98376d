"""``check_dataset``: JSON shape, counts, parsing found/missing/resized, problems, deep decoding."""

from __future__ import annotations

import json
import re

import pytest

from ccreid.data.check import DatasetUnusable, check_dataset, match_problems
from ccreid.data.records import EvalSplit, ImageRecord
from ccreid.errors import CCReIDError
from test_datasets_common import TRICKY, write_npy_map, write_png_map, write_tree

LTCC = ["train/001_1_c11_015861.png", "train/001_2_c3_000100.png", "train/005_1_c1_000001.png",
        "query/010_1_c2_000001.png", "query/011_1_c4_000002.png", "query/012_1_c3_000009.png",
        "test/010_1_c5_000001.png", "test/010_2_c2_000003.png", "test/010_3_c7_000004.png",
        "test/012_1_c1_000001.png"]


@pytest.fixture
def ltcc(tmp_path):
    root = tmp_path / TRICKY / "LTCC_ReID"
    write_tree(root, LTCC)
    maps = tmp_path / "maps"
    write_png_map(maps / "train/001_1_c11_015861.png", value=19)  # same size as the image (4 x 8)
    write_png_map(maps / "train/001_2_c3_000100.png", size=(8, 16))  # resized
    write_npy_map(maps / "query/010_1_c2_000001.npy")  # H x W x C, same size
    write_npy_map(maps / "test/010_1_c5_000001.npy", size=(8, 16), classes=18)  # resized
    return root, maps


def test_report_shape_counts_and_problems(ltcc):
    root, maps = ltcc
    report = check_dataset("ltcc", root, parsing_root=maps)
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {"dataset", "train", "protocols", "parsing", "problems", "unreadable", "refused"}
    assert report["dataset"] == "ltcc"
    assert report["train"] == {"images": 3, "ids": 2, "cameras": 3, "clothes": 3}
    assert set(report["protocols"]) == {"general", "cc"}
    for entry in report["protocols"].values():
        assert entry == {"query": {"images": 3, "ids": 3, "cameras": 3, "clothes": 3},
                         "gallery": {"images": 4, "ids": 2, "cameras": 4, "clothes": 4}}
    assert report["parsing"] == {"found": 4, "missing": 6, "resized": 2}
    problems = report["problems"]
    for name in ("general", "cc"):
        assert (f"protocol {name}: 1 of 3 query identities (1 of 3 query images) are absent from the gallery "
                f"(e.g. pid 11: {root / 'query/011_1_c4_000002.png'})") in problems
    assert ("protocol cc: 1 of 3 query images have no valid gallery match under the cc rule "
            "(they are skipped when scoring)") in problems
    assert not any(p.startswith("protocol general: ") and "valid" in p for p in problems)
    assert any(re.match(rf"parsing: 6 of 10 images have no map under {re.escape(str(maps))} \(e\.g\. ", p) for p in problems)
    assert any(p.startswith("parsing: 2 maps differ in size from their image") for p in problems)
    assert (f"parsing: 1 .npy maps hold scores of another class count than the label set lip's 20 "
            f"(e.g. {maps / 'test/010_1_c5_000001.npy'} has 18); check data.parsing.labels") in problems
    assert not any(p.startswith("unreadable") for p in problems)


def test_without_parsing_root_counts_nothing(ltcc):
    report = check_dataset("ltcc", ltcc[0])
    assert report["parsing"] == {"found": 0, "missing": 0, "resized": 0}
    assert not any(p.startswith("parsing") for p in report["problems"])


def test_deep_finds_unreadable_images_and_foreign_labels(ltcc):
    root, maps = ltcc
    (root / "test/010_3_c7_000004.png").write_bytes(b"not a png at all")
    shallow = check_dataset("ltcc", root, parsing_root=maps, labels="atr")
    assert not any(p.startswith("unreadable") for p in shallow["problems"])  # no pixel decoding without deep
    deep = check_dataset("ltcc", root, parsing_root=maps, labels="atr", deep=True)
    unreadable = [p for p in deep["problems"] if p.startswith("unreadable file: ")]
    assert len(unreadable) == 1 and "010_3_c7_000004.png" in unreadable[0]
    labels = [p for p in deep["problems"] if p.startswith("parsing labels: ")]
    assert len(labels) == 2 and all("holds label 19, outside the label set's 0..17" in p for p in labels)
    assert "001_1_c11_015861.png" in labels[0] and "010_1_c2_000001.npy" in labels[1]  # PNG value, 20-class scores
    lip = check_dataset("ltcc", root, parsing_root=maps, labels="lip", deep=True)
    assert not any(p.startswith("parsing labels: ") for p in lip["problems"])
    assert (shallow["unreadable"], deep["unreadable"]) == (0, 1)


def test_deep_check_exits_non_zero_on_unreadable_files(ltcc, capsys):
    from ccreid.cli import main

    root, maps = ltcc
    args = ["data", "check", "--dataset", "ltcc", "--root", str(root), "--parsing", str(maps)]
    assert main(args) == 2  # a training image has no map: training would refuse
    write_png_map(maps / "train/005_1_c1_000001.png")
    assert main(args + ["--deep"]) == 0
    (root / "test/010_3_c7_000004.png").write_bytes(b"not a png at all")
    assert main(args) == 0  # headers only: not seen
    assert main(args + ["--deep"]) == 2
    assert "1 file(s) cannot be read" in capsys.readouterr().err


def test_unusable_dataset_has_a_one_line_reason(tmp_path):
    root = tmp_path / "prcc"
    write_tree(root / "rgb", ["train/001/A_1.jpg", "test/A/010/A_1.jpg", "test/B/010/B_1.jpg"])
    with pytest.raises(DatasetUnusable) as err:
        check_dataset("prcc", root)
    assert str(err.value) == f"PRCC: no folder rgb/test/C under {root} (expected rgb/{{train,val,test}})"
    assert isinstance(err.value, CCReIDError)
    with pytest.raises(CCReIDError, match="unknown dataset 'nope'"):
        check_dataset("nope", root)
    with pytest.raises(CCReIDError, match="data.parsing.labels"):
        check_dataset("prcc", root, labels="no-such-set")


def test_notes_and_validation_protocols(tmp_path):
    root = tmp_path / "prcc"
    write_tree(root / "rgb", ["train/001/A_1.jpg", "train/001/C_1.jpg", "val/002/A_1.jpg", "val/002/C_1.jpg",
                              "test/A/010/A_1.jpg", "test/B/010/B_1.jpg", "test/C/010/C_1.jpg"])
    report = check_dataset("prcc", root)
    assert set(report["protocols"]) == {"general", "sc", "cc", "val/general", "val/cc"}
    assert report["problems"] == []
    market = tmp_path / "market"
    write_tree(market, ["bounding_box_train/0001_c1s1_000001_00.jpg", "query/0002_c1s1_000001_00.jpg",
                        "bounding_box_test/0002_c2s1_000001_00.jpg"])
    assert check_dataset("market1501", market)["problems"] == [
        "Market-1501: no clothes labels; clothes id = person id (one outfit each), general protocol only"]


def brute_unmatched(split: EvalSplit) -> int:
    def valid(q, g):
        if g.pid != q.pid or g.camid == q.camid:
            return False
        return {"general": True, "cc": g.clothes_id != q.clothes_id, "sc": g.clothes_id == q.clothes_id}[split.rule]
    gallery_pids = {g.pid for g in split.gallery}
    return sum(q.pid in gallery_pids and not any(valid(q, g) for g in split.gallery) for q in split.query)


@pytest.mark.parametrize("rule", ["general", "sc", "cc"])
def test_match_problems_against_brute_force(rule):
    import random
    rng = random.Random(7)
    make = lambda k: [ImageRecord(f"{k}{i}", rng.randrange(6), rng.randrange(3), rng.randrange(3)) for i in range(40)]
    for _ in range(20):
        split = EvalSplit(make("q"), make("g")[:rng.randrange(1, 40)], rule)
        expected = brute_unmatched(split)
        lines = [p for p in match_problems("p", split) if "valid gallery match" in p]
        found = int(lines[0].split(": ")[1].split(" of ")[0]) if lines else 0
        assert found == expected
        absent = {q.pid for q in split.query} - {g.pid for g in split.gallery}
        assert any(f"{len(absent)} of" in p and "absent" in p for p in match_problems("p", split)) == bool(absent)


def test_no_query_identity_in_the_gallery_is_unusable(tmp_path):
    root = tmp_path / "VC-Clothes"
    write_tree(root, ["train/0001-01-01-01.jpg", "query/0010-02-01-01.jpg", "query/0011-03-01-01.jpg",
                      "gallery/0012-03-01-02.jpg"])
    with pytest.raises(DatasetUnusable) as err:
        check_dataset("vcclothes", root)
    assert str(err.value) == (f"vcclothes: protocol general: no query identity appears in the gallery "
                              f"(e.g. pid 10: {root / 'query/0010-02-01-01.jpg'}); "
                              f"expected query and gallery to share identities")
