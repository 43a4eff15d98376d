"""The six named configurations of the paper's ablation (METHOD.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from ccreid.errors import CCReIDError


@dataclass(frozen=True)
class Components:
    """Which of the paper's three ideas are switched on."""

    cre: bool
    bsga: bool
    bctri: bool


PRESETS: Dict[str, Components] = {
    "baseline": Components(cre=False, bsga=False, bctri=False),
    "baseline+bsga": Components(cre=False, bsga=True, bctri=False),
    "baseline+cre": Components(cre=True, bsga=False, bctri=False),
    "baseline+bctri": Components(cre=False, bsga=False, bctri=True),
    "ours-wo-bsga": Components(cre=True, bsga=False, bctri=True),
    "ours": Components(cre=True, bsga=True, bctri=True),
}


def resolve_components(
    preset: str,
    cre: Optional[bool] = None,
    bsga: Optional[bool] = None,
    bctri: Optional[bool] = None,
) -> Components:
    """The preset's components; an explicit ``True``/``False`` overrides it."""
    if preset not in PRESETS:
        raise CCReIDError(
            f"config key 'model.preset': unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}"
        )
    base = PRESETS[preset]
    return Components(
        cre=base.cre if cre is None else cre,
        bsga=base.bsga if bsga is None else bsga,
        bctri=base.bctri if bctri is None else bctri,
    )
