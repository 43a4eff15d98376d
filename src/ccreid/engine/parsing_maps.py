"""Parsing maps before training: the label set must suit CRE and agree with the one the map
folder records, and ``data.parsing.weights`` fills the missing maps of the dataset into
``data.parsing.root`` with SCHP.

:func:`plan_parsing` does every check first (the checkpoint and its label set, then the
dataset's layout) and lists the images without a complete map, training images first;
:func:`parse_planned` then parses them (the network is built only when a map is missing)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List

from ccreid.config import DataConfig
from ccreid.data.labels import BUILTIN, get_label_set
from ccreid.errors import CCReIDError
from ccreid.parsing import (CheckpointInfo, ParseItem, ParseSummary, dataset_items, inspect_checkpoint, parse_with,
                            read_manifest)
from ccreid.parsing.store import MANIFEST_NAME, is_done

logger = logging.getLogger(__name__)


def check_recorded_labels(data: DataConfig) -> None:
    """Maps whose folder records (``ccreid parse``'s manifest) another label set than
    ``data.parsing.labels`` are refused: their class indices would be read with the wrong meaning."""
    if data.parsing.root is None:
        return
    recorded = read_manifest(Path(data.parsing.root).expanduser())
    if recorded is None:
        return
    labels = get_label_set(data.parsing.labels)
    if str(data.parsing.labels).lower() in BUILTIN:
        contradicts = labels.name != recorded["labels"]
    else:  # a user's table of the recorded classes: its labels must exist in the maps
        contradicts = labels.num_classes > recorded["num_classes"]
    if contradicts:
        raise CCReIDError(f"data.parsing.labels={data.parsing.labels} but the maps in {data.parsing.root} are "
                          f"{recorded['labels']} maps ({recorded['num_classes']} classes, see "
                          f"{Path(data.parsing.root) / MANIFEST_NAME}); set data.parsing.labels={recorded['labels']} "
                          "or parse the images again with a matching checkpoint")


@dataclass
class ParsePlan:
    """What :func:`parse_planned` parses: the checkpoint, the images without a complete map
    (the training split's first) and how many have one already."""

    checkpoint: CheckpointInfo
    root: str
    todo: List[ParseItem]
    complete: int
    label: str


def plan_parsing(data: DataConfig, label: str = "data.parsing.weights") -> ParsePlan:
    """Check ``data.parsing.weights`` (an SCHP checkpoint of ``data.parsing.labels``) and the dataset
    layout, and list the images of ``data`` whose map is missing; nothing is parsed or written."""
    if data.parsing.root is None:
        raise CCReIDError(f"{label} needs data.parsing.root: the folder the maps are written to")
    if data.name == "synthetic":
        raise CCReIDError(f"{label}: the synthetic dataset ships its own maps; leave it unset")
    checkpoint = inspect_checkpoint(data.parsing.weights, label=label)  # header and hash: no network built
    labels = get_label_set(data.parsing.labels).name
    if checkpoint.variant.name != labels:
        raise CCReIDError(f"{label} is an SCHP {checkpoint.variant.name} checkpoint but data.parsing.labels={labels}; "
                          f"set data.parsing.labels={checkpoint.variant.name}")
    items = dataset_items(data.name, data.root, data.parsing.root)
    todo = [item for item in items if not is_done(item, checkpoint, False)]
    return ParsePlan(checkpoint, data.parsing.root, todo, len(items) - len(todo), label)


def parse_planned(plan: ParsePlan, device: str = "auto", progress: bool = False) -> ParseSummary:
    """Parse the images of ``plan`` in its order; an image that cannot be parsed is an error."""
    if not plan.todo:
        return ParseSummary(skipped=plan.complete)  # every map is there: the network is not even built
    logger.info("parsing %d image(s) without a map into %s, the training split first (%d map(s) already there)",
                len(plan.todo), plan.root, plan.complete)
    summary = parse_with(plan.checkpoint, plan.todo, plan.root, device, progress=progress, label=plan.label,
                         option="data.parsing.root")
    summary.skipped += plan.complete
    logger.info("parsing maps in %s: %d parsed, %d already there, %d failed, %d stale temporary file(s) removed "
                "(%.0f s)", plan.root, summary.parsed, summary.skipped, summary.failed, summary.stale_removed,
                summary.seconds)
    if summary.failed:
        raise CCReIDError(f"{summary.failed} image(s) could not be parsed (listed in {summary.errors_file}); "
                          "fix or remove them, then run again")
    return summary


def fill_parsing_maps(data: DataConfig, device: str = "auto", progress: bool = False,
                      label: str = "data.parsing.weights") -> ParseSummary:
    """Parse every image of ``data`` that has no complete map into ``data.parsing.root``."""
    return parse_planned(plan_parsing(data, label), device, progress)
