"""The paper's method (METHOD.md), whole: the CRE / BSGA / BCTri switches, the six presets of its
ablation (``baseline``, ``baseline+bsga``, ``baseline+cre``, ``baseline+bctri``, ``ours-wo-bsga``,
``ours``), their config sections ``model.cre``, ``model.bsga`` and ``loss.bctri``, CRE as a batch
transform, BSGA in the network, BCTri and BSGA's supervision in the objective, and the check of
the parsing labels CRE needs. Its building blocks are layer-pure modules:
:mod:`ccreid.models.cre`, :mod:`ccreid.models.bsga`, :mod:`ccreid.losses.bctri`.

:class:`PaperMethod` trains them; CAL, PS, PCB and the ViT subclass it, so the switches combine
with them (``ours+cal``, ``model.cre.enabled=true`` on any of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial, reduce
from typing import Any, Dict, List, Optional

import torch

from ccreid.config import Config, register_check, register_section, setting
from ccreid.data.labels import get_label_set
from ccreid.errors import CCReIDError
from ccreid.losses.bctri import REDUCTIONS
from ccreid.losses.objective import ERASED_TERMS
from ccreid.losses.triplet import METRICS
from ccreid.methods.base import PRESETS, Method, Preset, register_preset
from ccreid.models.bsga import LOSS_KINDS, bsga_loss
from ccreid.models.cre import FILLS, ClothesErasure
from ccreid.training.step import BatchTransform, TrainBatch


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


#: switch -> the config key that sets it explicitly (None: as the preset says)
SWITCH_KEYS = {"cre": "model.cre.enabled", "bsga": "model.bsga.enabled", "bctri": "loss.bctri.enabled"}


@dataclass(frozen=True)
class Switches:
    """Which of the paper's three ideas are on (a preset's options ``cre``, ``bsga``, ``bctri``)."""

    cre: bool = False
    bsga: bool = False
    bctri: bool = False

    @classmethod
    def of(cls, preset: Preset) -> "Switches":
        return cls(**{name: bool(preset.options.get(name, False)) for name in SWITCH_KEYS})


#: the paper's ablation, in its table's order (``ccreid ablation``'s default presets)
ABLATION_SWITCHES: Dict[str, Switches] = {
    "baseline": Switches(),
    "baseline+bsga": Switches(bsga=True),
    "baseline+cre": Switches(cre=True),
    "baseline+bctri": Switches(bctri=True),
    "ours-wo-bsga": Switches(cre=True, bctri=True),
    "ours": Switches(cre=True, bsga=True, bctri=True),
}
ABLATION = tuple(ABLATION_SWITCHES)
#: the demo's pair: the baseline and the full method (``ccreid demo``)
DEMO = ("baseline", "ours")


def explicit_switches(cfg: Config) -> Dict[str, bool]:
    """The switches ``cfg`` sets explicitly (:data:`SWITCH_KEYS`)."""
    given = {name: reduce(getattr, key.split("."), cfg) for name, key in SWITCH_KEYS.items()}
    return {name: value for name, value in given.items() if value is not None}


def check_cre_labels(cfg: Config) -> None:
    """CRE needs clothes classes: Pascal-Person-Part (body parts only) maps are refused."""
    label_set = get_label_set(cfg.data.parsing.labels)
    if not label_set.clothes and cfg.model.cre.clothes_labels is None:
        raise CCReIDError(f"data.parsing.labels={label_set.name}: these maps have no clothes classes, so CRE has "
                          "nothing to erase; parse with a LIP or ATR checkpoint (BSGA alone can use them: "
                          "model.preset=baseline+bsga)")


class PaperMethod(Method):
    """The baseline with the paper's switches: CRE's erased copies, BSGA in the network, BCTri."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.switches = Switches.of(self.preset)

    @classmethod
    def resolve(cls, preset: Preset, cfg: Config) -> Preset:
        """The preset's switches with the explicit ``*.enabled`` keys of ``cfg`` applied."""
        return replace(preset, options={**preset.options, **explicit_switches(cfg)})

    @classmethod
    def needs_parsing(cls, preset: Preset) -> bool:
        switches = Switches.of(preset)
        return switches.cre or switches.bsga

    @classmethod
    def check_before_work(cls, cfg: Config, preset: Preset) -> None:
        if Switches.of(preset).cre:
            check_cre_labels(cfg)

    @classmethod
    def network_options(cls, cfg: Config, preset: Preset) -> Dict[str, Any]:
        return {"bsga_stages": tuple(cfg.model.bsga.stages) if Switches.of(preset).bsga else ()}

    def batch_transforms(self) -> List[BatchTransform]:
        """CRE's erased copies when it is on."""
        if not self.switches.cre:
            return []
        cre = self.cfg.model.cre
        labels = cre.clothes_labels if cre.clothes_labels is not None else self.data.clothes_labels
        return [ErasedCopies(ClothesErasure(labels, p=cre.p, fill=cre.fill), self.data.num_clothes)]

    def objective_options(self) -> Dict[str, Any]:
        """METHOD.md's total loss: BCTri and BSGA's supervision follow the switches."""
        loss, model = self.cfg.loss, self.cfg.model
        return super().objective_options() | dict(
            w_bctri=loss.w_bctri, w_bsga=loss.w_bsga, use_bctri=self.switches.bctri,
            bctri_margin=loss.bctri.margin, bctri_metric=loss.bctri.metric, bctri_reduction=loss.bctri.reduction,
            attention_loss=partial(bsga_loss, kind=model.bsga.loss), erased_terms=tuple(model.cre.losses))


class ErasedCopies:
    """CRE as a batch transform: appends the erased copies of :class:`ClothesErasure` (clothes id
    ``c + num_clothes``: another outfit of the same identity), counted as ``num_erased``; of a batch
    of clips, copies of the clips with a map on every frame, every frame erased."""

    def __init__(self, erasure: ClothesErasure, num_clothes: int) -> None:
        self.erasure, self.num_clothes = erasure, num_clothes

    def __call__(self, batch: TrainBatch, generator: Optional[torch.Generator] = None) -> TrainBatch:
        counts = {"num_without_map": int((~batch.has_parsing).sum())}
        if self.erasure.p == 0.0:
            return replace(batch, counts=batch.counts | {"num_erased": 0} | counts)
        copies_of = self.erasure.clip_copies if batch.images.dim() == 5 else self.erasure.copies
        index, copies = copies_of(batch.images, batch.parsing, batch.has_parsing, generator)
        return batch.with_copies(index, copies, batch.clothes[index] + self.num_clothes,
                                 num_erased=int(index.numel()), **counts)


@register_check
def check_switches(cfg: Config) -> None:
    """A switch turned on for a preset whose method does not take them is refused, not ignored."""
    given = [name for name, on in explicit_switches(cfg).items() if on]
    preset = PRESETS.get(cfg.model.preset) if cfg.model.preset in PRESETS else None
    if preset is None or not given or issubclass(preset.method, PaperMethod):
        return
    raise CCReIDError(f"config key '{SWITCH_KEYS[given[0]]}': model.preset={preset.name} does not take the paper's CRE / BSGA / "
                      "BCTri switches; leave it unset (or choose a preset that does, e.g. ours, cal, vit)")


for _name, _switches in ABLATION_SWITCHES.items():
    register_preset(_name, PaperMethod, **vars(_switches))
