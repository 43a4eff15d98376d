"""Dataset registry: ``DATASETS.get(name)(cfg.data) -> ReIDDataset``."""

from ccreid.registry import Registry

DATASETS: Registry = Registry("dataset")
