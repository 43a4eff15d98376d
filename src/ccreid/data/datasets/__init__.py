"""Real-dataset adapters; importing this package registers them in ``DATASETS``.

Each adapter is ``factory(cfg: DataConfig) -> ReIDDataset`` (see :mod:`.common`).
"""

from ccreid.data.datasets import (  # noqa: F401  (imported for registration)
    ccvid, celebreid, custom, deepchange, last, ltcc, market1501, mevid, nkup, prcc, vcclothes,
)
from ccreid.data.datasets.common import LOADERS, Loaded
from ccreid.data.datasets.prcc import single_shot_galleries

__all__ = ["LOADERS", "Loaded", "single_shot_galleries"]
