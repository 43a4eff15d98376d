"""Several presets x seeds on one config: the demo and the ablation table."""

from __future__ import annotations

import copy
import multiprocessing
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ccreid.config import Config, to_yaml
from ccreid.data.registry import DATASETS
from ccreid.engine.trainer import TrainResult, train
from ccreid.errors import CCReIDError
from ccreid.methods import PRESETS
from ccreid.runs.outputs import run_lock
from ccreid.runs.results import aggregate_seeds, strip_curves, write_results
from ccreid.runtime.device import machine_info, resolve_device


def _run_one(cfg: Config, run_dir: Path, progress: bool, on_log: Optional[Callable[[dict], None]]) -> TrainResult:
    """Train one (preset, seed) and write its own results files."""
    result = train(cfg, run_dir, progress=progress, on_log=on_log, overwrite=True)
    result.val_results.pop("epoch", None)
    write_results(run_dir, {cfg.model.preset: strip_curves(result.results)}, f"{cfg.model.preset}, seed {cfg.seed}",
                  timings={"train_and_eval_s": round(result.seconds, 1)})
    return result


def _run_in_worker(cfg: Config, run_dir: Path, threads: int) -> TrainResult:
    torch.set_num_threads(threads)
    return _run_one(cfg, run_dir, False, None)


def run_presets(
    cfg: Config,
    presets: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    title: str,
    progress: bool = False,
    on_log: Optional[Callable[[dict], None]] = None,
    on_run: Optional[Callable[[str, int], None]] = None,
    jobs: int = 1,
) -> dict:
    """Train every preset with every seed; write the aggregated ``results.json``/``.md``.

    Each run's own outputs (config, log, weights, results) go to
    ``out_dir/<preset>/seed<seed>/``, replacing those of an earlier experiment there. ``jobs > 1``
    trains that many runs at once in worker processes (CPU threads shared out evenly; no
    progress bars or logs from them); the first failed run stops the rest.
    Returns the ``results.json`` content.
    """
    out = Path(out_dir)
    start = time.perf_counter()
    for preset in presets:  # every name is checked before the first run trains
        if preset not in PRESETS:
            raise CCReIDError(f"option --presets: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    with run_lock(out):
        return _run_all(cfg, presets, seeds, out, title, progress, on_log, on_run, jobs, start)


def _run_all(cfg: Config, presets: Sequence[str], seeds: Sequence[int], out: Path, title: str, progress: bool,
             on_log: Optional[Callable[[dict], None]], on_run: Optional[Callable[[str, int], None]], jobs: int,
             start: float) -> dict:
    runs = []
    for preset in presets:
        for seed in seeds:
            run_cfg = copy.deepcopy(cfg)
            run_cfg.model.preset, run_cfg.seed = preset, seed
            runs.append((run_cfg, out / preset / f"seed{seed}"))
    if jobs > 1:
        DATASETS.get(cfg.data.name)(cfg.data)  # render (synthetic) and check once, before the workers read it
        threads = max(1, torch.get_num_threads() // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_in_worker, run_cfg, run_dir, threads) for run_cfg, run_dir in runs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:  # stop at the first failed run instead of training the rest for nothing
                pool.shutdown(cancel_futures=True)
                raise failed[0].exception()
            results = [future.result() for future in futures]
    else:
        results = []
        for run_cfg, run_dir in runs:
            if on_run:
                on_run(run_cfg.model.preset, run_cfg.seed)
            results.append(_run_one(run_cfg, run_dir, progress, on_log))
    per_preset: Dict[str, List[TrainResult]] = {}
    for result in results:
        per_preset.setdefault(result.preset, []).append(result)
    table = {
        p: aggregate_seeds([strip_curves(r.results) for r in runs]) if len(seeds) > 1 else strip_curves(runs[0].results)
        for p, runs in per_preset.items()
    }
    summary = {
        "seeds": list(seeds),
        "timings": {"total_s": round(time.perf_counter() - start, 1),
                    "per_run_s": {p: [round(r.seconds, 1) for r in runs] for p, runs in per_preset.items()},
                    "train_images_per_s": {p: [round(r.images_per_second, 1) for r in runs]
                                           for p, runs in per_preset.items()}},
        "validation": {p: [strip_curves(r.val_results) for r in runs] for p, runs in per_preset.items()},
        "machine": machine_info(resolve_device(cfg.train.device)),
        "config": to_yaml(cfg),
    }
    write_results(out, table, title, **summary)
    return {"presets": table} | summary
