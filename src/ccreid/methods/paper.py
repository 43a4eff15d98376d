"""The paper's method and its ablation presets (METHOD.md): ``baseline``, ``baseline+bsga``,
``baseline+cre``, ``baseline+bctri``, ``ours-wo-bsga`` and ``ours``, all trained by
:class:`~ccreid.methods.base.Method` with the CRE / BSGA / BCTri switches of each; their
options are the config sections ``model.cre``, ``model.bsga`` and ``loss.bctri``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from ccreid.config import register_section, setting
from ccreid.losses.bctri import REDUCTIONS
from ccreid.losses.objective import ERASED_TERMS
from ccreid.losses.triplet import METRICS
from ccreid.methods.base import Method, register_preset
from ccreid.models.bsga import LOSS_KINDS
from ccreid.models.cre import FILLS
from ccreid.models.presets import PRESETS as PAPER_PRESETS


@dataclass
class CREConfig:
    """Clothes-Relevant information Erasure (METHOD.md)."""

    enabled: Optional[bool] = None  # None: follow model.preset
    p: float = setting(1.0, range=(0, 1))
    fill: str = setting("mean", choices=FILLS)  # mean | noise | random_color | black
    clothes_labels: Optional[List[int]] = None  # None: from data.parsing.labels
    losses: List[str] = setting(default_factory=lambda: ["ce", "tri", "bctri"], items=ERASED_TERMS)


@dataclass
class BSGAConfig:
    """Body Shape-Guided Attention (METHOD.md)."""

    enabled: Optional[bool] = None  # None: follow model.preset
    stages: List[str] = field(default_factory=lambda: ["layer4"])
    loss: str = setting("bce", choices=LOSS_KINDS)  # bce | mse


@dataclass
class BCTriConfig:
    """Batch cross-clothes triplet loss (METHOD.md)."""

    enabled: Optional[bool] = None  # None: follow model.preset
    margin: float = 0.3
    metric: str = setting("euclidean", choices=METRICS)  # euclidean | cosine
    reduction: str = setting("mean", choices=REDUCTIONS)  # mean | sum


register_section("model.cre", CREConfig)
register_section("model.bsga", BSGAConfig)
register_section("loss.bctri", BCTriConfig)

#: the paper's ablation, in its table's order (``ccreid ablation``'s default presets)
ABLATION = tuple(PAPER_PRESETS)
#: the demo's pair: the baseline and the full method (``ccreid demo``)
DEMO = ("baseline", "ours")

for _name, _components in PAPER_PRESETS.items():
    register_preset(_name, Method, _components)
