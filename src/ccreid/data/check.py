"""``ccreid data check``: validate a dataset folder in seconds (no model, no GPU).

:func:`check_dataset` runs the adapter and returns one JSON-ready object::

    {"dataset", "train": STATS, "protocols": {NAME: {"query": STATS, "gallery": STATS}}, "unreadable",
     "parsing": {"found", "missing", "resized"}, "problems": [...], "refused"}

with STATS = ``{"images", "ids", "cameras", "clothes"}`` (a video dataset adds ``tracklets``,
``images`` counting their frames, and ``dropped``, the listed tracklets without frames, where
its adapter drops any); validation splits appear as protocols named ``val/<name>``. Image
and map sizes are read from file headers (PIL without decoding, ``.npy`` by memory map);
pixels are decoded only with ``deep=True``. A dataset that cannot be used (an adapter error, no training image, or a protocol whose
query identities are all absent from its gallery) raises :class:`DatasetUnusable` with a
one-line reason. ``refused`` is the one-line reason ``ccreid train`` would give for not starting
(training maps a method reads are missing; it names the ``ccreid parse`` command that makes them),
or None.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from ccreid.config import DataConfig, ParsingConfig
from ccreid.data.dataset import parse_hint
from ccreid.data.datasets import LOADERS, Loaded
from ccreid.data.datasets.common import ParsingRootMissing
from ccreid.data.labels import LabelSet, get_label_set
from ccreid.data.manager import missing_maps_error, missing_mode
from ccreid.data.records import EvalSplit, ImageRecord, Record, frame_records, is_video
from ccreid.data.registry import DATASETS
from ccreid.errors import CCReIDError, first_line
from ccreid.evaluation.ranking import valid_match

#: Problems of one kind listed one by one before the rest is summarised.
MAX_LISTED = 10


class DatasetUnusable(CCReIDError):
    """The dataset cannot be used as it is; the message names the folder or file and what was expected."""


def load_with_notes(cfg: DataConfig) -> Loaded:
    """Run the adapter of ``cfg.name``, keeping its notes when it has any."""
    if cfg.name in LOADERS:
        return LOADERS[cfg.name](cfg)
    return Loaded(DATASETS.get(cfg.name)(cfg))


def split_stats(records: Sequence[Record]) -> Dict[str, int]:
    counts = {"tracklets": len(records)} if is_video(records) else {}
    return {
        **counts,
        "images": sum(getattr(r, "num_frames", 1) for r in records),
        "ids": len({r.pid for r in records}),
        "cameras": len({r.camid for r in records}),
        "clothes": len({r.clothes_id for r in records}),
    }


def _with_dropped(stats: Dict[str, int], loaded: Loaded, part: str, protocol: str = "") -> Dict[str, int]:
    """``stats`` plus the adapter's count of tracklets of ``part`` dropped for having no frame
    (test protocols only: validation splits are not counted)."""
    if part in loaded.dropped and not protocol.startswith("val/"):
        stats["dropped"] = loaded.dropped[part]
    return stats


def match_problems(name: str, split: EvalSplit) -> List[str]:
    """Query identities absent from the gallery, and queries with no valid match under the rule."""
    views: Dict[int, set] = {}
    for r in split.gallery:
        views.setdefault(r.pid, set()).add((r.camid, r.clothes_id))
    absent = [q for q in split.query if q.pid not in views]
    noun = "tracklets" if is_video(split.query) else "images"
    problems = []
    if absent:
        absent_ids = {q.pid for q in absent}
        query_ids = {q.pid for q in split.query}
        problems.append(f"protocol {name}: {len(absent_ids)} of {len(query_ids)} query identities "
                        f"({len(absent)} of {len(split.query)} query {noun}) are absent from the gallery "
                        f"(e.g. pid {absent[0].pid}: {absent[0].path})")
    unmatched = sum(
        1 for q in split.query
        if q.pid in views and not any(valid_match(split.rule, cam == q.camid, c == q.clothes_id) for cam, c in views[q.pid])
    )
    if unmatched:
        problems.append(f"protocol {name}: {unmatched} of {len(split.query)} query {noun} have no valid gallery "
                        f"match under the {split.rule} rule (they are skipped when scoring)")
    return problems


def _header(path: str) -> Tuple[Tuple[int, int], Optional[int]]:
    """((width, height), C) from the header: PIL without decoding, ``.npy`` by memory map;
    C is the class count of an H x W x C ``.npy`` of scores, else None."""
    if path.lower().endswith(".npy"):
        shape = np.load(path, mmap_mode="r").shape
        return (int(shape[1]), int(shape[0])), (int(shape[2]) if len(shape) == 3 else None)
    with Image.open(path) as image:
        return image.size, None


def _listed(kind: str, items: List[str]) -> List[str]:
    """At most MAX_LISTED lines of one kind, then a count of the rest."""
    lines = [f"{kind}: {item}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"{kind}: ... and {len(items) - MAX_LISTED} more")
    return lines


def _decode_map(path: str, num_classes: int) -> Optional[str]:
    """Decode a parsing map; a reason when its labels fall outside the label set."""
    if path.lower().endswith(".npy"):
        array = np.load(path)
        if array.ndim == 3:  # per-class scores: argmax labels lie in 0..C-1
            top = array.shape[2] - 1
        else:
            top = int(array.max()) if array.size else 0
    else:
        with Image.open(path) as image:
            array = np.asarray(image)  # class indices (palette ignored, never converted to RGB)
        if array.ndim != 2:
            return f"{path} is not a single-channel class-index map (mode {image.mode})"
        top = int(array.max()) if array.size else 0
    if top >= num_classes:
        return f"{path} holds label {top}, outside the label set's 0..{num_classes - 1}"
    return None


def _deep_problems(records: Sequence[ImageRecord], num_classes: int, progress: bool) -> Tuple[List[str], int]:
    """Decode every image and map: the problems (unreadable files, out-of-range labels) and how
    many files cannot be read at all."""
    unreadable, bad_labels = [], []
    files = [(r.path, False) for r in records] + [(r.parsing_path, True) for r in records if r.parsing_path]
    for path, is_map in tqdm(files, desc="decoding", unit="file", disable=not progress):
        try:
            if is_map:
                reason = _decode_map(path, num_classes)
                if reason:
                    bad_labels.append(reason)
            else:
                with Image.open(path) as image:
                    image.load()
        except Exception as err:  # any decoder failure means the file is unusable
            unreadable.append(f"{path} ({type(err).__name__}: {first_line(err)})")
    return _listed("unreadable file", unreadable) + _listed("parsing labels", bad_labels), len(unreadable)


def _parsing_report(records: Sequence[ImageRecord], parsing_root: Optional[str],
                    labels: LabelSet) -> Tuple[Dict[str, int], List[str]]:
    """found / missing / resized counts (sizes from headers) and the problems they reveal."""
    expected = parsing_root is not None or any(r.parsing_path for r in records)
    with_map = [r for r in records if r.parsing_path]
    missing = [r.path for r in records if not r.parsing_path] if expected else []
    resized, unreadable, foreign = [], [], []
    for r in with_map:
        try:
            (size, _), (map_size, classes) = _header(r.path), _header(r.parsing_path)
        except Exception as err:  # a header that cannot be read: the file is broken
            unreadable.append(f"{r.path} or {r.parsing_path} ({type(err).__name__})")
            continue
        if size != map_size:
            resized.append(r.parsing_path)
        if classes is not None and classes != labels.num_classes:
            foreign.append((r.parsing_path, classes))
    problems = []
    if missing:
        where = f" under {parsing_root}" if parsing_root else ""
        problems.append(f"parsing: {len(missing)} of {len(records)} images have no map{where} "
                        f"(e.g. {missing[0]}); data.parsing.missing=error refuses them, skip trains them unerased")
    if resized:
        problems.append(f"parsing: {len(resized)} maps differ in size from their image and are resized "
                        f"(nearest-neighbour) when loaded (e.g. {resized[0]})")
    if foreign:
        problems.append(f"parsing: {len(foreign)} .npy maps hold scores of another class count than the label set "
                        f"{labels.name}'s {labels.num_classes} (e.g. {foreign[0][0]} has {foreign[0][1]}); "
                        f"check data.parsing.labels")
    problems += _listed("unreadable header", unreadable)
    counts = {"found": len(with_map), "missing": len(missing), "resized": len(resized)}
    return counts, problems


def check_dataset(name: str, root: str, parsing_root: Optional[str] = None, labels: str = "lip",
                  deep: bool = False, progress: bool = False, need_parsing: bool = False,
                  missing: str = "auto") -> dict:
    """Validate dataset ``name`` at ``root`` (see the module docstring for the result); ``refused``
    says why a run whose method reads maps (``need_parsing``) would not start, under
    ``data.parsing.missing=missing``."""
    label_set = get_label_set(labels)
    parsing = ParsingConfig(root=None if parsing_root is None else str(parsing_root), labels=str(labels),
                            missing=missing)
    cfg = DataConfig(name=name, root=str(root), parsing=parsing)
    if name not in DATASETS:
        DATASETS.get(name)  # raises the "unknown dataset" error listing the choices
    try:
        loaded = load_with_notes(cfg)
    except ParsingRootMissing as err:
        refused = missing_mode(missing, need_parsing) == "error"
        raise DatasetUnusable(f"{err}; {parse_hint(cfg)}" if refused else str(err)) from None
    except CCReIDError as err:
        raise DatasetUnusable(str(err)) from None
    dataset = loaded.dataset
    if not dataset.train:
        raise DatasetUnusable(f"{name}: no training images under {root}")
    problems = list(loaded.notes)
    splits = dict(dataset.protocols)
    splits.update({f"val/{key}": split for key, split in dataset.val.items()})
    report_protocols = {}
    for key, split in splits.items():
        if split.query and not {q.pid for q in split.query} & {g.pid for g in split.gallery}:
            raise DatasetUnusable(f"{name}: protocol {key}: no query identity appears in the gallery "
                                  f"(e.g. pid {split.query[0].pid}: {split.query[0].path}); "
                                  f"expected query and gallery to share identities")
        report_protocols[key] = {part: _with_dropped(split_stats(getattr(split, part)), loaded, part, key)
                                 for part in ("query", "gallery")}
        problems += match_problems(key, split)
    everything = frame_records(list({r.path: r for r in dataset.train + [
        r for split in splits.values() for r in split.query + split.gallery]}.values()))
    parsing_counts, parsing_problems = _parsing_report(everything, cfg.parsing.root, label_set)
    problems += parsing_problems
    unreadable = 0
    if deep:
        deep_problems, unreadable = _deep_problems(everything, label_set.num_classes, progress)
        problems += deep_problems
    refused = missing_maps_error(cfg, frame_records(dataset.train), need_parsing)
    return {
        "dataset": name,
        "train": _with_dropped(split_stats(dataset.train), loaded, "train"),
        "protocols": report_protocols,
        "parsing": parsing_counts,
        "problems": problems,
        "unreadable": unreadable,
        "refused": None if refused is None else str(refused),
    }
