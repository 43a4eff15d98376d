"""ReIDClipDataset (lazy clip decoding, one joint transform per clip) and the P x K sampler over tracklets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ccreid.data.clips import ReIDClipDataset
from ccreid.data.records import TrackletRecord
from ccreid.data.sampler import ClothesAwarePKSampler
from ccreid.data.transforms import build_test_transform, build_train_transform
from ccreid.data.video import clip_index, dense_split
from ccreid.errors import CCReIDError
from ccreid.imagenet import IMAGENET_MEAN, IMAGENET_STD

SIZE = (16, 8)


def write_frame(path, value: int, size=(4, 8)) -> str:
    """A frame of one grey ``value`` (width, height as PIL)."""
    Image.new("RGB", size, (value, value, value)).save(path)
    return str(path)


def write_map(path, size=(4, 8)) -> str:
    """A map whose left half is label 5 and right half label 13 (a flip shows)."""
    array = np.full((size[1], size[0]), 5, dtype=np.uint8)
    array[:, size[0] // 2:] = 13
    Image.fromarray(array, mode="L").save(path)
    return str(path)


def grey_value(frame: torch.Tensor) -> float:
    """The 0..255 grey value a normalised frame came from (channel 0)."""
    return float(frame[0].mean() * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255


def test_test_clips_decode_their_frames_in_order_whatever_the_frame_sizes(tmp_path):
    frames = tuple(write_frame(tmp_path / f"{i:02d}.png", 10 * i, size=(4 + i % 3, 8 + i)) for i in range(10))
    record = TrackletRecord(frames, 7, 2, 3)
    clips = clip_index([record], 4, 2)
    data = ReIDClipDataset([record], build_test_transform(*SIZE), SIZE, need_parsing=False, clips=clips)
    assert len(data) == 3 and clips[2] == (0, [8, 9, 8, 9])
    for n, (_, indices) in enumerate(clips):
        item = data[n]
        assert item["image"].shape == (4, 3, *SIZE) and item["parsing"].shape == (4, *SIZE)
        assert [round(grey_value(f)) for f in item["image"]] == [10 * i for i in indices]
        assert (item["parsing"] == -1).all() and not item["has_parsing"].any()
        assert (int(item["pid"]), int(item["camid"]), int(item["clothes"]), int(item["index"])) == (7, 2, 3, 0)


@pytest.mark.parametrize("seed", range(4))
def test_the_random_joint_transform_is_the_same_on_every_frame(tmp_path, seed):
    frames = tuple(write_frame(tmp_path / f"{i}.png", 100) for i in range(6))
    maps = tuple(write_map(tmp_path / f"{i}_map.png") for i in range(6))
    record = TrackletRecord(frames, 0, 0, 0, maps)
    data = ReIDClipDataset([record], build_train_transform(*SIZE, flip_p=0.5, pad=3, erasing_p=1.0), SIZE,
                           need_parsing=True, seq_len=4, stride=1)
    torch.manual_seed(seed)
    item = data[0]
    assert item["image"].shape == (4, 3, *SIZE) and item["has_parsing"].all()
    assert all(torch.equal(item["image"][0], f) for f in item["image"][1:])  # same crop, flip and erased box
    assert all(torch.equal(item["parsing"][0], m) for m in item["parsing"][1:])
    assert {5, 13} <= set(item["parsing"].unique().tolist())


def test_missing_maps_skip_or_error(tmp_path):
    frames = tuple(write_frame(tmp_path / f"{i}.png", 50) for i in range(4))
    record = TrackletRecord(frames, 0, 0, 0, (write_map(tmp_path / "m0.png"), None, str(tmp_path / "gone.png"), None))
    clips = [(0, [0, 1, 2, 3])]
    data = ReIDClipDataset([record], build_train_transform(*SIZE, pad=2, erasing_p=0), SIZE, True, "skip", clips)
    item = data[0]
    assert item["has_parsing"].tolist() == [True, False, False, False]
    assert (item["parsing"][1:] == -1).all() and (item["parsing"][0] >= 0).all()
    with pytest.raises(CCReIDError, match=r"parsing map .*gone.png not found; provide it or set data.parsing.missing"):
        ReIDClipDataset([record], build_test_transform(*SIZE), SIZE, True, "error", [(0, [2])])[0]


def test_training_items_are_random_clips_inside_their_tracklet(tmp_path):
    frames = tuple(write_frame(tmp_path / f"{i:02d}.png", 5 * i) for i in range(40))
    records = dense_split([TrackletRecord(frames, 1, 0, 0)], 16)
    data = ReIDClipDataset(records, build_test_transform(*SIZE), SIZE, need_parsing=False, seq_len=4, stride=3)
    assert len(data) == 2
    torch.manual_seed(0)
    first = data[1]
    torch.manual_seed(0)
    assert torch.equal(first["image"], data[1]["image"])  # the clip is drawn from the seeded generator
    values = [round(grey_value(f)) // 5 for f in first["image"]]
    assert all(16 <= v < 40 for v in values) and all(b - a == 3 for a, b in zip(values, values[1:]))


def test_the_clothes_aware_sampler_works_over_tracklets():
    tracklets = [TrackletRecord((f"{pid}_{c}_{t}.jpg",), pid, 0, 2 * pid + c)
                 for pid in range(6) for c in range(2) for t in range(3)]
    pids, clothes = [r.pid for r in tracklets], [r.clothes_id for r in tracklets]
    ranks = [ClothesAwarePKSampler(pids, clothes, p=2, k=4, seed=1, rank=r, world_size=2) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(3)
    for batch0, batch1 in zip(*ranks):
        assert len(batch0) == len(batch1) == 8
        ids0, ids1 = {pids[i] for i in batch0}, {pids[i] for i in batch1}
        assert len(ids0) == len(ids1) == 2 and not ids0 & ids1  # ranks never share an identity in a step
        for batch in (batch0, batch1):
            for pid in {pids[i] for i in batch}:
                mine = [i for i in batch if pids[i] == pid]
                assert len(mine) == 4 == len(set(mine)) and len({clothes[i] for i in mine}) == 2
