"""``ccreid parse``: every image of a folder or a registered dataset -> a mirrored tree of maps.

``<out>/<relative path>/<stem>.png`` holds the labels (8-bit palette PNG; the palette is
for display only) and, with ``logits=True``, ``<stem>.npy`` the ``[h,w,C]`` float32
pre-softmax logits. For a dataset the paths are relative to its root, so
``data.parsing.root=<out>`` finds every map. Images are decoded and warped in DataLoader
worker processes while the network runs; files are written atomically (the PNG last). A
rerun skips the maps that are already complete, refuses files it did not write
(:mod:`ccreid.parsing.store`); an unreadable image is listed in ``<out>/parse_errors.txt``
with the reason and the rest is parsed.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ccreid.config import DataConfig, ParsingConfig
from ccreid.data.datasets.common import IMAGE_EXTENSIONS
from ccreid.data.records import frame_records
from ccreid.errors import CCReIDError
from ccreid.parsing.checkpoint import CheckpointInfo
from ccreid.parsing.parser import HumanParser
from ccreid.parsing.store import ERRORS_NAME, ParseItem, ParseOutput, open_output, plan, write_maps
from ccreid.parsing.warp import PersonBox, preprocess, read_bgr
from ccreid.runtime.distributed import current
from ccreid.runtime.io import write_text


@dataclass
class ParseSummary:
    """What a run did; ``failures`` holds (image, reason) pairs, also written to ``errors_file``;
    ``stale_removed`` counts the temporary files of a killed earlier run that were deleted."""

    parsed: int = 0
    skipped: int = 0
    failures: List[tuple] = field(default_factory=list)
    seconds: float = 0.0
    errors_file: Optional[Path] = None
    stale_removed: int = 0

    @property
    def failed(self) -> int:
        return len(self.failures)


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
    """Every image under ``images`` (``.jpg/.jpeg/.png/.bmp``, any case, nested; hidden ones skipped;
    names that cannot be opened, e.g. symbolic link loops, included: the run lists them as failures)."""
    folder, out = Path(images).expanduser(), Path(out).expanduser()
    if not folder.is_dir():
        raise CCReIDError(f"option --images: folder {folder} does not exist")
    check_output(out, [folder])
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir()
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
    every = frame_records(dataset.all_records())  # a tracklet's frames are its images
    train = sorted({Path(r.path) for r in frame_records(dataset.train)})
    images = train + sorted({Path(r.path) for r in every} - set(train))
    if not images:
        raise CCReIDError(f"dataset {name} at {root} lists no images")
    found = {Path(r.path): Path(r.parsing_path) for r in every if r.parsing_path}
    return [ParseItem(item.image, found[item.image].with_suffix("")) if item.image in found else item
            for item in _mirror(images, base, out, f"dataset {name}")]


class _Inputs(Dataset):
    """Network inputs of ``items``, decoded and warped (in DataLoader workers): ``(item, (tensor, box))``,
    or ``(item, reason)`` for an image that cannot be read."""

    def __init__(self, items: Sequence[ParseItem], input_size: Tuple[int, int]) -> None:
        self.items, self.input_size = list(items), input_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple:
        item = self.items[index]
        try:
            return item, preprocess(read_bgr(item.image), self.input_size)
        except ValueError as err:
            return item, str(err)


class _Batch(NamedTuple):
    items: List[ParseItem]
    inputs: Optional[torch.Tensor]
    boxes: List[PersonBox]
    failures: List[tuple]


def _collate(samples: Sequence[tuple]) -> _Batch:
    ready = [(item, value) for item, value in samples if not isinstance(value, str)]
    inputs = torch.stack([value[0] for _, value in ready]) if ready else None
    return _Batch([item for item, _ in ready], inputs, [value[1] for _, value in ready],
                  [(item.image, value) for item, value in samples if isinstance(value, str)])


def default_workers() -> int:
    """``--workers``: decoding processes beside the network (up to 4)."""
    return min(4, os.cpu_count() or 1)


def _loader(parser: HumanParser, todo: Sequence[ParseItem], batch: int, workers: int) -> DataLoader:
    workers = min(workers, -(-len(todo) // batch))
    return DataLoader(_Inputs(todo, parser.input_size), batch_size=batch, num_workers=workers,
                      collate_fn=_collate, pin_memory=parser.device.type == "cuda")


def run_job(parser: HumanParser, todo: Sequence[ParseItem], output: ParseOutput, logits: bool = False,
            batch: Optional[int] = None, workers: Optional[int] = None, progress: bool = False) -> ParseSummary:
    """Parse ``todo`` into ``output`` (held by :func:`open_output`): images decoded and warped in
    ``workers`` DataLoader processes (0: here) while the network runs, ``batch`` images per pass.
    Under ``torchrun`` each process parses every ``world_size``-th batch of ``todo`` (the batches a
    single process would run, so the maps are the same) and process 0 writes the error list."""
    batch = parser.default_batch if batch is None else batch
    workers = default_workers() if workers is None else workers
    if batch < 1 or workers < 0:
        raise CCReIDError(f"option --batch: {batch} must be >= 1" if batch < 1 else
                          f"option --workers: {workers} must be >= 0")
    start, info = time.perf_counter(), current()
    summary = ParseSummary(stale_removed=output.stale_removed)
    mine = [item for first in range(info.rank * batch, len(todo), info.world_size * batch)
            for item in todo[first:first + batch]]
    with tqdm(total=len(mine), unit="img", disable=not progress, desc="parsing") as bar:
        for ready in _loader(parser, mine, batch, workers):
            summary.failures += ready.failures
            if ready.items:
                for item, item_logits in zip(ready.items, parser.image_logits(ready.inputs, ready.boxes)):
                    write_maps(item, item_logits, logits, output.checkpoint.fingerprint)
                summary.parsed += len(ready.items)
            bar.update(len(ready.items) + len(ready.failures))
    shares = info.all_gather_object((summary.parsed, summary.failures))
    summary.parsed, summary.failures = sum(n for n, _ in shares), [f for _, fails in shares for f in fails]
    if info.is_main:
        summary.errors_file = _write_errors(output.folder, summary.failures)
    summary.seconds = time.perf_counter() - start
    return summary


def _write_errors(folder: Path, failures: Sequence[tuple]) -> Optional[Path]:
    """``parse_errors.txt`` listing ``failures`` (removed when there are none: from an earlier run)."""
    path = folder / ERRORS_NAME
    if failures:
        write_text(path, "".join(f"{image}\t{reason}\n" for image, reason in failures))
        return path
    path.unlink(missing_ok=True)
    return None


def _parse(checkpoint: CheckpointInfo, build: Callable[[], HumanParser], items: Sequence[ParseItem],
           out: str | Path, logits: bool, batch: Optional[int], overwrite: bool, progress: bool,
           workers: Optional[int], option: str = "--out") -> ParseSummary:
    """Under ``torchrun``, process 0 holds the folder (lock, checks, manifest) and plans; every
    process learns the plan (or process 0's refusal, raised everywhere) and parses its share."""
    info = current()
    with contextlib.ExitStack() as held:
        output, todo, refusal = None, None, None
        if info.is_main:
            try:
                output = held.enter_context(open_output(out, checkpoint, items, overwrite, option))
                todo = plan(items, output, logits, overwrite)
            except CCReIDError as err:
                refusal = str(err)
        refusal, todo, output = info.all_gather_object((refusal, todo, output))[0]
        if refusal is not None:
            raise CCReIDError(refusal)
        if todo and info.is_main:
            output.record()
        info.barrier()
        summary = (run_job(build(), todo, output, logits, batch, workers, progress and info.is_main) if todo
                   else ParseSummary(stale_removed=output.stale_removed))
        info.barrier()  # every share written before process 0 lets the folder go
    summary.skipped = len(items) - len(todo)
    return summary


def run_parse(parser: HumanParser, items: Sequence[ParseItem], out: str | Path, logits: bool = False,
              batch: Optional[int] = None, overwrite: bool = False, progress: bool = False,
              workers: Optional[int] = None) -> ParseSummary:
    """Parse ``items`` into ``out`` with ``parser`` (from :meth:`HumanParser.from_checkpoint`): complete
    maps of its checkpoint are skipped; anything else at a map's path, or a folder of another
    checkpoint's maps, is refused unless ``overwrite`` (which redoes every map)."""
    return _parse(parser.checkpoint, lambda: parser, items, out, logits, batch, overwrite, progress, workers)


def parse_with(checkpoint: CheckpointInfo, items: Sequence[ParseItem], out: str | Path, device: str = "auto",
               amp: str = "auto", logits: bool = False, batch: Optional[int] = None, overwrite: bool = False,
               progress: bool = False, workers: Optional[int] = None, label: str = "--weights",
               option: str = "--out") -> ParseSummary:
    """:func:`run_parse` that checks ``out`` (lock, manifest, files in the way) before it builds the
    network, and builds it only when a map is to be made; ``label`` and ``option`` are what errors
    call the checkpoint and the folder."""
    return _parse(checkpoint, lambda: HumanParser.load(checkpoint, device, amp, label), items, out, logits, batch,
                  overwrite, progress, workers, option)
