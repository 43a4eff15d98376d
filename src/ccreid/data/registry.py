"""Dataset registry: ``DATASETS.get(name)(root, **options) -> ReIDDataset``."""

from ccreid.registry import Registry

DATASETS: Registry = Registry("dataset")
