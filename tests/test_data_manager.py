from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccreid.config import load_config
from ccreid.data.dataset import ReIDImageDataset
from ccreid.data.manager import DataManager
from ccreid.data.records import EvalSplit, ImageRecord, ReIDDataset
from ccreid.data.registry import DATASETS
from ccreid.errors import CCReIDError

ADAPTER = "tiny-manager-test"


def tiny(cfg) -> ReIDDataset:
    """6 identities x 2 outfits x 2 images in ``cfg.root``; maps in ``cfg.parsing.root``."""
    root, maps = Path(cfg.root), cfg.parsing.root
    train = []
    for pid in range(6):
        for outfit in range(2):
            for shot in range(2):
                name = f"{pid}_{outfit}_{shot}"
                train.append(ImageRecord(str(root / f"{name}.png"), pid, shot, pid * 2 + outfit,
                                         None if maps is None else str(Path(maps) / f"{name}.png")))
    test = EvalSplit(train[:2], train[2:6], "cc")
    return ReIDDataset("tiny", train, {"cc": test}, label_set=cfg.parsing.labels)


if ADAPTER not in DATASETS:
    DATASETS.register(ADAPTER)(tiny)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "maps").mkdir()
    for record in tiny(load_config(overrides=[f"data.root={tmp_path}"]).data).train:
        name = Path(record.path).name
        Image.fromarray(rng.integers(0, 256, (12, 6, 3), dtype=np.uint8)).save(record.path)
        Image.fromarray(rng.integers(0, 20, (12, 6), dtype=np.uint8), mode="L").save(tmp_path / "maps" / name)
    return tmp_path


def config(folder, *extra):
    return load_config(overrides=[
        f"data.name={ADAPTER}", f"data.root={folder}", f"data.parsing.root={folder / 'maps'}",
        "data.height=12", "data.width=6", "data.ids_per_batch=3", "data.images_per_id=2", "data.workers=0",
        "test.batch_size=5", *extra,
    ])


def test_train_batches_follow_contract(folder):
    manager = DataManager(config(folder), need_parsing=True)
    assert (manager.num_train_pids, manager.num_train_clothes, manager.label_set.name) == (6, 12, "lip")
    batches = list(manager.train_loader)
    assert len(batches) == 24 // 6
    for batch in batches:
        assert batch["image"].shape == (6, 3, 12, 6) and batch["image"].dtype == torch.float32
        assert batch["parsing"].shape == (6, 12, 6) and batch["parsing"].dtype == torch.long
        assert batch["has_parsing"].all() and (batch["parsing"] >= 0).all()
        assert len(set(batch["pid"].tolist())) == 3
        for key in ("pid", "camid", "clothes", "index"):
            assert batch[key].dtype == torch.long
        records = [manager.dataset.train[i] for i in batch["index"].tolist()]
        assert batch["pid"].tolist() == [r.pid for r in records]
        assert batch["clothes"].tolist() == [r.clothes_id for r in records]
        # K = 2 = number of outfits: both outfits of every identity in the batch
        assert len(set(batch["clothes"].tolist())) == 6
    assert manager.train_set.parsing_stats.found == len({i for b in batches for i in b["index"].tolist()})


def test_deterministic_with_workers(folder):
    def epoch_batches(epoch):
        manager = DataManager(config(folder, "data.workers=1", "seed=3"), need_parsing=False)
        manager.set_epoch(epoch)
        return list(manager.train_loader)

    first, second, other = epoch_batches(1), epoch_batches(1), epoch_batches(2)
    for a, b in zip(first, second):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])
        assert (a["parsing"] == -1).all() and not a["has_parsing"].any()
    assert any(not torch.equal(a["index"], b["index"]) for a, b in zip(first, other))


@pytest.mark.parametrize("workers", [0, 1])
def test_cached_training_images_give_the_same_batches(folder, workers):
    def two_epochs(*extra):
        torch.manual_seed(0)  # data.workers=0 augments with the global generator
        manager = DataManager(config(folder, f"data.workers={workers}", *extra), need_parsing=True)
        batches = []
        for epoch in (0, 1):
            manager.set_epoch(epoch)
            batches += list(manager.train_loader)
        return manager, batches

    plain, expected = two_epochs()
    cached, got = two_epochs("data.cache_mb=1")
    assert cached.train_set._decoded is not None and len(cached.train_set._decoded) == 24
    for a, b in zip(expected, got, strict=True):
        assert all(torch.equal(a[key], b[key]) for key in a)
    for path in Path(folder).rglob("*.png"):  # read once, up front: the files are no longer needed
        path.unlink()
    cached.set_epoch(2)
    assert len(list(cached.train_loader)) == 4
    assert cached.train_set.parsing_stats.found == 24


def test_cache_that_does_not_fit_keeps_nothing(folder, caplog):
    manager = DataManager(config(folder), need_parsing=True)
    assert manager.train_set.preload(10 * 12 * 6 * 4) is False and manager.train_set._decoded is None
    assert manager.train_set.preload(24 * 12 * 6 * 4) is True
    assert manager.train_set._decoded[0][1].dtype == torch.uint8  # maps kept as uint8
    with caplog.at_level("WARNING", logger="ccreid"):
        DataManager(config(folder, "data.cache_mb=0"), need_parsing=True)
    assert not caplog.records


def test_cache_too_small_warns_and_trains_uncached(folder, caplog, monkeypatch):
    monkeypatch.setattr(ReIDImageDataset, "preload", lambda self, budget: budget < 0)  # as if 1 MB were too little
    with caplog.at_level("WARNING", logger="ccreid"):
        manager = DataManager(config(folder, "data.cache_mb=1"), need_parsing=True)
    assert "data.cache_mb=1 MB" in caplog.text and manager.train_set._decoded is None
    assert len(list(manager.train_loader)) == 4


def test_eval_loader_and_splits(folder):
    manager = DataManager(config(folder), need_parsing=False)
    splits = manager.eval_splits("test")
    assert list(splits) == ["cc"] and manager.eval_splits("val") == {}
    gallery = splits["cc"].gallery
    batches = list(manager.loader(gallery))
    assert [len(b["index"]) for b in batches] == [4]
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(4))
    again = list(manager.loader(gallery, batch_size=3))
    assert torch.equal(torch.cat([b["image"] for b in again]), batches[0]["image"])


def test_missing_map_errors_up_front_unless_skipped(folder):
    (folder / "maps" / "3_1_0.png").unlink()
    with pytest.raises(CCReIDError) as err:
        DataManager(config(folder), need_parsing=True)
    assert str(folder / "maps" / "3_1_0.png") in str(err.value) and "data.parsing.missing=skip" in str(err.value)
    DataManager(config(folder), need_parsing=False)  # auto: maps not needed
    manager = DataManager(config(folder, "data.parsing.missing=skip"), need_parsing=True)
    seen = {i: bool(h) for b in manager.train_loader for i, h in zip(b["index"].tolist(), b["has_parsing"].tolist())}
    missing = [i for i, r in enumerate(manager.dataset.train) if r.path.endswith("3_1_0.png")]
    assert all(seen[i] == (i not in missing) for i in seen)


def test_missing_image_errors_up_front(folder):
    (folder / "5_0_1.png").unlink()
    with pytest.raises(CCReIDError, match=r"image file .*5_0_1\.png not found"):
        DataManager(config(folder), need_parsing=False)


def test_label_set_from_config_and_too_few_identities(folder):
    assert DataManager(config(folder, "data.parsing.labels=atr"), need_parsing=False).label_set.name == "atr"
    with pytest.raises(CCReIDError, match="6 identities"):
        DataManager(config(folder, "data.ids_per_batch=7"), need_parsing=False)
