"""Training throughput of the ablation presets, measured in one run on the same machine.

    python benchmarks/bench_train_throughput.py [--config synthetic] [--steps 4] [--repeats 5] [--threads 1]
                                                [--presets baseline,ours] [--shared] [key=value ...]

Each preset gets its own model / CRE / objective / Adam / :class:`ccreid.training.step.TrainStep`
(the step ``ccreid train`` runs), built from the config exactly as the trainer builds
them. All presets train on the same pre-loaded batches (data loading excluded, so every
preset sees identical inputs; parsing maps are loaded for all of them). Timing: after a
warm-up, ``--repeats`` rounds; in each round every preset runs ``--steps`` steps, the
presets taking turns in an order rotated every round (no fixed-order bias on a shared
machine). Best and median over the rounds are reported.

Throughput is images processed per second: originals + CRE's erased copies (with
``model.cre.p=1`` a CRE preset pushes 2x the images through the network per step), and
steps per second beside it. The presets do different work by design (that is what the ratios
price); the results state it: the model settings they share (from the config, written out) and
each preset's FLOPs per step and per image (``FlopCounterMode``, one step counted before timing).
Targets (issue 3): ``ours`` / ``baseline`` >= 0.95 images/s;
BSGA's extra cost is ``baseline+bsga`` vs ``baseline``, CRE's ``baseline+cre`` vs ``baseline``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from ccreid.config import load_config
from ccreid.data.manager import DataManager
from ccreid.engine.training import build_training
from ccreid.methods import DataInfo
from ccreid.runtime.amp import resolve_amp
from ccreid.runtime.device import machine_info, resolve_device, seed_everything
from ccreid.runtime.io import write_json, write_text
from ccreid.training.step import TrainStep
from equal_work import count_flops, model_settings

PRESETS = ("baseline", "baseline+bsga", "baseline+cre", "baseline+bctri", "ours-wo-bsga", "ours")
TARGET = 0.95


def build_step(cfg, manager: DataManager, device: torch.device) -> TrainStep:
    """The trainer's objects for ``cfg.model.preset`` (no DDP, no compile, no logging)."""
    seed_everything(cfg.seed)
    training = build_training(cfg, DataInfo.of(manager.dataset.train, manager.label_set), device)
    training.model.train()
    return training.start()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_chunk(step: TrainStep, batches: list, steps: int, device: torch.device) -> tuple[float, float, int]:
    """Wall seconds, process CPU seconds and images of ``steps`` steps (same batches for every preset)."""
    sync(device)
    start, cpu, images = time.perf_counter(), time.process_time(), 0
    for i in range(steps):
        images += step(batches[i % len(batches)])["images"]
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic")
    parser.add_argument("--steps", type=int, default=4, help="steps per preset per round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per preset first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: robust on a shared machine; 0: torch default)")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--shared", action="store_true",
                        help="say in the results that the machine is shared with other jobs (their load varies)")
    parser.add_argument("--out", default="benchmarks/results/train_throughput")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    device = resolve_device(cfg.train.device)
    cfg.train.amp = resolve_amp(device, cfg.train.amp)  # `auto` as the trainer resolves it
    manager = DataManager(cfg, need_parsing=True)  # renders the synthetic dataset when missing
    manager.set_epoch(0)
    batches = [b for _, b in zip(range(max(args.steps, 4)), manager.train_loader)]
    presets = args.presets.split(",")
    steps = {}
    for preset in presets:
        cfg.model.preset = preset
        steps[preset] = build_step(cfg, manager, device)
    flops = {p: count_flops(lambda p=p: steps[p](batches[0])) for p in presets}  # one step each, also a warm-up
    load_before = os.getloadavg()
    for preset in presets:  # warm-up: allocator, Adam state, first-call costs
        run_chunk(steps[preset], batches, args.warmup, device)
    wall = {p: [] for p in presets}
    cpu = {p: [] for p in presets}
    images = {}
    for r in range(args.repeats):
        for preset in presets[r % len(presets):] + presets[:r % len(presets)]:
            w, c, n = run_chunk(steps[preset], batches, args.steps, device)
            wall[preset].append(w)
            cpu[preset].append(c)
            images[preset] = n
            print(f"round {r + 1}/{args.repeats} {preset}: {n / w:.1f} images/s ({w:.2f} s wall, {c:.2f} s CPU)",
                  flush=True)
    load_after = os.getloadavg()
    # other jobs on the machine: more runnable processes than half its cores, beyond this one
    busy = args.shared or max(load_before[0], load_after[0]) > 1 + 0.5 * os.cpu_count()
    rows = {}
    for p in presets:
        n = images[p]
        rows[p] = {"images_per_step": n / args.steps, "gflop_per_step": flops[p] / 1e9,
                   "gflop_per_image": flops[p] / 1e9 / (n / args.steps), "wall_s": wall[p], "cpu_s": cpu[p],
                   "images_per_s_best": n / min(wall[p]), "images_per_s_median": n / statistics.median(wall[p]),
                   "images_per_cpu_s_best": n / min(cpu[p]),
                   "steps_per_s_best": args.steps / min(wall[p]),
                   "steps_per_s_median": args.steps / statistics.median(wall[p])}
    if "baseline" in rows:
        base = rows["baseline"]
        for p, row in rows.items():
            for key in ("images_per_s_best", "images_per_s_median", "images_per_cpu_s_best", "steps_per_s_best"):
                row[f"ratio_{key}"] = row[key] / base[key]
            # per round: this preset's rate / baseline's rate in the same round (paired), wall and CPU
            row["ratio_images_per_s_paired_median"] = statistics.median(
                (images[p] / w) / (images["baseline"] / b) for w, b in zip(wall[p], wall["baseline"]))
            row["ratio_images_per_cpu_s_paired_median"] = statistics.median(
                (images[p] / c) / (images["baseline"] / b) for c, b in zip(cpu[p], cpu["baseline"]))
    command = ("python benchmarks/bench_train_throughput.py " + " ".join(
        [f"--config {args.config}", f"--steps {args.steps}", f"--repeats {args.repeats}",
         f"--warmup {args.warmup}", f"--threads {args.threads}", *(["--shared"] if args.shared else []),
         *args.overrides])).strip()
    if args.presets != ",".join(PRESETS):
        command += f" --presets {args.presets}"
    result = {
        "command": command, "config": args.config, "overrides": args.overrides,
        "batch": cfg.data.ids_per_batch * cfg.data.images_per_id, "size": [cfg.data.height, cfg.data.width],
        "backbone": cfg.model.backbone, "width_mult": cfg.model.width_mult, "model_settings": model_settings(cfg),
        "amp": cfg.train.amp,
        "cre_p": cfg.model.cre.p, "steps_per_round": args.steps, "repeats": args.repeats, "warmup": args.warmup,
        "target_ratio": TARGET,
        "machine": machine_info(device) | {"load_avg_before": load_before, "load_avg_after": load_after,
                                           "shared": busy},
        "presets": rows,
    }
    write_json(Path(args.out + ".json"), result)

    def ratio(p: str, key: str) -> str:
        return f"{rows[p][key]:.3f}" if key in rows[p] else ""

    lines = [
        "# Training throughput per preset", "",
        f"Command: `{command}`  ", f"Machine: {result['machine']}", "",
        f"Config `{args.config}`{''.join(' ' + o for o in args.overrides)}: batch {result['batch']} (P x K) at "
        f"{cfg.data.height}x{cfg.data.width}, {model_settings(cfg)} (every preset), amp {cfg.train.amp}, "
        f"CRE p={cfg.model.cre.p}, device {device}, {torch.get_num_threads()} torch thread(s). Each preset runs the "
        f"trainer's `TrainStep` on the same {len(batches)} pre-loaded batches (data loading excluded). "
        f"{args.repeats} interleaved rounds of {args.steps} steps per preset (order rotated every round) after "
        f"{args.warmup} warm-up steps each.", "",
        ("The machine is shared with other jobs, whose load comes and goes" if busy else "Machine load") +
        f" (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores, this "
        "process counting 1)" + ("; absolute rates are noisy, compare the presets through the ratios, which come "
                                 "from interleaved rounds. " if busy else ". ") +
        "`best` uses each preset's fastest round (least disturbed), `median` its median round, `paired` the "
        "median over rounds of (preset rate / baseline rate in the same round), `CPU` this process's CPU seconds "
        "(insensitive to time lost waiting for a core).", "",
        "Images/s counts every image through the network: originals + CRE's erased copies. The presets do "
        "different work by design, stated in the GFLOP columns (FlopCounterMode, forward + backward of one step): "
        "the ratios price each method against baseline, they do not compare two implementations of one method.", "",
        "| preset | images/step | GFLOP/step | GFLOP/image | images/s best | images/s median | steps/s best | "
        "ratio images/s best | ratio paired | ratio CPU best | ratio CPU paired | ratio steps/s best |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p, r in rows.items():
        lines.append(f"| {p} | {r['images_per_step']:.0f} | {r['gflop_per_step']:.1f} | {r['gflop_per_image']:.2f} | "
                     f"{r['images_per_s_best']:.1f} | "
                     f"{r['images_per_s_median']:.1f} | {r['steps_per_s_best']:.3f} | "
                     f"{ratio(p, 'ratio_images_per_s_best')} | {ratio(p, 'ratio_images_per_s_paired_median')} | "
                     f"{ratio(p, 'ratio_images_per_cpu_s_best')} | "
                     f"{ratio(p, 'ratio_images_per_cpu_s_paired_median')} | {ratio(p, 'ratio_steps_per_s_best')} |")
    if "baseline" in rows:
        lines.append("")
        for p, what in (("ours", "ours vs baseline"), ("baseline+bsga", "BSGA's cost (baseline+bsga vs baseline)"),
                        ("baseline+cre", "CRE's cost (baseline+cre vs baseline)")):
            if p in rows:
                r = rows[p]
                # judged on the least disturbed measurements: best wall round and best CPU round
                verdict = "meets" if min(r["ratio_images_per_s_best"], r["ratio_images_per_cpu_s_best"]) >= TARGET \
                    else "misses"
                lines.append(f"- {what}: images/s ratio {r['ratio_images_per_s_best']:.3f} (best wall), "
                             f"{r['ratio_images_per_cpu_s_best']:.3f} (best CPU); paired medians "
                             f"{r['ratio_images_per_s_paired_median']:.3f} (wall), "
                             f"{r['ratio_images_per_cpu_s_paired_median']:.3f} (CPU); per step "
                             f"{r['ratio_steps_per_s_best']:.3f}: {verdict} the >= {TARGET} images/s target "
                             f"(judged on the best wall and best CPU ratios).")
        lines += ["", f"A CRE preset (p={cfg.model.cre.p}) feeds each step its {result['batch']} originals plus their "
                  "erased copies, so a step (and an epoch) costs up to twice baseline's; the images/s ratios compare "
                  "the cost per image through the network, the `ratio steps/s` column the cost per step."]
    write_text(Path(args.out + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
