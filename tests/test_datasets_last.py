"""LaST adapter on a miniature tree, against a transcription of Simple-CCReID's loader."""

from __future__ import annotations

import glob
import os.path as osp

import pytest

from ccreid.data.check import check_dataset
from test_datasets_common import TRICKY, load, raises, write_tree

FILES = ["train/000010/000010_0_c1_0.jpg", "train/000010/000010_1_c1_1.jpg", "train/000010/000010_2_c2_0.jpg",
         "train/000002/000002_0_c1_3.jpg", "train/000002-b/000002_1_c1_3.jpg",  # '-' sorts before '/'
         "val/query/000300_0_0.jpg", "val/gallery/000300/000300_1_0.jpg", "val/gallery/000301/000301_1_0.jpg",
         "test/query/000400_0_0.jpg", "test/query/000401_0_0.jpg",
         "test/gallery/000400/000400_1_0.jpg", "test/gallery/000400/000400_2_0.jpg",
         "test/gallery/000401/000401_1_0.jpg"]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / TRICKY
    write_tree(root / "last", FILES)
    write_tree(root / "last", ["train/000010/skip.png", "test/query/.hidden.jpg"])
    return root


class ReferenceLaST:
    """Transcribed from Simple-CCReID ``data/datasets/last.py`` (statistics left out)."""

    def __init__(self, root):
        self.dataset_dir = osp.join(root, 'last')
        pid2label, clothes2label = self.get_pid2label_and_clothes2label(osp.join(self.dataset_dir, 'train'))
        self.train = self._process_dir(osp.join(self.dataset_dir, 'train'), pid2label=pid2label,
                                       clothes2label=clothes2label, relabel=True)
        self.val_query = self._process_dir(osp.join(self.dataset_dir, 'val', 'query'), relabel=False)
        self.val_gallery = self._process_dir(osp.join(self.dataset_dir, 'val', 'gallery'), relabel=False,
                                             recam=len(self.val_query))
        self.query = self._process_dir(osp.join(self.dataset_dir, 'test', 'query'), relabel=False)
        self.gallery = self._process_dir(osp.join(self.dataset_dir, 'test', 'gallery'), relabel=False,
                                         recam=len(self.query))

    def get_pid2label_and_clothes2label(self, dir_path):
        img_paths = glob.glob(osp.join(dir_path, '*/*.jpg'))
        img_paths.sort()
        pid_container = set()
        clothes_container = set()
        for img_path in img_paths:
            names = osp.basename(img_path).split('.')[0].split('_')
            clothes = names[0] + '_' + names[-1]
            pid = int(names[0])
            pid_container.add(pid)
            clothes_container.add(clothes)
        pid_container = sorted(pid_container)
        clothes_container = sorted(clothes_container)
        pid2label = {pid: label for label, pid in enumerate(pid_container)}
        clothes2label = {clothes: label for label, clothes in enumerate(clothes_container)}
        return pid2label, clothes2label

    def _process_dir(self, dir_path, pid2label=None, clothes2label=None, relabel=False, recam=0):
        if 'query' in dir_path.rsplit('last', 1)[1]:  # the split's own name (our tmp root holds no 'query')
            img_paths = glob.glob(osp.join(dir_path, '*.jpg'))
        else:
            img_paths = glob.glob(osp.join(dir_path, '*/*.jpg'))
        img_paths.sort()
        dataset = []
        for ii, img_path in enumerate(img_paths):
            names = osp.basename(img_path).split('.')[0].split('_')
            clothes = names[0] + '_' + names[-1]
            pid = int(names[0])
            camid = int(recam + ii)
            if relabel and pid2label is not None:
                pid = pid2label[pid]
            if relabel and clothes2label is not None:
                clothes_id = clothes2label[clothes]
            else:
                clothes_id = pid
            dataset.append((img_path, pid, camid, clothes_id))
        return dataset


def as_tuples(records):
    return [(r.path, r.pid, r.camid, r.clothes_id) for r in records]


def test_records_equal_the_reference_loader(root):
    ds = load("last", root)
    ref = ReferenceLaST(str(root))
    assert as_tuples(ds.train) == ref.train
    assert as_tuples(ds.protocols["general"].query) == ref.query
    assert as_tuples(ds.protocols["general"].gallery) == ref.gallery
    assert as_tuples(ds.val["general"].query) == ref.val_query
    assert as_tuples(ds.val["general"].gallery) == ref.val_gallery
    assert list(ds.protocols) == ["general"] and not ds.is_video
    assert [r.pid for r in ds.train] == [0, 0, 1, 1, 1]


def test_data_check(root):
    report = check_dataset("last", str(root / "last"))
    assert report["train"] == {"images": 5, "ids": 2, "cameras": 5, "clothes": 3}
    assert report["protocols"]["general"]["gallery"] == {"images": 3, "ids": 2, "cameras": 3, "clothes": 2}
    assert set(report["protocols"]) == {"general", "val/general"}
    assert report["problems"][0].startswith("LaST: no clothes labels in val and test")


def test_layout_errors(root):
    write_tree(root / "last", ["test/query/x_0.jpg"])
    with raises(r"LaST: cannot parse file name test/query/x_0.jpg under .*last \(expected <pid>_"):
        load("last", root)
    (root / "last/test/query/x_0.jpg").unlink()
    for path in (root / "last/val/query").iterdir():
        path.unlink()
    with raises(r"LaST: no images val/query/\*.jpg under "):
        load("last", root)
    (root / "last/val/query").rmdir()
    with raises(r"LaST: no folder val/query under .*last \(expected last/\{train,"):
        load("last", root)
