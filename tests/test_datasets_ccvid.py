"""CCVID adapter on a miniature tree, against a transcription of Simple-CCReID's loader."""

from __future__ import annotations

import glob
import json
import os.path as osp

import pytest

from ccreid.cli import main
from ccreid.data.check import check_dataset
from ccreid.data.records import TrackletRecord
from test_datasets_common import TRICKY, load, raises, write_png_map

# tracklet path, pid, clothes label, frames (names out of order on purpose)
TRAIN = [("session1/001_01", "001", "u0_l0", ["000003.jpg", "000001.jpg", "000002.jpg"]),
         ("session1/001_02", "001", "u1_l0", ["000001.jpg"]),
         ("session3/010_04", "010", "u0_l0", ["000001.jpg", "000010.jpg"]),
         ("session2/002_01", "002", "u0_l0", ["a.jpg", "b.jpg"])]
QUERY = [("session1/100_01", "100", "u0_l0", ["1.jpg", "2.jpg"]),
         ("session3/100_02", "100", "u1_l1", ["1.jpg"]),
         ("session2/101_03", "101", "u0_l0", ["1.jpg"])]
GALLERY = [("session1/100_05", "100", "u0_l0", ["1.jpg"]),
           ("session2/100_06", "100", "u2_l2", ["1.jpg", "3.jpg", "2.jpg"]),
           ("session1/101_07", "101", "u0_l0", ["1.jpg"])]


def write_ccvid(root, splits=(("train", TRAIN), ("query", QUERY), ("gallery", GALLERY))):
    base = root / "CCVID"
    for name, lines in splits:
        base.mkdir(parents=True, exist_ok=True)
        (base / f"{name}.txt").write_text("".join(f"{path} {pid} {label}\n" for path, pid, label, _ in lines))
        for path, _, _, frames in lines:
            (base / path).mkdir(parents=True, exist_ok=True)
            for frame in frames:
                (base / path / frame).write_bytes(b"")
    (base / "session1/001_01/.hidden").write_bytes(b"")
    return base


@pytest.fixture
def root(tmp_path):
    root = tmp_path / TRICKY
    write_ccvid(root)
    return root


class ReferenceCCVID:
    """Transcribed from Simple-CCReID ``data/datasets/ccvid.py`` (``_clothes2label_test`` and
    ``_process_data``; statistics and logging left out)."""

    def __init__(self, root):
        self.root = osp.join(root, 'CCVID')
        self.train, *_ = self._process_data(osp.join(self.root, 'train.txt'), relabel=True)
        clothes2label = self._clothes2label_test(osp.join(self.root, 'query.txt'), osp.join(self.root, 'gallery.txt'))
        self.query, *_ = self._process_data(osp.join(self.root, 'query.txt'), relabel=False, clothes2label=clothes2label)
        self.gallery, *_ = self._process_data(osp.join(self.root, 'gallery.txt'), relabel=False,
                                              clothes2label=clothes2label)

    def _clothes2label_test(self, query_path, gallery_path):
        clothes_container = set()
        for path in (query_path, gallery_path):
            with open(path, 'r') as f:
                for line in f:
                    new_line = line.rstrip()
                    tracklet_path, pid, clothes_label = new_line.split()
                    clothes = '{}_{}'.format(pid, clothes_label)
                    clothes_container.add(clothes)
        clothes_container = sorted(clothes_container)
        return {clothes: label for label, clothes in enumerate(clothes_container)}

    def _process_data(self, data_path, relabel=False, clothes2label=None):
        tracklet_path_list = []
        pid_container = set()
        clothes_container = set()
        with open(data_path, 'r') as f:
            for line in f:
                new_line = line.rstrip()
                tracklet_path, pid, clothes_label = new_line.split()
                tracklet_path_list.append((tracklet_path, pid, clothes_label))
                clothes = '{}_{}'.format(pid, clothes_label)
                pid_container.add(pid)
                clothes_container.add(clothes)
        pid_container = sorted(pid_container)
        clothes_container = sorted(clothes_container)
        pid2label = {pid: label for label, pid in enumerate(pid_container)}
        if clothes2label is None:
            clothes2label = {clothes: label for label, clothes in enumerate(clothes_container)}
        tracklets = []
        for tracklet_path, pid, clothes_label in tracklet_path_list:
            img_paths = glob.glob(osp.join(self.root, tracklet_path, '*'))
            img_paths.sort()
            clothes = '{}_{}'.format(pid, clothes_label)
            clothes_id = clothes2label[clothes]
            if relabel:
                pid = pid2label[pid]
            else:
                pid = int(pid)
            session = tracklet_path.split('/')[0]
            cam = tracklet_path.split('_')[1]
            if session == 'session3':
                camid = int(cam) + 12
            else:
                camid = int(cam)
            tracklets.append((img_paths, pid, camid, clothes_id))
        return (tracklets,)


def as_tuples(records):
    return [(list(r.frames), r.pid, r.camid, r.clothes_id) for r in records]


def test_records_equal_the_reference_loader(root):
    ds = load("ccvid", root)
    ref = ReferenceCCVID(str(root))
    assert as_tuples(ds.train) == ref.train
    for rule in ("general", "sc", "cc"):
        split = ds.protocols[rule]
        assert split.rule == rule
        assert as_tuples(split.query) == ref.query and as_tuples(split.gallery) == ref.gallery
    assert ds.is_video and all(isinstance(r, TrackletRecord) for r in ds.all_records())
    assert [r.camid for r in ds.train] == [1, 2, 16, 1]  # session3: + 12
    assert ds.train[0].frames[0].endswith("001_01/000001.jpg")  # sorted, hidden file skipped


def test_data_check_json_counts(root, capsys):
    assert main(["data", "check", "--dataset", "ccvid", "--root", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"] == {"tracklets": 4, "images": 8, "ids": 3, "cameras": 3, "clothes": 4}
    general = report["protocols"]["general"]
    assert general["query"] == {"tracklets": 3, "images": 4, "ids": 2, "cameras": 3, "clothes": 3}
    assert general["gallery"] == {"tracklets": 3, "images": 5, "ids": 2, "cameras": 3, "clothes": 3}
    assert set(report["protocols"]) == {"general", "sc", "cc"}
    assert "protocol sc: 1 of 3 query tracklets have no valid gallery match under the sc rule " \
           "(they are skipped when scoring)" in report["problems"]


def test_parsing_maps_per_frame(root, tmp_path):
    maps = tmp_path / "maps"
    write_png_map(maps / "session1/001_01/000002.png")
    ds = load("ccvid", root / "CCVID", parsing=maps)
    assert ds.train[0].parsing_paths == (None, str(maps / "session1/001_01/000002.png"), None)
    assert ds.train[1].parsing_paths is None
    report = check_dataset("ccvid", str(root), parsing_root=str(maps))
    assert report["parsing"] == {"found": 1, "missing": 16, "resized": 0}


@pytest.mark.parametrize("text,error", [
    ("session1/001_01 001\n", r"CCVID: train.txt line 1 under .* is not 'tracklet_path pid clothes_label'"),
    ("session1/001_01 001 u0\nsession1/001_01 x1 u0\n", r"CCVID: train.txt line 2 under .* is not 'tracklet_path"),
    ("session1/001 001 u0\n", r"CCVID: train.txt line 1 under .*: no camera number after the first '_' of "
                              r"'session1/001'"),
    ("\nsession1/009_01 009 u0\n", r"CCVID: tracklet folder session1/009_01 of train.txt line 2 under .* does not exist"),
    ("", r"CCVID: train.txt under .* lists no tracklet"),
])
def test_layout_errors_name_file_and_line(root, text, error):
    (root / "CCVID/train.txt").write_text(text)
    with raises(error):
        load("ccvid", root)


def test_empty_folder_and_missing_list(root, capsys):
    (root / "CCVID/session9/009_01").mkdir(parents=True)
    (root / "CCVID/query.txt").write_text("session9/009_01 009 u0\n")
    with raises(r"CCVID: tracklet folder session9/009_01 of query.txt line 1 under .* holds no frames"):
        load("ccvid", root)
    (root / "CCVID/gallery.txt").unlink()
    assert main(["data", "check", "--dataset", "ccvid", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "CCVID: no file gallery.txt under" in err and len(err.strip().splitlines()) == 1


def test_data_check_names_the_bad_line_in_one_line(root, capsys):
    (root / "CCVID/query.txt").write_text("session1/100_01 100 u0_l0\nsession1/100_02 100\n")
    assert main(["data", "check", "--dataset", "ccvid", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CCVID: query.txt line 2 under " in err
