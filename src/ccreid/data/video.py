"""Temporal sampling of tracklets, as Simple-CCReID does it (pure functions of frame counts).

- :func:`test_clips`: the test clips of a tracklet (``_recombination_for_testset``): every
  full block of ``seq_len * stride`` frames gives ``stride`` interleaved clips, the rest
  ``rest // seq_len`` clips at a reduced stride, then one loop-padded clip of the last
  ``n % seq_len`` frames; ``ceil(n / seq_len)`` clips in all. A tracklet's feature is the
  mean of its clips' features; :func:`clip_index` lists the clips of many tracklets.
- :func:`dense_chunks` / :func:`dense_split`: training tracklets cut into ``step``-frame
  chunks, the last chunk keeping the remainder (``DENSE_SAMPLING``, ``SAMPLING_STEP`` 64).
- :func:`random_clip`: one training clip (``TemporalRandomCrop``): ``seq_len`` frames at
  ``stride`` from a random start; shorter tracklets one random frame from each of
  ``seq_len`` equal segments, and tracklets shorter than ``seq_len`` sorted draws with
  replacement. Randomness comes from a ``torch.Generator`` only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import List, Sequence, Tuple

import torch

from ccreid.config import Config, VideoDataConfig
from ccreid.data.records import TrackletRecord

#: Simple-CCReID's video defaults (``configs/default_vid.py``): the ``data.video`` keys' defaults.
SEQ_LEN, SAMPLING_STRIDE, SAMPLING_STEP = VideoDataConfig.seq_len, VideoDataConfig.stride, VideoDataConfig.chunk


def time_axis(cfg: Config) -> Tuple[int, ...]:
    """The time axis of the model's input after the batch axis: ``(data.video.seq_len,)`` for a video
    model (``model.video`` set: clips ``[B, T, 3, H, W]``), ``()`` for an image model."""
    return () if cfg.model.video is None else (cfg.data.video.seq_len,)


def _check(seq_len: int, stride: int) -> None:
    if seq_len < 1 or stride < 1:
        raise ValueError(f"seq_len and stride must be >= 1, got {seq_len} and {stride}")


def test_clips(num_frames: int, seq_len: int, stride: int) -> List[List[int]]:
    """Frame indices of each test clip of a ``num_frames``-frame tracklet (see the module doc)."""
    _check(seq_len, stride)
    block = seq_len * stride
    full = num_frames // block * block
    clips = [list(range(start + j, start + block, stride)) for start in range(0, full, block) for j in range(stride)]
    rest = num_frames - full
    if rest:
        reduced = rest // seq_len
        clips += [list(range(full + j, full + seq_len * reduced, reduced)) for j in range(reduced)]
        tail = list(range(num_frames // seq_len * seq_len, num_frames))
        if tail:
            clips.append([tail[i % len(tail)] for i in range(seq_len)])
    return clips


def dense_chunks(num_frames: int, step: int = SAMPLING_STEP) -> List[Tuple[int, int]]:
    """``(start, stop)`` of each training chunk: ``step`` frames each, the last one keeping the
    remainder (so a tracklet shorter than ``2 * step``, or any when ``step`` is 0, stays whole)."""
    count = num_frames // step if step else 0
    if count == 0:
        return [(0, num_frames)]
    return [(i * step, (i + 1) * step if i < count - 1 else num_frames) for i in range(count)]


def dense_split(records: Sequence[TrackletRecord], step: int = SAMPLING_STEP) -> List[TrackletRecord]:
    """Each tracklet as its :func:`dense_chunks` (same identity, camera and outfit)."""
    out = []
    for r in records:
        for start, stop in dense_chunks(r.num_frames, step):
            maps = None if r.parsing_paths is None else r.parsing_paths[start:stop]
            out.append(replace(r, frames=r.frames[start:stop], parsing_paths=maps))
    return out


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[low, high]``."""
    return low + int(torch.randint(high - low + 1, (1,), generator=generator))


def random_clip(num_frames: int, generator: torch.Generator, seq_len: int = SEQ_LEN,
                stride: int = SAMPLING_STRIDE) -> List[int]:
    """Frame indices of one training clip of a ``num_frames``-frame tracklet (see the module doc)."""
    _check(seq_len, stride)
    if num_frames < 1:
        raise ValueError("a tracklet needs at least one frame")
    if num_frames >= seq_len * stride:
        start = _randint(0, num_frames - (seq_len - 1) * stride - 1, generator)
        return list(range(start, start + (seq_len - 1) * stride + 1, stride))
    if num_frames >= seq_len:
        segment = num_frames // seq_len
        return [segment * i + _randint(0, segment - 1, generator) for i in range(seq_len)]
    return sorted(torch.randint(num_frames, (seq_len,), generator=generator).tolist())


def clip_index(records: Sequence[TrackletRecord], seq_len: int, stride: int) -> List[Tuple[int, List[int]]]:
    """``(record index, frame indices)`` of every test clip of ``records``, tracklet by tracklet."""
    return [(i, clip) for i, r in enumerate(records) for clip in test_clips(r.num_frames, seq_len, stride)]
