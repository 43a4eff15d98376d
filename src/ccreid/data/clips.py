"""Torch dataset of tracklet clips: frames decoded lazily, one joint transform per clip.

An item is one clip: training, one :func:`~ccreid.data.video.random_clip` of a tracklet per
item (drawn from torch's global generator, which the loader seeds per worker and epoch, as it
does the augmentations); test, the clips given (:func:`~ccreid.data.video.clip_index`). Only the
clip's frames are read. Each frame (and its parsing map) is first resized to the output size
alone, as an image would be; the stacked clip then goes through the joint transform once, as a
batch of frames, so flip, pad, crop and erasing are the same on every frame and on every map.
A frame without a map gets ``-1`` everywhere (``missing="skip"``) or raises (``"error"``).

Items follow the batch contract with a time axis: ``image`` ``[T,3,H,W]``, ``parsing``
``[T,H,W]``, ``has_parsing`` ``[T]``; ``index`` is the tracklet's position in ``records``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ccreid.data.dataset import Transform, missing_map_message, read_image, read_parsing, resize_nearest
from ccreid.data.records import ImageRecord, TrackletRecord
from ccreid.data.video import SAMPLING_STRIDE, SEQ_LEN, random_clip
from ccreid.errors import CCReIDError

Frame = Tuple[torch.Tensor, Optional[torch.Tensor]]  # uint8 [3,H,W] at the output size, map [H,W] or None


class ReIDClipDataset(Dataset):
    """Clips of ``records`` (``clips`` None: one random training clip per tracklet)."""

    def __init__(self, records: Sequence[TrackletRecord], transform: Transform, size: Tuple[int, int],
                 need_parsing: bool, missing: str = "error", clips: Optional[Sequence[Tuple[int, Sequence[int]]]] = None,
                 seq_len: int = SEQ_LEN, stride: int = SAMPLING_STRIDE) -> None:
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        self.records = list(records)
        self.transform = transform
        self.size = tuple(size)
        self.resize = v2.Resize(self.size, antialias=True)
        self.need_parsing, self.missing = need_parsing, missing
        self.clips = None if clips is None else [(i, list(frames)) for i, frames in clips]
        self.seq_len, self.stride = seq_len, stride

    def __len__(self) -> int:
        return len(self.records) if self.clips is None else len(self.clips)

    def _parsing(self, record: TrackletRecord, i: int, size: Sequence[int]) -> Optional[torch.Tensor]:
        path = record.parsing_paths[i] if record.parsing_paths else None
        if path is None or not Path(path).is_file():
            if self.missing == "error":
                frame = ImageRecord(record.frames[i], record.pid, record.camid, record.clothes_id, path)
                raise CCReIDError(f"{missing_map_message(frame)}; provide it or set data.parsing.missing=skip")
            return None
        parsing = read_parsing(path)
        return parsing if tuple(parsing.shape) == tuple(size) else resize_nearest(parsing, size)

    def _frame(self, record: TrackletRecord, i: int) -> Frame:
        image = read_image(record.frames[i])
        parsing = self._parsing(record, i, image.shape[-2:]) if self.need_parsing else None
        if parsing is None:
            return self.resize(tv_tensors.Image(image)).as_subclass(torch.Tensor), None
        image, parsing = self.resize(tv_tensors.Image(image), tv_tensors.Mask(parsing))
        return image.as_subclass(torch.Tensor), parsing.as_subclass(torch.Tensor)

    def _clip(self, index: int) -> Tuple[int, List[int]]:
        if self.clips is not None:
            return self.clips[index]
        record = self.records[index]
        return index, random_clip(record.num_frames, torch.default_generator, self.seq_len, self.stride)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        position, frames = self._clip(index)
        record = self.records[position]
        decoded = [self._frame(record, i) for i in frames]
        has_parsing = torch.tensor([parsing is not None for _, parsing in decoded])
        maps = None
        if has_parsing.any():
            blank = torch.full(self.size, -1, dtype=torch.long)
            maps = torch.stack([blank if parsing is None else parsing.long() for _, parsing in decoded])
        clip, parsing = self.transform(torch.stack([image for image, _ in decoded]), maps)
        if maps is None:
            parsing = parsing.expand(len(frames), -1, -1).clone()
        else:
            parsing[~has_parsing] = -1  # padding filled the blank maps with background
        return {
            "image": clip,
            "parsing": parsing,
            "has_parsing": has_parsing,
            "pid": torch.tensor(record.pid, dtype=torch.long),
            "camid": torch.tensor(record.camid, dtype=torch.long),
            "clothes": torch.tensor(record.clothes_id, dtype=torch.long),
            "index": torch.tensor(position, dtype=torch.long),
        }
