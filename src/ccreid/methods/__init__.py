"""Training methods and their presets (``model.preset``): the paper's method and CAL built in,
more from the config key ``plugins`` (see docs/EXTENDING.md)."""

from ccreid.methods.base import (PRESETS, DataInfo, Method, Preset, build_model_from_config, lr_factor,
                                 register_preset, resolve_preset)
from ccreid.methods import cal, fire, paper, pcb, ps, vit  # noqa: F401  (register the built-in presets)

__all__ = ["PRESETS", "DataInfo", "Method", "Preset", "build_model_from_config", "lr_factor", "register_preset",
           "resolve_preset"]
