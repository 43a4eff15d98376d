"""Temporal sampling (ccreid.data.video) against transcriptions of Simple-CCReID's code."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from ccreid.data.records import TrackletRecord
from ccreid.data import video  # test_clips by its module: pytest would collect the bare name
from ccreid.data.video import dense_chunks, dense_split, random_clip


def reference_recombination(img_paths, seq_len, stride):
    """Transcribed from Simple-CCReID ``data/datasets/ccvid.py`` ``_recombination_for_testset``
    (one tracklet; clips only)."""
    new_dataset = []
    for i in range(len(img_paths)//(seq_len*stride)):
        for j in range(stride):
            begin_idx = i * (seq_len * stride) + j
            end_idx = (i + 1) * (seq_len * stride)
            clip_paths = img_paths[begin_idx : end_idx : stride]
            assert(len(clip_paths) == seq_len)
            new_dataset.append(clip_paths)
    if len(img_paths)%(seq_len*stride) != 0:
        new_stride = (len(img_paths)%(seq_len*stride)) // seq_len
        for i in range(new_stride):
            begin_idx = len(img_paths) // (seq_len*stride) * (seq_len*stride) + i
            end_idx = len(img_paths) // (seq_len*stride) * (seq_len*stride) + seq_len * new_stride
            clip_paths = img_paths[begin_idx : end_idx : new_stride]
            assert(len(clip_paths) == seq_len)
            new_dataset.append(clip_paths)
        if len(img_paths) % seq_len != 0:
            clip_paths = img_paths[len(img_paths)//seq_len*seq_len:]
            while len(clip_paths) < seq_len:
                for index in clip_paths:
                    if len(clip_paths) >= seq_len:
                        break
                    clip_paths.append(index)
            assert(len(clip_paths) == seq_len)
            new_dataset.append(clip_paths)
    assert len(new_dataset) == math.ceil(len(img_paths)/seq_len)
    return new_dataset


def reference_dense(img_paths, sampling_step=64):
    """Transcribed from ``_densesampling_for_trainingset`` (one tracklet)."""
    new_dataset = []
    if sampling_step != 0:
        num_sampling = len(img_paths)//sampling_step
        if num_sampling == 0:
            new_dataset.append(img_paths)
        else:
            for idx in range(num_sampling):
                if idx == num_sampling - 1:
                    new_dataset.append(img_paths[idx*sampling_step:])
                else:
                    new_dataset.append(img_paths[idx*sampling_step : (idx+1)*sampling_step])
    else:
        new_dataset.append(img_paths)
    return new_dataset


def reference_random_crop(frame_indices, size, stride):
    """Transcribed from ``data/temporal_transforms.py`` ``TemporalRandomCrop.__call__``."""
    frame_indices = list(frame_indices)
    if len(frame_indices) >= size * stride:
        rand_end = len(frame_indices) - (size - 1) * stride - 1
        begin_index = random.randint(0, rand_end)
        end_index = begin_index + (size - 1) * stride + 1
        out = frame_indices[begin_index:end_index:stride]
    elif len(frame_indices) >= size:
        clips = []
        for i in range(size):
            clips.append(frame_indices[len(frame_indices)//size*i : len(frame_indices)//size*(i+1)])
        out = []
        for i in range(size):
            out.append(random.choice(clips[i]))
    else:
        index = np.random.choice(len(frame_indices), size=size, replace=True)
        index.sort()
        out = [frame_indices[index[i]] for i in range(size)]
    return out


@pytest.mark.parametrize("seq_len", [4, 8, 16])
@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_test_clips_equal_the_reference_on_every_length(seq_len, stride):
    for n in range(1, 301):
        assert video.test_clips(n, seq_len, stride) == reference_recombination(list(range(n)), seq_len, stride), n


def test_test_clips_examples_and_bad_arguments():
    assert video.test_clips(10, 4, 2) == [[0, 2, 4, 6], [1, 3, 5, 7], [8, 9, 8, 9]]
    assert video.test_clips(0, 4, 2) == []
    with pytest.raises(ValueError):
        video.test_clips(5, 0, 1)


@pytest.mark.parametrize("step", [0, 1, 3, 64])
def test_dense_chunks_equal_the_reference(step):
    for n in range(1, 200):
        frames = list(range(n))
        assert [frames[a:b] for a, b in dense_chunks(n, step)] == reference_dense(frames, step), n


def test_dense_split_keeps_labels_and_maps():
    frames = tuple(f"f{i:03d}.jpg" for i in range(130))
    maps = tuple(None if i % 2 else f"m{i:03d}.png" for i in range(130))
    chunks = dense_split([TrackletRecord(frames, 3, 1, 2, maps), TrackletRecord(frames[:5], 4, 0, 1)], 64)
    assert [c.num_frames for c in chunks] == [64, 66, 5]
    assert chunks[1].frames == frames[64:] and chunks[1].parsing_paths == maps[64:]
    assert chunks[2].parsing_paths is None
    assert {(c.pid, c.camid, c.clothes_id) for c in chunks[:2]} == {(3, 1, 2)}


@pytest.mark.parametrize("seq_len,stride", [(8, 4), (4, 1), (4, 3)])
def test_random_clip_lies_inside_and_follows_the_stride(seq_len, stride):
    generator = torch.Generator().manual_seed(0)
    for n in range(1, 80):
        for _ in range(20):
            clip = random_clip(n, generator, seq_len, stride)
            assert len(clip) == seq_len and all(0 <= i < n for i in clip)
            if n >= seq_len * stride:
                assert all(b - a == stride for a, b in zip(clip, clip[1:]))
            elif n >= seq_len:  # one frame from each of seq_len equal segments
                segment = n // seq_len
                assert all(segment * i <= f < segment * (i + 1) for i, f in enumerate(clip))
            else:
                assert clip == sorted(clip)


def test_random_clip_reaches_every_outcome_of_the_reference():
    """Same support as TemporalRandomCrop in each of its three regimes."""
    generator = torch.Generator().manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    for n, seq_len, stride in [(40, 8, 4), (13, 4, 4), (3, 4, 2)]:
        ours = {tuple(random_clip(n, generator, seq_len, stride)) for _ in range(3000)}
        theirs = {tuple(reference_random_crop(range(n), seq_len, stride)) for _ in range(3000)}
        assert ours == theirs, (n, seq_len, stride)


def test_random_clip_is_determined_by_the_generator():
    clips = [[random_clip(n, torch.Generator().manual_seed(5)) for n in (3, 20, 100)] for _ in range(2)]
    assert clips[0] == clips[1]
