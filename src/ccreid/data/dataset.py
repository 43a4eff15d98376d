"""Torch dataset of :class:`ImageRecord`: decode image + parsing map, apply a joint transform.

Items follow the batch contract of docs/ARCHITECTURE.md. Parsing maps are PNGs read as
class indices (palette ignored) or ``.npy`` arrays (``HxW`` labels or ``HxWxC``
probabilities, argmax). A map whose size differs from its image is resized
nearest-neighbour to the image size. Which maps were found / missing / resized is kept
per record in shared memory, so :attr:`ReIDImageDataset.parsing_stats` also counts what
DataLoader worker processes loaded. :meth:`ReIDImageDataset.preload` keeps every decoded
image and map in memory (``data.cache_mb``), so each file is read and decoded once.
"""

from __future__ import annotations

import errno
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from ccreid.config import DataConfig
from ccreid.data.records import ImageRecord
from ccreid.errors import CCReIDError, first_line
from ccreid.files import require_file

Decoded = Tuple[torch.Tensor, Optional[torch.Tensor]]  # uint8 image [3,H,W], label map [H,W] or None
Transform = Callable[[torch.Tensor, Optional[torch.Tensor]], Tuple[torch.Tensor, torch.Tensor]]

# Per-record parsing status codes (shared-memory uint8 array).
_UNSEEN, _FOUND, _RESIZED, _MISSING = 0, 1, 2, 3


@dataclass(frozen=True)
class ParsingStats:
    """Distinct records whose map was found (``resized`` of them resized, ``foreign`` of them
    holding labels outside the label set) or missing; ``example`` names one foreign map."""

    found: int
    missing: int
    resized: int
    foreign: int = 0
    example: Optional[str] = None


def missing_map_message(record: ImageRecord) -> str:
    """Names the expected map of ``record`` (or says that none is recorded)."""
    if record.parsing_path is None:
        return f"no parsing map for image {record.path} (set data.parsing.root / --parsing to the parsing tree)"
    return f"parsing map {record.parsing_path} not found"


def parse_hint(data: DataConfig) -> str:
    """How to make the missing maps of ``data``: the exact ``ccreid parse`` command."""
    out = data.parsing.root or f"{data.root.rstrip('/')}-parsing"
    command = f"ccreid parse --weights <SCHP .pth> --dataset {data.name} --root {data.root} --out {out}"
    then = "" if data.parsing.root else f", then set data.parsing.root={out}"
    return (f"make them with `{command}`{then} (or set data.parsing.weights=<SCHP .pth> to parse before "
            "training), or set data.parsing.missing=skip")


#: errno of a file that cannot be opened -> the cause in plain words (images, parsing maps)
READ_ERRORS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "a symbolic link loop",
    errno.ENOENT: "not found (a broken symbolic link?)",
    errno.EISDIR: "a folder, not a file",
}


def unreadable(err: BaseException) -> Optional[str]:
    """Why a file could not be read when the cause is not its content: the OS refused it
    (:data:`READ_ERRORS`) or Pillow refused its pixel count as a decompression bomb; else None."""
    if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"too many pixels, refused as a possible decompression bomb ({err})"
    return READ_ERRORS.get(getattr(err, "errno", None))


def read_image(path: str) -> torch.Tensor:
    """``uint8 [3,H,W]`` RGB; a one-line :class:`CCReIDError` naming the file otherwise."""
    require_file(path, "image file", "pass image files, or check data.root (or regenerate the dataset)")
    try:
        with warnings.catch_warnings():  # torchvision >= 0.29 flags its decoders as deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except RuntimeError:  # unreadable, not a format torchvision decodes (BMP, ...), or damaged: Pillow decides
        try:
            with Image.open(path) as img:
                return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            reason = unreadable(err)
            if reason:
                raise CCReIDError(f"cannot read image {path}: {reason}; make it readable or remove it") from None
            raise CCReIDError(f"cannot decode image {path}: damaged, or not a JPEG/PNG/BMP/WebP image; "
                              "replace or remove the file") from None


def read_parsing(path: str) -> torch.Tensor:
    """A parsing map as ``int64 [H,W]`` class indices."""
    try:
        if path.lower().endswith(".npy"):
            array = np.load(path, allow_pickle=False)
            if array.ndim == 3:
                array = array.argmax(axis=-1)
        else:
            with Image.open(path) as img:
                if img.mode not in ("P", "L", "I", "I;16"):
                    raise ValueError(f"mode {img.mode}; expected a single-channel (P or L) PNG of class indices")
                array = np.array(img)
    except (OSError, ValueError) as err:
        raise CCReIDError(f"cannot read parsing map {path} ({first_line(err)}); replace or remove the file")
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise CCReIDError(
            f"parsing map {path}: expected HxW integer labels or HxWxC probabilities, got {array.dtype} {array.shape}"
        )
    return torch.from_numpy(array.astype(np.int64))


def resize_nearest(parsing: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of an ``[H,W]`` label map (source pixel ``floor(i * H / h)``)."""
    rows = torch.arange(size[0]) * parsing.shape[0] // size[0]
    cols = torch.arange(size[1]) * parsing.shape[1] // size[1]
    return parsing[rows[:, None], cols[None, :]]


class ReIDImageDataset(Dataset):
    """Decoded, transformed items of ``records`` (dicts per the batch contract).

    ``need_parsing=False`` never reads maps (``parsing`` is ``-1``). Otherwise a record
    without a readable map raises (``missing="error"``) or passes with ``-1``
    (``missing="skip"``). Maps with labels at or above ``num_labels`` (the label set's
    class count) are counted in :attr:`parsing_stats` (``foreign``).
    """

    def __init__(
        self, records: Sequence[ImageRecord], transform: Transform, need_parsing: bool, missing: str = "error",
        num_labels: Optional[int] = None,
    ) -> None:
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        self.records = list(records)
        self.transform = transform
        self.need_parsing = need_parsing
        self.missing = missing
        self.num_labels = num_labels
        self._status = torch.zeros(len(self.records), dtype=torch.uint8).share_memory_()
        self._foreign = torch.zeros(len(self.records), dtype=torch.bool).share_memory_()
        self._decoded: Optional[List[Decoded]] = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def parsing_stats(self) -> ParsingStats:
        counts = torch.bincount(self._status.long(), minlength=4).tolist()
        found = counts[_FOUND] + counts[_RESIZED]
        foreign = self._foreign.nonzero().flatten().tolist()
        example = self.records[foreign[0]].parsing_path if foreign else None
        return ParsingStats(found=found, missing=counts[_MISSING], resized=counts[_RESIZED], foreign=len(foreign),
                            example=example)

    def _load_parsing(self, index: int, record: ImageRecord, image_size: Sequence[int]) -> Optional[torch.Tensor]:
        path = record.parsing_path
        if path is None or not Path(path).is_file():
            if self.missing == "error":
                raise CCReIDError(f"{missing_map_message(record)}; provide it or set data.parsing.missing=skip")
            self._status[index] = _MISSING
            return None
        parsing = read_parsing(path)
        if self.num_labels is not None and int(parsing.max()) >= self.num_labels:
            self._foreign[index] = True
        if tuple(parsing.shape) != tuple(image_size):
            parsing = resize_nearest(parsing, image_size)
            self._status[index] = _RESIZED
        else:
            self._status[index] = _FOUND
        return parsing

    def _decode(self, index: int) -> Decoded:
        record = self.records[index]
        image = read_image(record.path)
        return image, self._load_parsing(index, record, image.shape[-2:]) if self.need_parsing else None

    def preload(self, budget_bytes: int) -> bool:
        """Decode every record now and keep images and maps in memory if all fit in
        ``budget_bytes`` (maps stored as uint8 when their labels allow); False, keeping
        nothing, once they do not. DataLoader workers started later share the copy."""
        decoded, used = [], 0
        for index in range(len(self.records)):
            image, parsing = self._decode(index)
            if parsing is not None and 0 <= int(parsing.min()) and int(parsing.max()) <= 255:
                parsing = parsing.to(torch.uint8)
            used += image.nbytes + (parsing.nbytes if parsing is not None else 0)
            if used > budget_bytes:
                return False
            decoded.append((image, parsing))
        self._decoded = decoded
        return True

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        record = self.records[index]
        image, parsing = self._decoded[index] if self._decoded is not None else self._decode(index)
        image, parsing_out = self.transform(image, parsing)
        return {
            "image": image,
            "parsing": parsing_out,
            "has_parsing": torch.tensor(parsing is not None),
            "pid": torch.tensor(record.pid, dtype=torch.long),
            "camid": torch.tensor(record.camid, dtype=torch.long),
            "clothes": torch.tensor(record.clothes_id, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
        }
