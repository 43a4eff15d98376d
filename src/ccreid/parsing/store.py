"""The output folder of ``ccreid parse``: which files in it are its own, and who made them.

``<out>/parse_manifest.json`` records the checkpoint whose maps the folder holds (file name, label
set, fingerprint); every label PNG carries the same fingerprint in a text chunk (:data:`MARKER`).
So a rerun tells apart its complete maps (skipped), its own unfinished work (redone) and anything
else at a map's path, or a folder of another checkpoint's maps (refused unless ``--overwrite``).
The folder is written under ``ccreid train``'s run lock, and the temporary files a killed run
left are removed when the next run starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
from PIL import Image, PngImagePlugin

from ccreid.errors import CCReIDError
from ccreid.parsing.checkpoint import CheckpointInfo
from ccreid.parsing.parser import to_labels
from ccreid.runs.outputs import run_lock
from ccreid.runtime.io import atomic_path, write_json

MANIFEST_NAME = "parse_manifest.json"
ERRORS_NAME = "parse_errors.txt"
MANIFEST_FORMAT = "ccreid-parse-maps/1"
#: PNG text key holding the fingerprint of the checkpoint that wrote the map
MARKER = "ccreid-parse"
#: the temporary files of :func:`~ccreid.runtime.io.atomic_path`: ``.<name>.<8 random>.tmp``
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


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


def manifest_of(checkpoint: CheckpointInfo) -> dict:
    """What a map folder records of the checkpoint that made its maps."""
    variant = checkpoint.variant
    return {"format": MANIFEST_FORMAT, "labels": variant.name, "num_classes": variant.num_classes,
            "class_names": list(variant.class_names), "checkpoint": checkpoint.path.name,
            "fingerprint": checkpoint.fingerprint}


def read_manifest(folder: str | Path) -> Optional[dict]:
    """The manifest of a map folder (None when it has none); a damaged one is a one-line error."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("labels"), str) or not isinstance(manifest.get("num_classes"), int):
        raise CCReIDError(f"{path} is damaged or not written by ccreid parse; parse the folder again with "
                          "`ccreid parse ... --overwrite`, or delete that file")
    return manifest


def describe(manifest: dict) -> str:
    return f"{manifest['labels']} labels from {manifest.get('checkpoint')}, fingerprint {manifest.get('fingerprint')}"


@dataclass(frozen=True)
class ParseOutput:
    """A map folder held by this run: ``ours`` when its manifest named this checkpoint before the
    run (so unfinished files in it are this checkpoint's), ``stale_removed`` temporary files deleted."""

    folder: Path
    checkpoint: CheckpointInfo
    ours: bool
    stale_removed: int
    option: str = "--out"

    def record(self) -> None:
        """Write the manifest (before the first map)."""
        write_json(self.folder / MANIFEST_NAME, manifest_of(self.checkpoint))


@contextlib.contextmanager
def open_output(folder: str | Path, checkpoint: CheckpointInfo, items: Sequence[ParseItem], overwrite: bool,
                option: str = "--out") -> Iterator[ParseOutput]:
    """Hold ``folder``'s run lock (which also proves it writable), refuse a folder of another
    checkpoint's maps unless ``overwrite``, and remove the temporary files of ``items``' maps;
    ``option`` is what errors call the folder."""
    folder = Path(folder).expanduser()
    with run_lock(folder):
        recorded = None if overwrite else read_manifest(folder)
        if recorded is not None and recorded.get("fingerprint") != checkpoint.fingerprint:
            raise CCReIDError(f"{option}: {folder} holds maps of another SCHP checkpoint ({describe(recorded)}; "
                              f"see {folder / MANIFEST_NAME}); choose another folder, or pass --overwrite to "
                              f"ccreid parse to redo them with {checkpoint.path.name} ({checkpoint.variant.name} "
                              "labels)")
        yield ParseOutput(folder, checkpoint, recorded is not None, remove_stale_temps(folder, items), option)


def remove_stale_temps(folder: Path, items: Sequence[ParseItem]) -> int:
    """Delete the temporary files left beside ``items``' maps (and the folder's own files) by a
    killed run; how many. Only names this job writes are touched."""
    own: Set[Tuple[Path, str]] = {(folder, MANIFEST_NAME), (folder, ERRORS_NAME)}
    for item in items:
        own.update({(item.png.parent, item.png.name), (item.npy.parent, item.npy.name)})
    removed = 0
    for parent in {parent for parent, _ in own if parent.is_dir()}:
        for entry in os.scandir(parent):
            match = TEMP_NAME.match(entry.name)
            if match and (parent, match["name"]) in own and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed += 1
    return removed


def _png_marker(path: Path) -> Tuple[Optional[str], Optional[Tuple[int, int]]]:
    """The fingerprint a label PNG carries and its size (None, None if it is no such PNG)."""
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.mode not in ("P", "L"):
                return None, None
            return image.info.get(MARKER), image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, None


def _image_size(path: Path) -> Optional[Tuple[int, int]]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _npy_complete(path: Path, size: Tuple[int, int], num_classes: int) -> bool:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return array.shape == (size[1], size[0], num_classes) and array.dtype == np.float32


def is_done(item: ParseItem, checkpoint: CheckpointInfo, logits: bool) -> bool:
    """Whether ``item``'s map (and logits if asked) is complete and made by ``checkpoint``
    (read from file headers: fingerprint, sizes, logits shape)."""
    marker, size = _png_marker(item.png)
    if marker != checkpoint.fingerprint or size != _image_size(item.image):
        return False
    return not logits or _npy_complete(item.npy, size, checkpoint.variant.num_classes)


def map_state(item: ParseItem, output: ParseOutput, logits: bool) -> str:
    """``done`` (a complete map, and logits if asked, of this checkpoint), ``todo`` (missing, or
    this run's to replace) or ``foreign`` (a file ccreid parse did not write for this checkpoint)."""
    marker = _png_marker(item.png)[0]
    if marker == output.checkpoint.fingerprint:
        return "done" if is_done(item, output.checkpoint, logits) else "todo"
    if marker is not None:  # another checkpoint's map: left by an interrupted --overwrite run, or not ours
        return "todo" if output.ours else "foreign"
    if item.png.exists():  # not written by ccreid parse (a user's file, a damaged one)
        return "foreign"
    return "foreign" if logits and item.npy.exists() and not output.ours else "todo"


def plan(items: Sequence[ParseItem], output: ParseOutput, logits: bool, overwrite: bool) -> List[ParseItem]:
    """The items to parse; a file at a map's path that is not this checkpoint's is a one-line
    error (unless ``overwrite``: then every map is redone)."""
    if overwrite:
        return list(items)
    states = [(item, map_state(item, output, logits)) for item in items]
    foreign = [item for item, state in states if state == "foreign"]
    if foreign:
        path = foreign[0].png if foreign[0].png.exists() else foreign[0].npy
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise CCReIDError(f"{output.option}: {path}{more} is not a map ccreid parse wrote with "
                          f"{output.checkpoint.path.name}; move it away, choose another folder, or pass "
                          "--overwrite to ccreid parse to replace it")
    return [item for item, state in states if state == "todo"]


def save_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as a ``.npy`` file, written atomically through Python's file object: numpy's
    own writer reports a short write (a disk filling up) without its cause."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, np.lib.format.header_data_from_array_1_0(array))
        handle.write(memoryview(array).cast("B"))


def write_maps(item: ParseItem, logits: np.ndarray, keep_logits: bool, fingerprint: str) -> None:
    """The ``.npy`` logits (if asked), then the label PNG marked with ``fingerprint``, each atomically."""
    if keep_logits:
        save_npy(item.npy, logits)
    image = Image.fromarray(to_labels(logits), mode="P")
    image.putpalette(PALETTE)
    info = PngImagePlugin.PngInfo()
    info.add_text(MARKER, fingerprint)
    with atomic_path(item.png) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
