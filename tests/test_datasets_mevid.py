"""MEVID adapter on a miniature tree, against a transcription of Kitware/MEVID's CAL loader."""

from __future__ import annotations

import json
import os.path as osp

import numpy as np
import pytest

from ccreid.cli import main
from test_datasets_common import TRICKY, load, raises

TRAIN_NAMES = ["0010O001C330T001F00001.jpg", "0010O001C330T001F00002.jpg", "0010O002C331T002F00001.jpg",
               "0002O001C330T003F00001.jpg", "0002O001C330T003F00002.jpg", "0002O001C330T003F00003.jpg"]
TRAIN_INFO = [[0, 1, 10, 1, 330], [2, 2, 10, 2, 331], [3, 5, 2, 1, 330],
              [9, 12, 2, 1, 330],  # beyond the names: dropped
              [4, 3, 2, 1, 330]]  # start after end: dropped
TEST_NAMES = ["0100O001C330T001F00001.jpg", "0100O001C330T001F00002.jpg", "0100O002C331T002F00001.jpg",
              "0101O001C332T003F00001.jpg", "0101O001C333T004F00001.jpg", "0100O003C334T005F00001.jpg"]
TEST_INFO = [[0, 1, 100, 1, 330], [2, 2, 100, 2, 331], [3, 3, 101, 1, 332], [4, 4, 101, 1, 333],
             [5, 5, 100, 3, 334],
             [7, 8, 100, 9, 335]]  # dropped, yet its outfit 100_9 takes a clothes id (as the reference)
QUERY_IDX = [0, 2]


def write_mevid(root):
    root.mkdir(parents=True, exist_ok=True)
    for side, names, info in (("train", TRAIN_NAMES, TRAIN_INFO), ("test", TEST_NAMES, TEST_INFO)):
        (root / f"{side}_name.txt").write_text("".join(f"{n}\n" for n in names))
        for name in names:
            (root / f"bbox_{side}" / name[:4]).mkdir(parents=True, exist_ok=True)
            (root / f"bbox_{side}" / name[:4] / name).write_bytes(b"")
        if side == "train":
            (root / "track_train_info.txt").write_text("".join(" ".join(map(str, r)) + "\n" for r in info))
        else:
            np.savetxt(root / "track_test_info.txt", np.array(info, dtype=float))  # %.18e, as numpy writes
    (root / "query_IDX.txt").write_text("".join(f"{i}\n" for i in QUERY_IDX))


@pytest.fixture
def root(tmp_path):
    root = tmp_path / TRICKY / "mevid"
    write_mevid(root)
    return root


class ReferenceMEVID:
    """Transcribed from Kitware/MEVID ``CAL/data/datasets/ccvid.py`` (``__init__``,
    ``_clothes2label_test``, ``_get_names``, ``_process_mevid_data``; statistics left out;
    ``np.int`` is ``int`` in current NumPy)."""

    def __init__(self, root):
        self.root = root
        train_names = self._get_names(osp.join(self.root, 'train_name.txt'))
        train_info = np.loadtxt(osp.join(self.root, 'track_train_info.txt')).astype(int)
        test_names = self._get_names(osp.join(self.root, 'test_name.txt'))
        test_info = np.loadtxt(osp.join(self.root, 'track_test_info.txt')).astype(int)
        query_IDX = np.loadtxt(osp.join(self.root, 'query_IDX.txt')).astype(int)
        query_info = test_info[query_IDX, :]
        gallery_IDX = [i for i in range(0, test_info.shape[0], 1) if i not in query_IDX]
        gallery_info = test_info[gallery_IDX, :]
        self.train = self._process_mevid_data(train_names, train_info, 'bbox_train', relabel=True)
        clothes2label = self._clothes2label_test(query_info, gallery_info)
        self.query = self._process_mevid_data(test_names, query_info, 'bbox_test', relabel=False,
                                              clothes2label=clothes2label)
        self.gallery = self._process_mevid_data(test_names, gallery_info, 'bbox_test', relabel=False,
                                                clothes2label=clothes2label)

    def _clothes2label_test(self, query_info, gallery_info):
        clothes_container = set()
        for info in (query_info, gallery_info):
            for idx in range(info.shape[0]):
                _, _, pid, clothes_label, _ = info[idx, ...]
                clothes_container.add('{}_{}'.format(pid, clothes_label))
        clothes_container = sorted(clothes_container)
        return {clothes: label for label, clothes in enumerate(clothes_container)}

    def _get_names(self, fpath):
        names = []
        with open(fpath, 'r') as f:
            for line in f:
                names.append(line.rstrip())
        return names

    def _process_mevid_data(self, track_names, track_info, home_dir, relabel=False, clothes2label=None):
        tracklet_path_list = []
        pid_container = set()
        clothes_container = set()
        for track_idx in range(track_info.shape[0]):
            sta_idx, end_idx, pid, clothes_label, camid = track_info[track_idx, ...]
            img_names = track_names[sta_idx:end_idx+1]
            if len(img_names) == 0:
                continue
            tracklet_path_list.append((sta_idx, end_idx, pid, clothes_label, camid))
            pid_container.add(pid)
            clothes_container.add('{}_{}'.format(pid, clothes_label))
        pid_container = sorted(pid_container)
        clothes_container = sorted(clothes_container)
        pid2label = {pid: label for label, pid in enumerate(pid_container)}
        if clothes2label is None:
            clothes2label = {clothes: label for label, clothes in enumerate(clothes_container)}
        tracklets = []
        for sta_idx, end_idx, pid, clothes_label, camid in tracklet_path_list:
            img_names = track_names[sta_idx:end_idx+1]
            img_paths = [osp.join(self.root, home_dir, img_name[:4], img_name) for img_name in img_names]
            clothes_id = clothes2label['{}_{}'.format(pid, clothes_label)]
            if relabel:
                pid = pid2label[pid]
            else:
                pid = int(pid)
            tracklets.append((img_paths, pid, camid, clothes_id))
        return tracklets


def as_tuples(records):
    return [(list(r.frames), r.pid, r.camid, r.clothes_id) for r in records]


def test_records_equal_the_reference_loader(root):
    ds = load("mevid", root.parent)  # the wrapper folder "mevid" is found
    ref = ReferenceMEVID(str(root))
    assert as_tuples(ds.train) == ref.train
    for rule in ("general", "sc", "cc"):
        assert as_tuples(ds.protocols[rule].query) == ref.query
        assert as_tuples(ds.protocols[rule].gallery) == ref.gallery
    assert [r.pid for r in ds.train] == [1, 1, 0] and [r.clothes_id for r in ds.train] == [0, 1, 2]
    assert [r.clothes_id for r in ds.protocols["general"].gallery] == [1, 4, 2]  # 100_9 counted


def test_data_check_counts_dropped_tracklets(root, capsys):
    assert main(["data", "check", "--dataset", "mevid", "--root", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"] == {"tracklets": 3, "images": 6, "ids": 2, "cameras": 2, "clothes": 3, "dropped": 2}
    general = report["protocols"]["general"]
    assert general["query"] == {"tracklets": 2, "images": 3, "ids": 2, "cameras": 2, "clothes": 2, "dropped": 0}
    assert general["gallery"] == {"tracklets": 3, "images": 3, "ids": 2, "cameras": 3, "clothes": 3, "dropped": 1}
    assert "MEVID: 2 train tracklet(s) have no frame in their name list's range; dropped" in report["problems"]
    assert "MEVID: 1 gallery tracklet(s) have no frame in their name list's range; dropped" in report["problems"]


@pytest.mark.parametrize("file,text,error", [
    ("track_train_info.txt", "0 1 10 1 330\n0 1 10 1\n", r"MEVID: track_train_info.txt line 2 under .* holds 4 values"),
    ("track_train_info.txt", "# start end pid outfit cam\n0 1.5 10 1 330\n",
     r"MEVID: track_train_info.txt line 2 under .*: '1.5' is not an integer"),
    ("track_train_info.txt", "0 -1 10 1 330\n", r"MEVID: track_train_info.txt line 1 under .*: negative frame index"),
    ("query_IDX.txt", "0\n\n6\n", r"MEVID: query_IDX.txt line 3 under .*: row 6 is outside track_test_info.txt's rows 0..5"),
    ("train_name.txt", "0010O001C330T001F00001.jpg\n\n", r"MEVID: track_train_info.txt line 1 under .* uses line 2 of "
                                                         r"train_name.txt, which is blank"),
])
def test_layout_errors_name_file_and_line(root, file, text, error):
    (root / file).write_text(text)
    with raises(error):
        load("mevid", root)


def test_missing_frame_folder_and_file(root, capsys):
    for path in (root / "bbox_test/0101").iterdir():
        path.unlink()
    (root / "bbox_test/0101").rmdir()
    with raises(r"MEVID: frame folder bbox_test/0101 under .* does not exist \(frame 0101O001C332T003F00001.jpg "
                r"of track_test_info.txt line 3 under "):
        load("mevid", root)
    (root / "query_IDX.txt").unlink()
    assert main(["data", "check", "--dataset", "mevid", "--root", str(root), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["unusable"].startswith("MEVID: no file query_IDX.txt under ")
