"""Human parsing with SCHP's released checkpoints (LIP, ATR, Pascal-Person-Part), in plain PyTorch.

A separate model that knows nothing of re-ID training: images in, label maps out::

    from ccreid.parsing import HumanParser, folder_items, run_parse
    parser = HumanParser.from_checkpoint("exp-schp-201908261155-lip.pth", device="cuda")
    run_parse(parser, folder_items("images/", "parsing/"), "parsing/")
"""

from ccreid.parsing.checkpoint import CheckpointInfo, inspect_checkpoint, load_schp
from ccreid.parsing.job import ParseSummary, dataset_items, folder_items, parse_with, run_parse
from ccreid.parsing.network import SCHPNetwork
from ccreid.parsing.parser import HumanParser
from ccreid.parsing.store import ParseItem, read_manifest
from ccreid.parsing.variants import VARIANTS, SCHPVariant

__all__ = ["CheckpointInfo", "HumanParser", "ParseItem", "ParseSummary", "SCHPNetwork", "SCHPVariant", "VARIANTS",
           "dataset_items", "folder_items", "inspect_checkpoint", "load_schp", "parse_with", "read_manifest",
           "run_parse"]
