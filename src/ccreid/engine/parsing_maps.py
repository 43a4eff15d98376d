"""Parsing maps before training: the label set must suit CRE, and ``data.parsing.weights``
fills the missing maps of the dataset into ``data.parsing.root`` with SCHP."""

from __future__ import annotations

import logging
from pathlib import Path

from ccreid.config import DataConfig, ModelConfig
from ccreid.data.labels import get_label_set
from ccreid.errors import CCReIDError
from ccreid.parsing import HumanParser, ParseSummary, dataset_items, run_parse
from ccreid.parsing.checkpoint import checkpoint_variant, read_state_dict
from ccreid.parsing.job import is_complete

logger = logging.getLogger(__name__)


def check_cre_labels(data: DataConfig, model: ModelConfig) -> None:
    """CRE needs clothes classes: Pascal-Person-Part (body parts only) maps are refused."""
    label_set = get_label_set(data.parsing.labels)
    if not label_set.clothes and model.cre.clothes_labels is None:
        raise CCReIDError(f"data.parsing.labels={label_set.name}: these maps have no clothes classes, so CRE has "
                          "nothing to erase; parse with a LIP or ATR checkpoint (BSGA alone can use them: "
                          "model.preset=baseline+bsga)")


def fill_parsing_maps(data: DataConfig, device: str = "auto", progress: bool = False,
                      label: str = "data.parsing.weights") -> ParseSummary:
    """Parse every image of ``data`` that has no complete map into ``data.parsing.root`` (the
    checkpoint's label set is checked first; the network is loaded only when a map is missing)."""
    if data.parsing.root is None:
        raise CCReIDError(f"{label} needs data.parsing.root: the folder the maps are written to")
    if data.name == "synthetic":
        raise CCReIDError(f"{label}: the synthetic dataset ships its own maps; leave it unset")
    path = Path(data.parsing.weights).expanduser()
    variant = checkpoint_variant(read_state_dict(path, label), path, label=label)  # memory-mapped: cheap
    labels = get_label_set(data.parsing.labels).name
    if variant.name != labels:
        raise CCReIDError(f"{label} is an SCHP {variant.name} checkpoint but data.parsing.labels={labels}; "
                          f"set data.parsing.labels={variant.name}")
    items = dataset_items(data.name, data.root, data.parsing.root)
    if all(is_complete(item, False, variant.num_classes) for item in items):
        return ParseSummary(skipped=len(items))  # every map is there: the network is not even built
    parser = HumanParser.from_checkpoint(path, device=device, label=label)
    summary = run_parse(parser, items, data.parsing.root, progress=progress)
    logger.info("parsing maps in %s: %d parsed, %d already there, %d failed (%.0f s)", data.parsing.root,
                summary.parsed, summary.skipped, summary.failed, summary.seconds)
    if summary.failed:
        raise CCReIDError(f"{summary.failed} image(s) could not be parsed (listed in {summary.errors_file}); "
                          "fix or remove them, then run again")
    return summary
