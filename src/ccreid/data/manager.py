"""DataManager: a dataset adapter plus its loaders, from a :class:`~ccreid.config.Config`.

The torchreid-style entry point::

    manager = DataManager(cfg, need_parsing=True)
    for epoch in range(epochs):
        manager.set_epoch(epoch)
        for batch in manager.train_loader: ...
    splits = manager.eval_splits("test")  # name -> EvalSplit
    loader = manager.loader(splits["cc"].query)
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ccreid.config import Config, DataConfig
from ccreid.data.dataset import ReIDImageDataset, missing_map_message, parse_hint
from ccreid.data.datasets.common import ParsingRootMissing
from ccreid.data.labels import LabelSet, get_label_set
from ccreid.data.clips import ReIDClipDataset
from ccreid.data.records import EvalSplit, ImageRecord, Record, ReIDDataset, frame_records, is_video
from ccreid.data.registry import DATASETS
from ccreid.data.sampler import ClothesAwarePKSampler
from ccreid.data.transforms import build_test_transform, build_train_transform
from ccreid.data.video import clip_index, dense_split
from ccreid.errors import CCReIDError

logger = logging.getLogger(__name__)


def seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in a loader worker from its torch seed (set by the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)



def missing_mode(setting: str, need_parsing: bool) -> str:
    """``data.parsing.missing``: ``auto`` is ``error`` when maps are needed, else ``skip``."""
    if setting == "auto":
        return "error" if need_parsing else "skip"
    return setting


def without_file(records: Sequence[ImageRecord], attr: str) -> List[ImageRecord]:
    """Records whose ``attr`` path is None or not an existing file."""
    return [r for r in records if getattr(r, attr) is None or not Path(getattr(r, attr)).is_file()]


def missing_maps_error(data: DataConfig, train: Sequence[ImageRecord], need_parsing: bool) -> Optional[CCReIDError]:
    """Why a run would refuse to train on ``train`` (maps needed, ``data.parsing.missing`` error mode, a
    map missing; the message names the command that makes them), or None."""
    missing = without_file(train, "parsing_path") if missing_mode(data.parsing.missing, need_parsing) == "error" else []
    if not missing:
        return None
    more = f" (and {len(missing) - 1} more training images)" if len(missing) > 1 else ""
    return CCReIDError(f"{missing_map_message(missing[0])}{more}; {parse_hint(data)}")


class DataManager:
    """Dataset ``cfg.data.name`` with a clothes-aware P x K train loader and test loaders.

    ``need_parsing`` (CRE or BSGA on) makes the train loader read parsing maps; with
    ``data.parsing.missing`` ``auto``/``error`` every training image must have one
    (checked here, before training starts), with ``skip`` images without a map get
    ``parsing = -1``. Image files of every split are checked to exist up front.
    """

    def __init__(self, cfg: Config, need_parsing: bool) -> None:
        data = cfg.data
        self.cfg = cfg
        self.need_parsing = need_parsing
        self.missing = missing_mode(data.parsing.missing, need_parsing)
        distributed = dist.is_available() and dist.is_initialized()
        self.rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        self.dataset: ReIDDataset = self._build_dataset(distributed)
        if not self.dataset.train:
            raise CCReIDError(f"dataset {data.name!r} at {data.root} has no training images; check data.root")
        # data.parsing.labels, unless left at its default while the dataset declares its own
        labels = self.dataset.label_set if data.parsing.labels == "lip" else data.parsing.labels
        self.label_set: LabelSet = get_label_set(labels)
        self._check_files()
        train_transform = build_train_transform(data.height, data.width, data.flip_p, data.pad, data.erasing_p,
                                                data.color_jitter)
        if self.dataset.is_video:  # one random clip of each chunk of a tracklet per item
            self.train_records = dense_split(self.dataset.train, data.video.chunk)
            self.train_set = ReIDClipDataset(self.train_records, train_transform, (data.height, data.width),
                                             need_parsing, self.missing, seq_len=data.video.seq_len,
                                             stride=data.video.stride)
        else:
            self.train_records = self.dataset.train
            self.train_set = ReIDImageDataset(self.dataset.train, train_transform, need_parsing, self.missing,
                                              num_labels=self.label_set.num_classes)
            if data.cache_mb and not self.train_set.preload(data.cache_mb * 2**20):
                logger.warning("training images do not fit in data.cache_mb=%d MB: decoding them every epoch "
                               "(raise data.cache_mb to keep them, or set it to 0)", data.cache_mb)
        pids = [r.pid for r in self.train_records]
        clothes = [r.clothes_id for r in self.train_records]
        self.sampler = ClothesAwarePKSampler(
            pids, clothes, data.ids_per_batch, data.images_per_id, cfg.seed, self.rank, world_size
        )
        self.train_loader = DataLoader(
            self.train_set, batch_sampler=self.sampler, **self._loader_options()
        )

    @property
    def num_train_pids(self) -> int:
        return self.dataset.num_train_pids

    @property
    def num_train_clothes(self) -> int:
        return self.dataset.num_train_clothes

    def foreign_labels_note(self) -> Optional[str]:
        """A warning when training maps held labels outside the label set (None otherwise)."""
        stats = getattr(self.train_set, "parsing_stats", None)  # clip datasets do not count them
        if stats is None or not stats.foreign:
            return None
        labels = self.label_set
        return (f"{stats.foreign} parsing map(s) hold labels outside data.parsing.labels={labels.name} "
                f"(0..{labels.num_classes - 1}), e.g. {stats.example}; those pixels are neither clothes nor background "
                "for CRE/BSGA: check data.parsing.labels (lip, atr, pascal) against the parser that made the maps")

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass over :attr:`train_loader` the batches of ``epoch``.

        Batches and worker seeds depend only on ``(seed, epoch, rank)``, so a resumed run
        sees exactly the data an uninterrupted one would (workers restart each epoch)
        and the ranks of a distributed job draw different augmentations.
        """
        self.sampler.set_epoch(epoch)
        self.train_loader.generator.manual_seed(self.cfg.seed * 1_000_003 + epoch + self.rank * 7_919)

    def loader(
        self, records: List[Record], batch_size: Optional[int] = None, need_parsing: bool = False
    ) -> DataLoader:
        """Records in order (test transform; ``batch_size`` defaults to ``test.batch_size``); tracklets
        as their test clips (:func:`~ccreid.data.video.clip_index`; ``index``: the tracklet's position)."""
        data = self.cfg.data
        transform = build_test_transform(data.height, data.width)
        if is_video(records):
            clips = clip_index(records, data.video.seq_len, data.video.stride)
            dataset = ReIDClipDataset(records, transform, (data.height, data.width), need_parsing, self.missing,
                                      clips=clips, seq_len=data.video.seq_len, stride=data.video.stride)
        else:
            dataset = ReIDImageDataset(records, transform, need_parsing, self.missing)
        size = batch_size or self.cfg.test.batch_size
        return DataLoader(dataset, batch_size=size, shuffle=False, **self._loader_options())

    def eval_splits(self, split: str = "test") -> Dict[str, EvalSplit]:
        """Protocol name -> query/gallery split; ``val`` is empty when the dataset has none."""
        if split not in ("test", "val"):
            raise ValueError(f"split must be 'test' or 'val', got {split!r}")
        return dict(self.dataset.protocols if split == "test" else self.dataset.val)

    def _build_dataset(self, distributed: bool) -> ReIDDataset:
        """The adapter's dataset. Adapters may write files (the synthetic one renders its
        images), so in a distributed job rank 0 goes first, then each node's first
        process, then the rest: no two processes write one folder at once."""
        adapter = DATASETS.get(self.cfg.data.name)
        if not distributed:
            return self._run_adapter(adapter)
        local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        turn = 0 if self.rank == 0 else 1 if local_rank == 0 else 2
        for phase in range(3):
            if phase == turn:
                dataset = self._run_adapter(adapter)
            dist.barrier()
        return dataset

    def _run_adapter(self, adapter) -> ReIDDataset:
        try:
            return adapter(self.cfg.data)
        except ParsingRootMissing as err:
            if self.need_parsing and self.missing == "error":
                raise ParsingRootMissing(f"{err}; {parse_hint(self.cfg.data)}") from None
            raise

    def _check_files(self) -> None:
        missing = without_file(list({r.path: r for r in self.dataset.all_records()}.values()), "path")
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise CCReIDError(
                f"image file {missing[0].path} not found{more}; check data.root or regenerate the dataset"
            )
        refusal = missing_maps_error(self.cfg.data, frame_records(self.dataset.train), self.need_parsing)
        if refusal is not None:
            raise refusal

    def _loader_options(self) -> dict:
        # No persistent_workers: workers seed their RNGs once, when started, from the
        # loader generator. Kept alive across epochs, epoch e's augmentations would depend
        # on every epoch before it and a resumed run would no longer see the data of an
        # uninterrupted one; restarting them each epoch is what set_epoch relies on.
        device = self.cfg.train.device
        return {
            "num_workers": self.cfg.data.workers,
            "pin_memory": torch.cuda.is_available() and (device == "auto" or device.startswith("cuda")),
            "worker_init_fn": seed_worker,
            "generator": torch.Generator().manual_seed(self.cfg.seed),
        }
