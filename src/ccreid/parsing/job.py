"""``ccreid parse``: every image of a folder or a registered dataset -> a mirrored tree of maps.

``<out>/<relative path>/<stem>.png`` holds the labels (8-bit palette PNG; the palette is
for display only) and, with ``logits=True``, ``<stem>.npy`` the ``[h,w,C]`` float32
pre-softmax logits. For a dataset the paths are relative to its root, so
``data.parsing.root=<out>`` finds every map. Files are written atomically (the PNG last);
a rerun skips the maps that are already complete, an unreadable image is listed in
``<out>/parse_errors.txt`` and the rest is parsed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ccreid.config import DataConfig, ParsingConfig
from ccreid.data.datasets.common import IMAGE_EXTENSIONS
from ccreid.engine.runtime import atomic_path, write_text
from ccreid.errors import CCReIDError
from ccreid.parsing.parser import HumanParser, to_labels
from ccreid.parsing.warp import read_bgr

ERRORS_NAME = "parse_errors.txt"


@dataclass(frozen=True)
class ParseItem:
    """One image and where its map goes (``stem`` without suffix: ``.png`` / ``.npy`` are added)."""

    image: Path
    stem: Path

    @property
    def png(self) -> Path:
        return self.stem.with_name(self.stem.name + ".png")

    @property
    def npy(self) -> Path:
        return self.stem.with_name(self.stem.name + ".npy")


@dataclass
class ParseSummary:
    """What a run did; ``failures`` holds (image, reason) pairs, also written to ``errors_file``."""

    parsed: int = 0
    skipped: int = 0
    failures: List[tuple] = field(default_factory=list)
    seconds: float = 0.0
    errors_file: Optional[Path] = None

    @property
    def failed(self) -> int:
        return len(self.failures)


def voc_palette() -> List[int]:
    """The PASCAL VOC colour map: bits of label j spread over R, G, B from the top bit down."""
    palette = []
    for j in range(256):
        rgb, label = [0, 0, 0], j
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((label >> channel) & 1) << (7 - bit)
            label >>= 3
        palette += rgb
    return palette


PALETTE = voc_palette()


def check_output(out: Path, sources: Sequence[Path]) -> None:
    """``out`` must be a folder (or not exist yet) outside every input folder."""
    if out.exists() and not out.is_dir():
        raise CCReIDError(f"option --out: {out} is a file; pass a folder for the parsing maps")
    resolved = out.resolve()
    for source in sources:
        if resolved == source.resolve() or source.resolve() in resolved.parents:
            raise CCReIDError(f"option --out: {out} lies inside the input folder {source}; its maps would be "
                              "read as images on the next run: choose a folder outside it")


def _mirror(images: Iterable[Path], base: Path, out: Path, what: str) -> List[ParseItem]:
    items, seen = [], {}
    for image in images:
        try:
            relative = image.relative_to(base)
        except ValueError:
            raise CCReIDError(f"{what}: image {image} lies outside {base}, so its map cannot mirror it")
        stem = out / relative.with_suffix("")
        if stem in seen:
            raise CCReIDError(f"{what}: images {seen[stem]} and {image} would both write {stem}.png; rename one")
        seen[stem] = image
        items.append(ParseItem(image, stem))
    return items


def folder_items(images: str | Path, out: str | Path) -> List[ParseItem]:
    """Every image under ``images`` (``.jpg/.jpeg/.png/.bmp``, any case, nested; hidden ones skipped)."""
    folder, out = Path(images).expanduser(), Path(out).expanduser()
    if not folder.is_dir():
        raise CCReIDError(f"option --images: folder {folder} does not exist")
    check_output(out, [folder])
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not found:
        raise CCReIDError(f"option --images: no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    return _mirror(found, folder, out, "option --images")


def dataset_base(root: str | Path) -> Path:
    """The folder the parsing tree of a dataset that names none (``maps_base``) mirrors: ``data.root``
    (its folder for a CSV manifest)."""
    path = Path(root).expanduser()
    return path.parent if path.is_file() else path


def dataset_items(name: str, root: str | Path, out: str | Path) -> List[ParseItem]:
    """Every image of dataset ``name`` at ``root``, mirrored under ``out`` from the dataset's folder
    (the same tree whichever of its accepted roots ``root`` names; a map already found in ``out``
    keeps its place): the training split first (sorted), then the images of the other splits
    (sorted), so an interrupted run has parsed what training reads."""
    from ccreid.data.check import load_with_notes

    out = Path(out).expanduser()
    parsing = ParsingConfig(root=str(out) if out.is_dir() else None)
    dataset = load_with_notes(DataConfig(name=name, root=str(root), parsing=parsing)).dataset
    base = Path(dataset.maps_base) if dataset.maps_base else dataset_base(root)
    check_output(out, [base])
    train = sorted({Path(r.path) for r in dataset.train})
    images = train + sorted({Path(r.path) for r in dataset.all_records()} - set(train))
    if not images:
        raise CCReIDError(f"dataset {name} at {root} lists no images")
    found = {Path(r.path): Path(r.parsing_path) for r in dataset.all_records() if r.parsing_path}
    return [ParseItem(item.image, found[item.image].with_suffix("")) if item.image in found else item
            for item in _mirror(images, base, out, f"dataset {name}")]


def is_complete(item: ParseItem, logits: bool, num_classes: int) -> bool:
    """Whether ``item``'s map (and logits) exist with the image's size (read from headers)."""
    try:
        with Image.open(item.image) as image:
            width, height = image.size
        with Image.open(item.png) as labels:
            if labels.size != (width, height) or labels.mode not in ("P", "L"):
                return False
        if logits:
            array = np.load(item.npy, mmap_mode="r", allow_pickle=False)
            return array.shape == (height, width, num_classes) and array.dtype == np.float32
    except (OSError, ValueError):
        return False
    return True


def write_maps(item: ParseItem, logits: np.ndarray, keep_logits: bool) -> None:
    """The ``.npy`` logits (if asked), then the label PNG, each written atomically."""
    if keep_logits:
        with atomic_path(item.npy) as tmp, open(tmp, "wb") as handle:
            np.save(handle, logits.astype(np.float32, copy=False))
    image = Image.fromarray(to_labels(logits), mode="P")
    image.putpalette(PALETTE)
    with atomic_path(item.png) as tmp:
        image.save(tmp, format="PNG")


def _chunks(items: Sequence[ParseItem], size: int) -> Iterable[Sequence[ParseItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_parse(parser: HumanParser, items: Sequence[ParseItem], out: str | Path, logits: bool = False,
              batch: Optional[int] = None, overwrite: bool = False, progress: bool = False) -> ParseSummary:
    """Parse ``items`` in batches (default: the parser's device default); complete maps are skipped
    unless ``overwrite``."""
    batch = parser.default_batch if batch is None else batch
    if batch < 1:
        raise CCReIDError(f"option --batch: {batch} must be >= 1")
    out = Path(out).expanduser()
    start = time.perf_counter()
    summary = ParseSummary()
    todo = list(items) if overwrite else [i for i in items if not is_complete(i, logits, parser.variant.num_classes)]
    summary.skipped = len(items) - len(todo)
    with tqdm(total=len(todo), unit="img", disable=not progress, desc="parsing") as bar:
        for chunk in _chunks(todo, batch):
            ready, images = [], []
            for item in chunk:
                try:
                    images.append(read_bgr(item.image))
                    ready.append(item)
                except ValueError as err:
                    summary.failures.append((item.image, str(err)))
            if images:
                for item, item_logits in zip(ready, parser.logits(images)):
                    write_maps(item, item_logits, logits)
                summary.parsed += len(ready)
            bar.update(len(chunk))
    errors = out / ERRORS_NAME
    if summary.failures:
        write_text(errors, "".join(f"{image}\t{reason}\n" for image, reason in summary.failures))
        summary.errors_file = errors
    elif errors.exists():
        errors.unlink()  # from an earlier run whose failures are gone now
    summary.seconds = time.perf_counter() - start
    return summary
