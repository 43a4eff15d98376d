"""Parsing maps before training: the label set must suit CRE and agree with the one the map
folder records, and ``data.parsing.weights`` fills the missing maps of the dataset into
``data.parsing.root`` with SCHP."""

from __future__ import annotations

import logging
from pathlib import Path

from ccreid.config import DataConfig, ModelConfig
from ccreid.data.labels import BUILTIN, get_label_set
from ccreid.errors import CCReIDError
from ccreid.parsing import ParseSummary, dataset_items, inspect_checkpoint, parse_with, read_manifest
from ccreid.parsing.store import MANIFEST_NAME, is_done

logger = logging.getLogger(__name__)


def check_cre_labels(data: DataConfig, model: ModelConfig) -> None:
    """CRE needs clothes classes: Pascal-Person-Part (body parts only) maps are refused."""
    label_set = get_label_set(data.parsing.labels)
    if not label_set.clothes and model.cre.clothes_labels is None:
        raise CCReIDError(f"data.parsing.labels={label_set.name}: these maps have no clothes classes, so CRE has "
                          "nothing to erase; parse with a LIP or ATR checkpoint (BSGA alone can use them: "
                          "model.preset=baseline+bsga)")


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


def fill_parsing_maps(data: DataConfig, device: str = "auto", progress: bool = False,
                      label: str = "data.parsing.weights") -> ParseSummary:
    """Parse every image of ``data`` that has no complete map into ``data.parsing.root`` (the
    checkpoint's label set is checked first; the network is loaded only when a map is missing)."""
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
    if all(is_done(item, checkpoint, False) for item in items):
        return ParseSummary(skipped=len(items))  # every map is there: nothing is written, no network built
    summary = parse_with(checkpoint, items, data.parsing.root, device, progress=progress, label=label,
                         option="data.parsing.root")
    logger.info("parsing maps in %s: %d parsed, %d already there, %d failed, %d stale temporary file(s) removed "
                "(%.0f s)", data.parsing.root, summary.parsed, summary.skipped, summary.failed, summary.stale_removed,
                summary.seconds)
    if summary.failed:
        raise CCReIDError(f"{summary.failed} image(s) could not be parsed (listed in {summary.errors_file}); "
                          "fix or remove them, then run again")
    return summary
