"""Evaluate a saved checkpoint: ``ccreid test``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from ccreid.config import to_yaml
from ccreid.data.manager import DataManager
from ccreid.errors import CCReIDError
from ccreid.inference.backends import check_backend, prepare
from ccreid.inference.evaluator import evaluate_splits
from ccreid.methods import resolve_preset
from ccreid.methods.restore import load_checkpoint_config, trained_model
from ccreid.runs.outputs import refuse_results, run_lock, training_run_in
from ccreid.runs.results import strip_curves, write_results
from ccreid.runtime.device import machine_info, resolve_device
from ccreid.runtime.io import write_text


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
    runs (:func:`ccreid.inference.backends.prepare`)."""
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
    resolve_preset(cfg).method.complete_config(cfg, manager.dataset)  # e.g. camera ids within the table
    net = prepare(trained_model(cfg, loaded, weights).to(device), device, backend, precision)
    results = evaluate_splits(net, manager.eval_splits("test"), manager.loader, device, cfg.test,
                              cfg.test.protocols, progress)
    presets = {cfg.model.preset: strip_curves(results)}
    write_text(out / "config.yaml", to_yaml(cfg))
    write_results(out, presets, f"evaluation of {weights}", weights=str(weights),
                  extraction={"backend": net.backend, "precision": precision},
                  timings={"eval_s": round(time.perf_counter() - start, 1)}, machine=machine_info(device))
    return presets
