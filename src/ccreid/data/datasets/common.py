"""The core every real-dataset adapter shares.

Folder checks, file-name parsing (on file *names* only, never on full paths, so a
directory such as ``001_2_c3_x/`` cannot leak into the labels), clothes-key encoding,
relabelling, parsing-map lookup in a mirror tree, and one-line bad-input messages.

An adapter parses its layout into :class:`Item` lists (raw pid, camera, outfit key) and
turns them into :class:`~ccreid.data.records.ImageRecord` lists with :func:`to_records`.
It is registered with :func:`register`, which adds it to
:data:`ccreid.data.registry.DATASETS` as ``factory(cfg) -> ReIDDataset`` and keeps the
notes (caveats such as "no clothes labels") for ``ccreid data check``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple, Union

from ccreid.config import DataConfig
from ccreid.data.records import EvalSplit, ImageRecord, Record, ReIDDataset, relabel
from ccreid.data.registry import DATASETS, VIDEO_DATASETS
from ccreid.errors import CCReIDError, first_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
PARSING_EXTENSIONS = (".png", ".npy")  # in order of preference when both exist


@dataclass(frozen=True)
class Item:
    """One parsed image before ids are encoded: raw pid, camera and outfit key.

    ``clothes`` is compared only for equality and sorted; adapters use ``(pid, outfit)``
    tuples so that per-person outfit numbers never collide across persons.
    """

    path: Path
    pid: int
    camid: int
    clothes: Hashable


@dataclass
class Loaded:
    """An adapter's result: the dataset plus caveats to show in ``data check``; ``dropped``
    counts the listed tracklets left out for having no frame, per split (train, query, gallery)."""

    dataset: ReIDDataset
    notes: List[str] = field(default_factory=list)
    dropped: Dict[str, int] = field(default_factory=dict)


Loader = Callable[[DataConfig], Loaded]

#: name -> loader (the DATASETS factory drops the notes).
LOADERS: Dict[str, Loader] = {}


def register(name: str, video: bool = False) -> Callable[[Loader], Loader]:
    """Register ``loader`` as dataset ``name`` (in DATASETS and LOADERS; ``video``: its records are
    tracklets, in VIDEO_DATASETS)."""

    def add(loader: Loader) -> Loader:
        DATASETS.register(name)(lambda cfg: loader(cfg).dataset)
        LOADERS[name] = loader
        if video:
            VIDEO_DATASETS.add(name)
        return loader

    return add


def dataset_root(label: str, root: str) -> Path:
    """``data.root`` as an existing folder, or a one-line error."""
    path = Path(root).expanduser()
    if path.is_file():
        raise CCReIDError(f"{label}: {path} is a file, not the dataset folder (set data.root / --root)")
    if not path.is_dir():
        raise CCReIDError(f"{label}: dataset folder {path} does not exist (set data.root / --root)")
    return path


def find_base(label: str, root: Path, subdirs: Sequence[str], expected: str,
              wrappers: Sequence[str] = (), files: bool = False) -> Path:
    """The folder holding every ``subdirs`` (list files when ``files``): ``root/<wrapper>`` or
    ``root`` itself.

    Raises naming the first missing entry of the most complete candidate.
    """
    present = Path.is_file if files else Path.is_dir
    candidates = [root / w for w in wrappers if (root / w).is_dir()] + [root]
    for base in candidates:
        if all(present(base / s) for s in subdirs):
            return base
    best = max(candidates, key=lambda b: sum(present(b / s) for s in subdirs))
    missing = next(s for s in subdirs if not present(best / s))
    raise CCReIDError(f"{label}: no {'file' if files else 'folder'} {missing} under {best} (expected {expected})")


def read_lines(label: str, path: Path, base: Path) -> List[str]:
    """The lines of a list file as Python's file iteration gives them, newlines removed."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CCReIDError(f"{label}: cannot read {rel(path, base)} under {base} ({type(err).__name__}: {first_line(err)})")
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def list_images(label: str, folder: Path, base: Path, expected: str) -> List[Path]:
    """Image files directly in ``folder`` (sorted; hidden files skipped); error if none."""
    with os.scandir(folder) as entries:
        found = [Path(p) for p in sorted(
            e.path for e in entries
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )]
    if not found:
        raise CCReIDError(f"{label}: no images in folder {rel(folder, base)} under {base} (expected {expected})")
    return found


def list_subfolders(folder: Path) -> List[Path]:
    """Sub-folders of ``folder`` (sorted; hidden ones skipped)."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))


def stray_images(folder: Path) -> List[Path]:
    """Image files lying directly in ``folder`` (a sign of a flat, wrong layout)."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries
                      if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith("."))


def rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form (for messages and lookups)."""
    return path.relative_to(base).as_posix()


def int_folder(label: str, folder: Path, base: Path, what: str) -> int:
    """A folder whose name is an integer id (PRCC/NKUP+ person folders)."""
    if not re.fullmatch(r"\d+", folder.name):
        raise CCReIDError(f"{label}: folder {rel(folder, base)} under {base} is not a numeric {what} "
                          f"(expected {rel(folder.parent, base)}/<{what}>/)")
    return int(folder.name)


@dataclass(frozen=True)
class NamePattern:
    """A regular expression matched against a file's stem (never its directories)."""

    regex: str
    expected: str  # shown in errors, e.g. "PID_CLOTHES_cCAM_FRAME.png (001_1_c11_015861.png)"

    def match(self, label: str, path: Path, base: Path) -> Tuple[str, ...]:
        found = re.fullmatch(self.regex, path.stem)
        if found is None:
            raise CCReIDError(f"{label}: cannot parse file name {rel(path, base)} under {base} "
                              f"(expected {self.expected})")
        return found.groups()


def parse_folder(label: str, folder: Path, base: Path, pattern: NamePattern,
                 make: Callable[[Path, Tuple[str, ...]], Optional[Item]]) -> List[Item]:
    """Items of the images directly in ``folder``: ``make(path, groups of the name)``;
    ``make`` returns None to drop an image (e.g. Market-1501 junk)."""
    items = []
    for path in list_images(label, folder, base, pattern.expected):
        item = make(path, pattern.match(label, path, base))
        if item is not None:
            items.append(item)
    return items


class ParsingRootMissing(CCReIDError):
    """``data.parsing.root`` names a folder that does not exist (yet)."""


def mirror_bases(base: Path, wrappers: Sequence[str] = ()) -> List[Path]:
    """The folders ``data.root`` may name for a dataset whose splits lie in ``base``, outermost first:
    those that hold ``base`` as one of ``wrappers`` (``LTCC_ReID``, PRCC's ``rgb``), then ``base``."""
    above = {base.parents[len(parts) - 1] for parts in (Path(w).parts for w in wrappers)
             if len(base.parts) > len(parts) and base.parts[-len(parts):] == parts}
    return sorted(above, key=lambda folder: len(folder.parts)) + [base]


class ParsingIndex:
    """Parsing maps in a tree mirroring the image tree (same relative path and stem).

    The tree is walked once; an image is looked up by its path relative to each of
    ``bases`` in turn (:func:`mirror_bases`: the dataset folder, then the folders inside it
    that ``data.root`` may name, such as PRCC's ``rgb/``), ``.png`` preferred over ``.npy``:
    maps made from any of them are found whichever ``data.root`` names. ``base``, the first,
    is the folder ``ccreid parse --dataset`` mirrors.
    """

    def __init__(self, root: Optional[str], bases: Sequence[Path]) -> None:
        self.base = Path(bases[0])
        self.prefixes = [os.path.join(str(b), "") for b in dict.fromkeys(bases)]
        self.maps: Dict[str, str] = {}
        self.root = None if root is None else Path(root).expanduser()
        if self.root is None:
            return
        if not self.root.is_dir():
            raise ParsingRootMissing(f"parsing: folder {self.root} does not exist (set data.parsing.root / --parsing)")
        for directory, _, files in os.walk(self.root):
            folder = os.path.relpath(directory, self.root)
            prefix = "" if folder == "." else folder.replace(os.sep, "/") + "/"
            for name in files:
                stem, ext = os.path.splitext(name)
                if ext.lower() not in PARSING_EXTENSIONS:
                    continue
                if prefix + stem not in self.maps or ext.lower() == PARSING_EXTENSIONS[0]:
                    self.maps[prefix + stem] = os.path.join(directory, name)

    def find(self, image: Union[str, Path]) -> Optional[str]:
        """The map of ``image``, or None (no parsing root, or no map)."""
        if not self.maps:
            return None
        stem = os.path.splitext(str(image))[0]
        for prefix in self.prefixes:
            if stem.startswith(prefix):
                found = self.maps.get(stem[len(prefix):].replace(os.sep, "/"))
                if found and found != str(image):  # a PNG image is never its own map
                    return found
        return None


def frame_maps(parsing: ParsingIndex, frames: Sequence[str]) -> Optional[Tuple[Optional[str], ...]]:
    """A tracklet's parsing maps, one per frame, or None when no frame has one."""
    if not parsing.maps:
        return None
    maps = tuple(parsing.find(frame) for frame in frames)
    return maps if any(maps) else None


def encode(keys: Iterable[Hashable]) -> Dict[Hashable, int]:
    """Distinct keys -> ``0..N-1`` in sorted order."""
    return {key: i for i, key in enumerate(sorted(set(keys)))}


def to_records(groups: Sequence[Sequence[Item]], parsing: ParsingIndex) -> List[List[ImageRecord]]:
    """Items -> records with raw pids; clothes keys encoded jointly over ``groups``
    (query and gallery share one encoding)."""
    clothes = encode(item.clothes for group in groups for item in group)
    return [[ImageRecord(str(i.path), i.pid, i.camid, clothes[i.clothes], parsing.find(i.path)) for i in group]
            for group in groups]


def train_records(items: Sequence[Item], parsing: ParsingIndex) -> List[ImageRecord]:
    """Training records: pids and clothes ids relabelled to ``0..N-1`` in sorted order."""
    return relabel(to_records([items], parsing)[0])


def require_images(label: str, what: str, records: Sequence[object], hint: str) -> None:
    """Error when a split ended up empty after filtering (e.g. only junk images)."""
    if not records:
        raise CCReIDError(f"{label}: split {what} holds no usable images ({hint})")


def camera_subset(split: Sequence[ImageRecord], camids: Iterable[int]) -> List[ImageRecord]:
    """Records whose camera is in ``camids`` (order kept)."""
    keep = set(camids)
    return [r for r in split if r.camid in keep]


def protocol(query: Sequence[Record], gallery: Sequence[Record], rule: str = "general") -> EvalSplit:
    return EvalSplit(list(query), list(gallery), rule)


def make_dataset(name: str, cfg: DataConfig, parsing: ParsingIndex, train: Sequence[Record],
                 protocols: Dict[str, EvalSplit], val: Optional[Dict[str, EvalSplit]] = None) -> ReIDDataset:
    return ReIDDataset(name=name, train=list(train), protocols=protocols, val=val or {}, label_set=cfg.parsing.labels,
                       maps_base=str(parsing.base))
