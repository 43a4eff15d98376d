"""The network a checkpoint holds, rebuilt from the config saved in it: what ``ccreid test``,
``ccreid extract``, :func:`ccreid.load` and the end of training evaluate."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import OmegaConf

from ccreid.config import Config, load_config
from ccreid.errors import CCReIDError
from ccreid.methods.base import build_model_from_config
from ccreid.models import ReIDModel
from ccreid.plugins import moved_plugins
from ccreid.runs.checkpoint import LoadedWeights, load_weights, restore_weights

logger = logging.getLogger(__name__)


#: where a checkpoint's plug-in that moved is given again
PLUGINS_OVERRIDE = ("if its plug-in moved, name it again: plugins=[NEW_PATH_OR_MODULE] (ccreid test / extract), "
                    "--plugins (ccreid export onnx) or ccreid.load(w, plugins=[...])")


def plugins_override(plugins: Sequence[str]) -> list[str]:
    """The ``key=value`` override that replaces a checkpoint's ``plugins`` (none when empty)."""
    return [f"plugins=[{','.join(map(str, plugins))}]"] if plugins else []


def load_checkpoint_config(weights, config: Optional[str], overrides: Sequence[str]):
    """The config a checkpoint was trained with (or ``config``), plus ``overrides``."""
    loaded = load_weights(weights)
    if config is None:
        if loaded.config_yaml is None:
            raise CCReIDError(f"weights file {weights} carries no config; pass -c CONFIG")
        overrides = [*_moved_plugins(loaded, weights, overrides), *overrides]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(loaded.config_yaml)
            try:
                cfg = load_config(str(path), overrides)
            except CCReIDError as err:  # name the weights file, not the temporary copy of its config
                message = str(err).replace(f"config file {path}", "its saved config").replace(str(path), "it")
                todo = PLUGINS_OVERRIDE if "config key 'plugins'" in message else "pass -c CONFIG or retrain"
                raise CCReIDError(f"weights file {weights}: {message}; {todo}") from None
    else:
        cfg = load_config(config, overrides)
    return cfg, loaded


def _moved_plugins(loaded: LoadedWeights, weights, overrides: Sequence[str]) -> list[str]:
    """The override that imports, by the module name recorded with the weights, each plug-in file
    of the checkpoint that has moved (none when the user names the plug-ins, or nothing moved)."""
    if any(item.partition("=")[0].strip() == "plugins" for item in overrides):
        return []
    try:
        recorded = OmegaConf.create(loaded.config_yaml).get("plugins") or []
    except Exception:  # a damaged saved config: load_config names the problem
        return []
    replaced = moved_plugins(list(recorded), loaded.extra.get("plugin_modules", {}))
    if replaced is None:
        return []
    logger.info("weights file %s: its plug-in file(s) moved; importing them by module name: %s", weights,
                ", ".join(m for m in replaced if m not in recorded))
    return plugins_override(replaced)


def trained_model(cfg: Config, loaded: LoadedWeights, weights) -> ReIDModel:
    """The checkpoint's network (``cfg.model``, returning the ``cfg.test.feature`` feature)."""
    cfg.model.pretrained = "none"  # the checkpoint provides every weight
    model = build_model_from_config(cfg, loaded.num_classes)
    model.feature = cfg.test.feature
    restore_weights(model, loaded.state_dict, weights)
    return model
