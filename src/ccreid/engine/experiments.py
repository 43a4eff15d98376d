"""Several presets x seeds on one config: the demo and the ablation table."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ccreid.config import Config, to_yaml
from ccreid.engine.results import aggregate_seeds, strip_curves, write_results
from ccreid.engine.runtime import machine_info, resolve_device
from ccreid.engine.trainer import TrainResult, train


def run_presets(
    cfg: Config,
    presets: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    title: str,
    progress: bool = False,
    on_log: Optional[Callable[[dict], None]] = None,
    on_run: Optional[Callable[[str, int], None]] = None,
) -> dict:
    """Train every preset with every seed; write the aggregated ``results.json``/``.md``.

    Each run's own outputs (config, log, weights, results) go to
    ``out_dir/<preset>/seed<seed>/``. Returns the ``results.json`` content.
    """
    out = Path(out_dir)
    start = time.perf_counter()
    per_preset: Dict[str, List[TrainResult]] = {}
    for preset in presets:
        for seed in seeds:
            if on_run:
                on_run(preset, seed)
            run_cfg = copy.deepcopy(cfg)
            run_cfg.model.preset, run_cfg.seed = preset, seed
            run_dir = out / preset / f"seed{seed}"
            result = train(run_cfg, run_dir, progress=progress, on_log=on_log)
            write_results(run_dir, {preset: strip_curves(result.results)}, f"{preset}, seed {seed}",
                          timings={"train_and_eval_s": round(result.seconds, 1)})
            per_preset.setdefault(preset, []).append(result)
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
        "validation": {p: [strip_curves({k: v for k, v in r.val_results.items() if k != "epoch"})
                           for r in runs] for p, runs in per_preset.items()},
        "machine": machine_info(resolve_device(cfg.train.device)),
        "config": to_yaml(cfg),
    }
    write_results(out, table, title, **summary)
    return {"presets": table} | summary
