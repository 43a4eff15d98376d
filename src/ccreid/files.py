"""Input files named by an option or a config key: one checked way to say that a path is
missing or is a folder, and what a weights file holds, told by its first bytes (not its name).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Union

from ccreid.errors import CCReIDError

#: what :func:`weights_format` tells apart
SAFETENSORS, TORCH_ZIP, PICKLE, EMPTY, UNKNOWN = "safetensors", "torch zip", "pickle", "empty", "unknown"
#: a pickle's first two bytes: PROTO, then protocol 2..5 (torch.save before the zip format)
PICKLE_PROTOCOLS = (b"\x02", b"\x03", b"\x04", b"\x05")
#: the largest safetensors header accepted (safetensors' own limit)
MAX_HEADER = 100_000_000


def require_file(path: Union[str, Path], label: str, todo: str) -> Path:
    """``path`` when it is a file; else ``{label} {path}: a folder, not a file; {todo}`` or
    ``{label} {path}: not found; {todo}``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CCReIDError(f"{label} {path}: a folder, not a file; {todo}")
    if not path.is_file():
        raise CCReIDError(f"{label} {path}: not found; {todo}")
    return path


def weights_format(path: Path) -> str:
    """:data:`SAFETENSORS` (an 8-byte header length, then a JSON header), :data:`TORCH_ZIP`
    (``torch.save``'s zip), :data:`PICKLE` (torch < 1.6 files), :data:`EMPTY` or :data:`UNKNOWN`."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if not head:
            return EMPTY
        if head.startswith(b"PK\x03\x04"):
            return TORCH_ZIP
        if head[:1] == b"\x80" and head[1:2] in PICKLE_PROTOCOLS:
            return PICKLE
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        if not 2 <= size <= MAX_HEADER:
            return UNKNOWN
        try:
            header = json.loads(handle.read(size))
        except ValueError:  # UnicodeDecodeError included
            return UNKNOWN
    return SAFETENSORS if isinstance(header, dict) else UNKNOWN


def describe_format(kind: str) -> str:
    """What a file of :func:`weights_format` ``kind`` is, in words."""
    return {SAFETENSORS: "a safetensors file", TORCH_ZIP: "a PyTorch checkpoint (torch.save)",
            PICKLE: "a PyTorch checkpoint (torch.save)", EMPTY: "an empty file (0 bytes: an interrupted copy?)",
            UNKNOWN: "neither a safetensors file nor a PyTorch checkpoint"}[kind]
