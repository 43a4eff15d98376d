"""Evaluate a saved checkpoint: ``ccreid test``."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from omegaconf import OmegaConf

from ccreid.config import Config, load_config, to_yaml
from ccreid.data.manager import DataManager
from ccreid.engine.checkpoint import LoadedWeights, load_weights, restore_weights
from ccreid.engine.evaluator import evaluate_splits
from ccreid.engine.inference import check_backend, prepare
from ccreid.engine.outputs import refuse_results, run_lock, training_run_in
from ccreid.engine.results import strip_curves, write_results
from ccreid.engine.runtime import machine_info, resolve_device, write_text
from ccreid.errors import CCReIDError
from ccreid.methods import build_model_from_config, resolve_preset
from ccreid.models import ReIDModel
from ccreid.plugins import moved_plugins

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
    recorded = OmegaConf.create(loaded.config_yaml).get("plugins") or []
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


def test_checkpoint(
    weights: str | Path,
    out_dir: str | Path,
    config: Optional[str] = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
    overwrite: bool = False,
    backend: str = "auto",
    precision: str = "fp32",
) -> Dict[str, Dict[str, dict]]:
    """Evaluate ``weights`` on the configured dataset's test protocols; writes ``results.json``,
    ``results.md`` and ``config.yaml`` into ``out_dir``: never a training run's folder, and an
    earlier test there only with ``overwrite``. ``backend`` / ``precision``: how the network
    runs (:func:`ccreid.engine.inference.prepare`)."""
    check_backend(backend, precision)
    out = Path(out_dir)
    if training_run_in(out):
        raise CCReIDError(f"--out {out} holds a training run ({training_run_in(out)}); ccreid test writes results "
                          f"of its own: choose another --out, e.g. {out / 'test'}")
    refuse_results(out, overwrite)
    with run_lock(out):
        return _test(weights, out, config, overrides, progress, backend, precision)


def _test(weights: str | Path, out: Path, config: Optional[str], overrides: Sequence[str],
          progress: bool, backend: str, precision: str) -> Dict[str, Dict[str, dict]]:
    cfg, loaded = load_checkpoint_config(weights, config, overrides)
    start = time.perf_counter()
    device = resolve_device(cfg.train.device)
    check_backend(backend, precision, device)
    manager = DataManager(cfg, need_parsing=False)
    resolve_preset(cfg.model, cfg).method.complete_config(cfg, manager.dataset)  # e.g. camera ids within the table
    net = prepare(trained_model(cfg, loaded, weights).to(device), device, backend, precision)
    results = evaluate_splits(net, manager.eval_splits("test"), manager.loader, device, cfg.test,
                              cfg.test.protocols, progress)
    presets = {cfg.model.preset: strip_curves(results)}
    write_text(out / "config.yaml", to_yaml(cfg))
    write_results(out, presets, f"evaluation of {weights}", weights=str(weights),
                  extraction={"backend": net.backend, "precision": precision},
                  timings={"eval_s": round(time.perf_counter() - start, 1)}, machine=machine_info(device))
    return presets
