"""Record types shared by every dataset adapter."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

#: Clothes-filtering rules understood by :mod:`ccreid.evaluation` (METHOD.md).
RULES = ("general", "sc", "cc")


@dataclass(frozen=True)
class ImageRecord:
    """One image: where it is and who / which camera / which outfit it shows."""

    path: str
    pid: int
    camid: int
    clothes_id: int
    parsing_path: Optional[str] = None


@dataclass(frozen=True)
class TrackletRecord:
    """One tracklet: its frames in temporal (sorted) order and who / which camera / which outfit.

    ``parsing_paths`` is None when no frame has a parsing map, else one entry per frame (None
    where that frame has none). ``path``, the first frame, names the tracklet in messages and
    de-duplication, as an image's path does; evaluation sees one feature per tracklet.
    """

    frames: Tuple[str, ...]
    pid: int
    camid: int
    clothes_id: int
    parsing_paths: Optional[Tuple[Optional[str], ...]] = None

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("a tracklet needs at least one frame")
        if self.parsing_paths is not None and len(self.parsing_paths) != len(self.frames):
            raise ValueError("parsing_paths must hold one entry per frame")

    @property
    def path(self) -> str:
        return self.frames[0]

    @property
    def num_frames(self) -> int:
        return len(self.frames)


#: What a split holds: images, or tracklets (one dataset holds one kind).
Record = Union[ImageRecord, TrackletRecord]


def is_video(records: Sequence[Record]) -> bool:
    """Whether ``records`` are tracklets."""
    return any(isinstance(r, TrackletRecord) for r in records)


def frame_records(records: Sequence[Record]) -> List[ImageRecord]:
    """Every image: images as they are, each frame of a tracklet as an image of its tracklet's
    identity, camera and outfit (with that frame's parsing map)."""
    out: List[ImageRecord] = []
    for r in records:
        if isinstance(r, ImageRecord):
            out.append(r)
            continue
        maps = r.parsing_paths or (None,) * len(r.frames)
        out += [ImageRecord(f, r.pid, r.camid, r.clothes_id, m) for f, m in zip(r.frames, maps)]
    return out


@dataclass
class EvalSplit:
    """A query set scored against a gallery with one clothes-filtering rule."""

    query: List[Record]
    gallery: List[Record]
    rule: str = "general"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")


@dataclass
class ReIDDataset:
    """What a dataset adapter returns.

    ``train`` pids and clothes ids are relabelled to ``0..N-1``; the records are images or
    tracklets (:attr:`is_video`), never both. ``protocols`` maps a
    protocol name (``general``, ``sc``, ``cc``) to its query/gallery split; ``val`` holds
    the same structure for a validation split (held-out training identities), if any.
    """

    name: str
    train: List[Record]
    protocols: Dict[str, EvalSplit]
    val: Dict[str, EvalSplit] = field(default_factory=dict)
    label_set: str = "lip"
    maps_base: Optional[str] = None  # the folder its parsing tree mirrors (None: data.root)

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_clothes(self) -> int:
        return len({r.clothes_id for r in self.train})

    @property
    def is_video(self) -> bool:
        """Whether the records are tracklets."""
        return is_video(self.train)

    def all_records(self) -> List[Record]:
        """Training records, then the query and gallery records of every test and validation split
        (an image in several splits appears once per split)."""
        splits = [*self.protocols.values(), *self.val.values()]
        return [*self.train, *(r for s in splits for r in (*s.query, *s.gallery))]


def relabel(records: Sequence[Record]) -> List[Record]:
    """Map pids and clothes ids to ``0..N-1`` in sorted order (deterministic)."""
    pid_map = {p: i for i, p in enumerate(sorted({r.pid for r in records}))}
    clothes_map = {c: i for i, c in enumerate(sorted({r.clothes_id for r in records}))}
    return [replace(r, pid=pid_map[r.pid], clothes_id=clothes_map[r.clothes_id]) for r in records]
