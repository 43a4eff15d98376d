"""Training methods and their presets (``model.preset``): the paper's method and CAL built in,
more from the config key ``plugins`` (see docs/EXTENDING.md)."""

from ccreid.config import register_check
from ccreid.errors import CCReIDError
from ccreid.methods.base import (PRESETS, DataInfo, Method, Preset, build_model_from_config, complete_video,
                                 lr_factor, register_preset, resolve_preset)
# register the built-in presets and config sections; paper first: its sections come first in config.yaml
from ccreid.methods import paper  # noqa: F401  (isort: skip)
from ccreid.methods import cal, fire, pcb, ps, vit  # noqa: F401
from ccreid.models.backbones import check_backbone_name


@register_check
def check_config(cfg) -> None:
    """The config checks that need registries: ``model.backbone`` and ``model.preset`` (run by
    :func:`ccreid.config.load_config` after the field checks)."""
    check_backbone_name(cfg.model.backbone)
    if cfg.model.preset not in PRESETS:
        raise CCReIDError(f"config key 'model.preset': unknown preset {cfg.model.preset!r}; "
                          f"choose one of: {', '.join(PRESETS)}")


__all__ = ["PRESETS", "DataInfo", "Method", "Preset", "build_model_from_config", "check_config", "complete_video",
           "lr_factor",
           "register_preset", "resolve_preset"]
