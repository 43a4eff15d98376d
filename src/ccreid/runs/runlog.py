"""A training run's records: ``metrics.jsonl``, the ``on_log`` callback, TensorBoard."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Dict, Optional

from ccreid.runtime.io import write_text

logger = logging.getLogger(__name__)
from ccreid.errors import CCReIDError


#: keys of an iteration record that are not loss terms; counts are named ``num_*`` (integers)
BOOKKEEPING = ("epoch", "iter", "lr", "images_per_s", "gpu_mem_mib")


def loss_terms(record: Dict[str, object]) -> list:
    """The loss-term names of an iteration record (``loss`` first): whatever a method logs."""
    return [k for k, v in record.items()
            if isinstance(v, float) and k not in BOOKKEEPING and not k.startswith("num_")]


def summary_writer_class() -> type:
    """TensorBoard's ``SummaryWriter`` (``train.tensorboard``), or a one-line error."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CCReIDError("config key 'train.tensorboard': tensorboard is not installed (pip install tensorboard)")
    return SummaryWriter


class RunLog:
    """Rank 0's records: ``metrics.jsonl``, the ``on_log`` callback, TensorBoard scalars.

    Inactive (other ranks) it writes nothing. Records of epochs after the resumed one
    are dropped from ``metrics.jsonl`` and from TensorBoard (``purge_step``).
    """

    def __init__(self, out: Path, epoch: int, iteration: int, on_log: Optional[Callable[[dict], None]],
                 log_every: int, active: bool, writer_class: Optional[type]) -> None:
        """A run resumed after ``epoch`` epochs and ``iteration`` steps (0 and 0: a new run)."""
        self.on_log, self.log_every = on_log, log_every
        self.file, self.writer = None, None
        if active:
            _truncate_log(out / "metrics.jsonl", epoch, iteration)
            self.file = open(out / "metrics.jsonl", "a")
            if writer_class is not None:
                self.writer = writer_class(str(out / "tensorboard"), purge_step=iteration + 1)

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        for handle in (self.file, self.writer):
            if handle is not None:
                handle.close()

    def step(self, record: dict) -> None:
        """One training iteration's record."""
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        if self.on_log and record["iter"] % self.log_every == 0:
            self.on_log(record)
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("epoch", "iter"):
                    self.writer.add_scalar(f"train/{key}", value, record["iter"])

    def validation(self, epoch: int, iteration: int, results: Dict[str, dict]) -> None:
        """Validation metrics (per protocol) after ``epoch``."""
        if self.file is None:
            return
        self.file.write(json.dumps({"epoch": epoch, "val": results}) + "\n")
        if self.writer is not None:
            for protocol, metrics in results.items():
                for key in ("rank1", "rank5", "mAP"):
                    self.writer.add_scalar(f"val/{protocol}/{key}", metrics[key], iteration)

    def flush(self) -> None:
        for handle in (self.file, self.writer):
            if handle is not None:
                handle.flush()


def _truncate_log(path: Path, epoch: int, iteration: int) -> None:
    """Keep the log records up to the checkpoint: iterations up to ``iteration``, validations
    of epochs up to ``epoch`` (nothing when starting anew). A damaged line (what a crash or a
    full disk leaves at the end) is dropped, and said so."""
    if not path.exists():
        return
    kept = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
            keep = record["iter"] <= iteration if "iter" in record else record["epoch"] <= epoch
        except (ValueError, KeyError, TypeError):
            logger.warning("%s line %d is damaged (a partial write?); dropped it", path, number)
            continue
        if keep:
            kept.append(line)
    write_text(path, "".join(line + "\n" for line in kept))
