"""Record types shared by every dataset adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

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


@dataclass
class EvalSplit:
    """A query set scored against a gallery with one clothes-filtering rule."""

    query: List[ImageRecord]
    gallery: List[ImageRecord]
    rule: str = "general"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")


@dataclass
class ReIDDataset:
    """What a dataset adapter returns.

    ``train`` pids and clothes ids are relabelled to ``0..N-1``. ``protocols`` maps a
    protocol name (``general``, ``sc``, ``cc``) to its query/gallery split; ``val`` holds
    the same structure for a validation split (held-out training identities), if any.
    """

    name: str
    train: List[ImageRecord]
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

    def all_records(self) -> List[ImageRecord]:
        """Training records, then the query and gallery records of every test and validation split
        (an image in several splits appears once per split)."""
        splits = [*self.protocols.values(), *self.val.values()]
        return [*self.train, *(r for s in splits for r in (*s.query, *s.gallery))]


def relabel(records: Sequence[ImageRecord]) -> List[ImageRecord]:
    """Map pids and clothes ids to ``0..N-1`` in sorted order (deterministic)."""
    pid_map = {p: i for i, p in enumerate(sorted({r.pid for r in records}))}
    clothes_map = {c: i for i, c in enumerate(sorted({r.clothes_id for r in records}))}
    return [
        ImageRecord(r.path, pid_map[r.pid], r.camid, clothes_map[r.clothes_id], r.parsing_path)
        for r in records
    ]
