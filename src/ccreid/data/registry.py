"""Dataset registry: ``DATASETS.get(name)(cfg.data) -> ReIDDataset``; ``VIDEO_DATASETS``: the names whose
records are tracklets (known from the config alone, before any file is read)."""

from typing import Set

from ccreid.registry import Registry

DATASETS: Registry = Registry("dataset")
VIDEO_DATASETS: Set[str] = set()


def is_video_dataset(name: str) -> bool:
    """Whether dataset ``name`` holds tracklets (registered with ``video=True``)."""
    return name in VIDEO_DATASETS
