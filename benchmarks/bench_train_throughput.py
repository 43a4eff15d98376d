"""Training throughput of the ablation presets, measured in one run on the same machine.

Images processed per second (originals + CRE-erased copies) over the same pre-loaded
batches, so data loading is excluded and every preset sees identical inputs. Target
(issue 3): ``ours`` / ``baseline`` >= 0.95; BSGA's extra cost is reported the same way.

    python benchmarks/bench_train_throughput.py [--config synthetic] [--steps 20] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ccreid.config import load_config
from ccreid.data.manager import DataManager
from ccreid.engine.runtime import machine_info, resolve_device, seed_everything, write_json, write_text
from ccreid.engine.trainer import _train_step, components_of
from ccreid.losses import ReIDObjective
from ccreid.models import build_cre_from_config, build_model_from_config

PRESETS = ("baseline", "baseline+bsga", "baseline+cre", "baseline+bctri", "ours-wo-bsga", "ours")


def measure(cfg, batches, manager, device, steps: int, warmup: int) -> dict:
    seed_everything(cfg.seed)
    comps = components_of(cfg)
    model = build_model_from_config(cfg.model, manager.num_train_pids).to(device)
    cre = build_cre_from_config(cfg.model, sorted(manager.label_set.clothes)) if comps.cre else None
    objective = ReIDObjective.from_config(cfg, comps, manager.num_train_pids).to(device)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(objective.parameters()), lr=cfg.train.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    model.train()
    images = 0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, images = time.perf_counter(), 0
        out = _train_step(batches[i % len(batches)], model, cre, objective, optimizer, scaler, manager,
                          device, cfg, generator)
        images += out["images"]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_s": images / seconds, "seconds": seconds, "images": images, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/train_throughput")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    device = resolve_device(cfg.train.device)
    manager = DataManager(cfg, need_parsing=True)
    manager.set_epoch(0)
    batches = [b for _, b in zip(range(8), manager.train_loader)]
    rows = {}
    for preset in PRESETS:
        cfg.model.preset = preset
        rows[preset] = measure(cfg, batches, manager, device, args.steps, args.warmup)
    base = rows["baseline"]["images_per_s"]
    for row in rows.values():
        row["ratio_vs_baseline"] = row["images_per_s"] / base
    result = {"command": "python benchmarks/bench_train_throughput.py " + " ".join(
        [f"--config {args.config}", f"--steps {args.steps}", *args.overrides]),
        "batch": cfg.data.ids_per_batch * cfg.data.images_per_id, "size": [cfg.data.height, cfg.data.width],
        "backbone": cfg.model.backbone, "width_mult": cfg.model.width_mult,
        "machine": machine_info(device), "presets": rows}
    write_json(Path(args.out + ".json"), result)
    lines = ["# Training throughput per preset (images processed per second, originals + erased copies)", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']}  ",
             f"Batch {result['batch']} at {cfg.data.height}x{cfg.data.width}, {cfg.model.backbone} "
             f"x{cfg.model.width_mult}; same pre-loaded batches for every preset (data loading excluded).", "",
             "| preset | images/s | ratio vs baseline |", "|---|---:|---:|"]
    lines += [f"| {p} | {r['images_per_s']:.1f} | {r['ratio_vs_baseline']:.3f} |" for p, r in rows.items()]
    write_text(Path(args.out + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
