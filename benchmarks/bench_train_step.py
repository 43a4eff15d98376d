"""Training-step speed: ccreid's ``baseline`` step vs a bare hand-written torchvision loop, FLOP/s, loader speed.

    python benchmarks/bench_train_step.py [--device auto] [--backbone resnet50] [--last-stride 1] [--batch 16]
                                          [--size 256x128] [--steps 3] [--repeats 3] [--threads 1] [--workers 0,1,2]
                                          [--amp auto|off|bf16|fp16] [--cudnn-benchmark] [--shared]

Defaults: on CUDA batch 64 at 384x192, on CPU batch 16 at 256x128; ``--amp auto`` is ccreid's
``train.amp`` default (bf16 on CUDA, off on CPU) and applies to both loops; ``--amp fp16`` (CUDA only:
ccreid's ``train.amp`` has no CPU fp16) autocasts to float16 with a ``GradScaler`` in both. In one process, on the
same pre-loaded batches (from ``DataManager``'s train loader on the synthetic dataset,
kept in host memory as the loader hands them over; each step copies its batch to the
device), timed in interleaved rounds whose order rotates every round:

- ``ccreid``: the trainer's :class:`ccreid.training.step.TrainStep` for preset ``baseline``
  (model, objective, Adam built from the config exactly as ``ccreid train`` builds them); its model
  settings are spelled out here (``--backbone``, ``--last-stride``, width 1, average pooling:
  benchmarks/equal_work.py), not taken from configs/synthetic.yaml, which only supplies the data;
- ``bare``: written here without ccreid: torchvision ``resnet*`` with the same ``--last-stride``,
  average pooling + BNNeck (BatchNorm1d, frozen bias) + bias-free linear classifier,
  ``F.cross_entropy(label_smoothing=0.1)`` + batch-hard triplet (margin 0.3), Adam with the
  same lr / weight decay, the update through a ``torch.amp.GradScaler`` (enabled for fp16 only,
  as ccreid's), no per-step host sync of its own (fp16's scaler reads its inf check, in both loops);
- ``matmul``: an ``n x n x n`` float32 matmul (and bf16 on CUDA / with ``--amp bf16``, fp16 with
  ``--amp fp16``; TF32 on CUDA too, since cuDNN convolutions use TF32 by default), the device's
  measured peak;
- ``loader``: ``DataManager.train_loader`` (decode + train augmentation + collate) with 0, 1,
  2 ... workers, without parsing maps (what ``baseline`` loads) and with them (CRE / BSGA).

Each step's FLOPs are counted once with ``torch.utils.flop_counter.FlopCounterMode`` over a
whole step (forward and backward are both counted; the optimizer's elementwise update is
not), so achieved FLOP/s = FLOPs per step x steps/s. The two loops must do the same FLOPs per
step, or the script refuses to time them (exit status 2). Target (issue 6): ccreid / bare >= 0.95
steps/s. Timings synchronise the device before reading the clock (CUDA).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ccreid.config import load_config
from ccreid.data.manager import DataManager
from ccreid.engine.training import build_training
from ccreid.methods import DataInfo
from ccreid.runtime.amp import resolve_amp
from ccreid.runtime.device import machine_info, resolve_device, seed_everything
from ccreid.runtime.io import write_json, write_text
from ccreid.training.step import TrainStep
from equal_work import count_flops, model_config, model_settings, require_equal_flops

TARGET = 0.95
K = 4  # images per identity in a P x K batch
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype of each --amp mode


# ----------------------------------------------------------------------------- the bare loop
class BareReID(nn.Module):
    """torchvision ResNet (``last_stride`` in layer4) + avg pool + BNNeck + bias-free classifier."""

    def __init__(self, arch: str, num_classes: int, last_stride: int) -> None:
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        block = net.layer4[0]
        stride = (last_stride, last_stride)
        (block.conv2 if hasattr(block, "conv3") else block.conv1).stride = stride  # Bottleneck / BasicBlock
        block.downsample[0].stride = stride
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                  net.layer4)
        dim = net.fc.in_features
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.body(x).mean(dim=(2, 3))
        return feat, self.classifier(self.bnneck(feat))


def bare_triplet(feat: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.), Euclidean distances from the differences
    (``torch.cdist`` without the matmul form, as ccreid computes them)."""
    dist = torch.cdist(feat, feat, compute_mode="donot_use_mm_for_euclid_dist")
    same = pids[:, None] == pids[None, :]
    hardest_pos = (dist * same).amax(1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def make_bare_step(arch: str, last_stride: int, num_classes: int, device: torch.device, lr: float,
                   weight_decay: float, amp: str, channels_last: bool) -> tuple[Callable, nn.Module]:
    model = BareReID(arch, num_classes, last_stride).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    dtype = AMP_DTYPES.get(amp)

    def step(batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["image"].to(device, non_blocking=True)
        pids = batch["pid"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            feat, logits = model(images)
        loss = F.cross_entropy(logits.float(), pids, label_smoothing=0.1) + bare_triplet(feat.float(), pids)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)  # fp16: skipped when a gradient is inf/NaN
        scaler.update()
        return loss  # no .item(): no host sync per step

    return step, model


# ----------------------------------------------------------------------------- ccreid's step
def make_ccreid_step(cfg, num_classes: int, num_clothes: int, device: torch.device) -> tuple[TrainStep, nn.Module]:
    """The trainer's objects for preset ``baseline`` (``build_training``, as ``ccreid train`` builds them)."""
    data = DataInfo(num_classes, num_clothes, torch.ones(num_classes, num_clothes, dtype=torch.bool), ())
    training = build_training(cfg, data, device)
    training.model.train()
    return training.start(), training.model


# ----------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall and process-CPU seconds of ``fn()`` (device synchronised at both ends)."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def count_host_reads(fn: Callable[[], object]) -> int:
    """Ops of one call that read a device value on the host (``.item()``/``float()``/``bool()``,
    boolean-mask indexing via ``nonzero``): each is a device synchronisation on CUDA. Adam's
    per-parameter step counters live on the CPU (``.item()`` there is no sync) and count too."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    counts = {e.key: e.count for e in prof.key_averages()}
    return counts.get("aten::_local_scalar_dense", 0) + counts.get("aten::nonzero", 0)


def matmul_job(n: int, dtype: torch.dtype, device: torch.device, reps: int, tf32: bool = False) -> Callable:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def run() -> None:
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            for _ in range(reps):
                a @ b
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous

    return run


def loader_job(manager: DataManager, batches: int) -> Callable[[], dict]:
    """Iterates ``batches`` batches of a fresh epoch; returns start-up and steady-state times."""

    def run() -> dict:
        manager.set_epoch(0)
        start = time.perf_counter()
        it = iter(manager.train_loader)
        first = next(it)
        after_first = time.perf_counter()
        images = 0
        for _, batch in zip(range(batches - 1), it):
            images += len(batch["pid"])
        end = time.perf_counter()
        del it
        return {"first_batch_s": after_first - start, "steady_s": end - after_first, "steady_images": images,
                "batch": len(first["pid"])}

    return run


def fmt_rate(x: float) -> str:
    if x >= 1e12:
        return f"{x / 1e12:.2f} T"
    return f"{x / 1e9:.1f} G"


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--backbone", default="resnet50", help="resnet18 | resnet34 | resnet50 | resnet101")
    parser.add_argument("--last-stride", type=int, default=1, choices=(1, 2),
                        help="stride of layer4 in both loops (1: the paper's re-ID ResNet)")
    parser.add_argument("--batch", type=int, default=None, help="P x K with K=4 (default: 64 CUDA, 16 CPU)")
    parser.add_argument("--size", default=None, help="HxW (default: 384x192 CUDA, 256x128 CPU)")
    parser.add_argument("--steps", type=int, default=None, help="steps per variant per round (20 CUDA, 3 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (5 CUDA, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (5 CUDA, 1 CPU)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads in this process (0: torch default); 1 is robust on a shared CPU")
    parser.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                        help="autocast for both loops (auto: ccreid's train.amp default, bf16 on CUDA, else off; "
                             "fp16: CUDA only, with a GradScaler)")
    parser.add_argument("--matmul", type=int, default=4096, help="n of the n x n x n peak matmul")
    parser.add_argument("--workers", default="0,1,2", help="loader worker counts to time")
    parser.add_argument("--loader-batches", type=int, default=8, help="batches per loader timing")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark=True for both loops (ccreid's trainer leaves it off)")
    parser.add_argument("--shared", action="store_true",
                        help="say in the results that the machine is shared with other jobs (their load varies)")
    parser.add_argument("--out", default="benchmarks/results/train_step")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.amp == "fp16" and not cuda:
        parser.error(f"--amp fp16 needs a CUDA device (ccreid's train.amp has no fp16 on {device.type}): "
                     "use --amp bf16 or off")
    batch = args.batch or (64 if cuda else 16)
    size = args.size or ("384x192" if cuda else "256x128")
    steps = args.steps or (20 if cuda else 3)
    repeats = args.repeats or (5 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    height, width = (int(v) for v in size.lower().split("x"))
    if batch % K:
        parser.error(f"--batch must be a multiple of {K} (P x K batches, K={K})")
    workers = [int(w) for w in args.workers.split(",") if w != ""]
    cfg = model_config(load_config("synthetic", [  # the synthetic data; the model spelled out, both loops alike
        f"data.height={height}", f"data.width={width}", f"data.ids_per_batch={batch // K}",
        f"data.images_per_id={K}", "data.workers=0", f"train.device={args.device}",
    ]), args.backbone, args.last_stride)
    amp = resolve_amp(device, args.amp)
    cfg.train.amp = amp  # set, not overridden: a bare `train.amp=off` override parses as YAML false
    seed_everything(cfg.seed)
    manager = DataManager(cfg, need_parsing=False)  # what the trainer loads for baseline
    manager.set_epoch(0)
    batches = [b for _, b in zip(range(min(steps, 4)), manager.train_loader)]
    num_classes, num_clothes = manager.num_train_pids, manager.num_train_clothes

    seed_everything(cfg.seed)
    ccreid_step, ccreid_model = make_ccreid_step(cfg, num_classes, num_clothes, device)
    seed_everything(cfg.seed)
    channels_last = ccreid_step.channels_last
    bare_step, _ = make_bare_step(args.backbone, args.last_stride, num_classes, device, cfg.train.lr,
                                  cfg.train.weight_decay, amp, channels_last)

    def chunk(step_fn: Callable) -> Callable[[], None]:
        def run() -> None:
            for i in range(steps):
                step_fn(batches[i % len(batches)])
        return run

    model_jobs = {"ccreid TrainStep (baseline)": chunk(ccreid_step), "bare torchvision loop": chunk(bare_step)}
    mm_reps = 20 if cuda else 1
    matmul_jobs = {"matmul fp32": matmul_job(args.matmul, torch.float32, device, mm_reps)}
    if cuda:
        matmul_jobs["matmul tf32"] = matmul_job(args.matmul, torch.float32, device, mm_reps, tf32=True)
    if cuda or amp == "bf16":
        matmul_jobs["matmul bf16"] = matmul_job(args.matmul, torch.bfloat16, device, mm_reps)
    if amp == "fp16":
        matmul_jobs["matmul fp16"] = matmul_job(args.matmul, torch.float16, device, mm_reps)
    loader_jobs = {}
    for need_parsing in (False, True):
        for w in workers:
            lcfg = load_config("synthetic", [f"data.workers={w}", *[f"{k}={v}" for k, v in (
                ("data.height", height), ("data.width", width), ("data.ids_per_batch", batch // K),
                ("data.images_per_id", K), ("train.device", args.device))]])
            name = f"loader workers={w}" + (" +parsing" if need_parsing else "")
            loader_jobs[name] = loader_job(DataManager(lcfg, need_parsing=need_parsing), args.loader_batches)

    # FLOPs of one step each (forward + backward), counted once (also a warm-up step)
    flops = {"ccreid TrainStep (baseline)": count_flops(lambda: ccreid_step(batches[0])),
             "bare torchvision loop": count_flops(lambda: bare_step(batches[0]))}
    require_equal_flops(flops)  # before any timing: a ratio of unequal work means nothing
    host_reads = {"ccreid TrainStep (baseline)": count_host_reads(lambda: ccreid_step(batches[0])),
                  "bare torchvision loop": count_host_reads(lambda: bare_step(batches[0]))}
    batch_bytes = {key: batches[0][key].element_size() * batches[0][key].nelement() for key in ("image", "parsing")}
    with torch.no_grad():  # forward alone, for the "training ~ 3x forward" rule of thumb
        forward_flops = count_flops(lambda: ccreid_model(batches[0]["image"].to(device)))
    load_before = os.getloadavg()
    for _ in range(warmup):
        for fn in (ccreid_step, bare_step):
            fn(batches[0])
    for fn in matmul_jobs.values():
        fn()
    sync(device)

    jobs = list(model_jobs) + list(matmul_jobs) + list(loader_jobs)
    wall: Dict[str, List[float]] = {j: [] for j in jobs}
    cpu: Dict[str, List[float]] = {j: [] for j in jobs}
    loader_runs: Dict[str, List[dict]] = {j: [] for j in loader_jobs}
    for r in range(repeats):
        for name in jobs[r % len(jobs):] + jobs[:r % len(jobs)]:
            if name in loader_jobs:
                out = loader_jobs[name]()
                loader_runs[name].append(out)
                print(f"round {r + 1}/{repeats} {name}: {out['steady_images'] / out['steady_s']:.1f} images/s "
                      f"(first batch {out['first_batch_s']:.2f} s)", flush=True)
                continue
            fn = model_jobs.get(name) or matmul_jobs[name]
            w, c = timed(fn, device)
            wall[name].append(w)
            cpu[name].append(c)
            print(f"round {r + 1}/{repeats} {name}: {w:.2f} s wall, {c:.2f} s CPU", flush=True)
    load_after = os.getloadavg()
    # other jobs on the machine: more runnable processes than half its cores, beyond this one
    busy = args.shared or max(load_before[0], load_after[0]) > 1 + 0.5 * os.cpu_count()

    model = {}
    for name in model_jobs:
        best, med = min(wall[name]), statistics.median(wall[name])
        model[name] = {"wall_s": wall[name], "cpu_s": cpu[name], "steps": steps,
                       "steps_per_s_best": steps / best, "steps_per_s_median": steps / med,
                       "images_per_s_best": steps * batch / best, "images_per_s_median": steps * batch / med,
                       "steps_per_cpu_s_best": steps / min(cpu[name]),
                       "flops_per_step": flops[name], "flop_per_s_best": flops[name] * steps / best,
                       "host_reads_per_step": host_reads[name]}
    c_name, b_name = list(model_jobs)
    ratios = {
        "best": model[c_name]["steps_per_s_best"] / model[b_name]["steps_per_s_best"],
        "median": model[c_name]["steps_per_s_median"] / model[b_name]["steps_per_s_median"],
        "paired_median": statistics.median(b / c for c, b in zip(wall[c_name], wall[b_name])),
        "cpu_best": model[c_name]["steps_per_cpu_s_best"] / model[b_name]["steps_per_cpu_s_best"],
    }
    n = args.matmul
    peak = {}
    for name in matmul_jobs:
        peak[name] = {"wall_s": wall[name], "flop_per_s_best": 2 * n ** 3 * mm_reps / min(wall[name]),
                      "flop_per_s_median": 2 * n ** 3 * mm_reps / statistics.median(wall[name])}
    peak_name = f"matmul {amp}" if amp in AMP_DTYPES else "matmul fp32"
    for row in model.values():
        row["fraction_of_matmul_peak"] = row["flop_per_s_best"] / peak[peak_name]["flop_per_s_best"]
        if cuda:
            row["fraction_of_tf32_peak"] = row["flop_per_s_best"] / peak["matmul tf32"]["flop_per_s_best"]
    loader = {}
    for name, runs in loader_runs.items():
        rates = [x["steady_images"] / x["steady_s"] for x in runs]
        w = int(name.split("=")[1].split()[0])
        loader[name] = {"workers": w, "runs": runs, "images_per_s_best": max(rates),
                        "images_per_s_median": statistics.median(rates),
                        "images_per_s_per_worker_best": max(rates) / max(w, 1),
                        "first_batch_s_median": statistics.median(x["first_batch_s"] for x in runs)}
    model_rate = model[c_name]["images_per_s_best"]
    for row in loader.values():
        row["workers_needed_for_model_rate"] = model_rate / row["images_per_s_per_worker_best"]

    command = (f"python benchmarks/bench_train_step.py --device {args.device} --backbone {args.backbone} "
               f"--last-stride {args.last_stride} "
               f"--batch {batch} --size {height}x{width} --steps {steps} --repeats {repeats} --warmup {warmup} "
               f"--threads {args.threads} --amp {args.amp} --matmul {n} --workers {args.workers} "
               f"--loader-batches {args.loader_batches}" + (" --cudnn-benchmark" if args.cudnn_benchmark else "")
               + (" --shared" if args.shared else ""))
    result = {"command": command, "device": str(device), "backbone": args.backbone,
              "last_stride": args.last_stride, "model_settings": model_settings(cfg), "batch": batch,
              "size": [height, width], "amp": amp, "channels_last": channels_last, "num_classes": num_classes,
              "cudnn_benchmark": args.cudnn_benchmark,
              "forward_flops_per_step": forward_flops, "batch_bytes": batch_bytes, "target_ratio": TARGET,
              "ratio_ccreid_over_bare_steps_per_s": ratios, "model": model,
              "matmul_peak": peak, "loader": loader,
              "machine": machine_info(device) | {"load_avg_before": load_before, "load_avg_after": load_after,
                                                 "shared": busy}}

    # judged on the least disturbed measurements: the best rounds, and on CPU the best CPU-time rounds
    # (insensitive to waiting for a core on a shared machine); on CUDA the paired median instead
    judged = ("best", "paired_median") if cuda else ("best", "cpu_best")
    meets = min(ratios[k] for k in judged) >= TARGET
    result["target_judged_on"] = list(judged)
    write_json(Path(args.out + ".json"), result)
    lines = [
        "# Training step: ccreid vs a bare torchvision loop", "",
        f"Command: `{command}`  ", f"Machine: {result['machine']}", "",
        f"Both loops: {model_settings(cfg)}, random init, as preset baseline trains it (set in the script, not "
        f"read from a config file), "
        f"{flops[c_name] / 1e9:.1f} GFLOP per step each (FlopCounterMode, checked equal before timing), at "
        f"{height}x{width}, batch {batch} ({batch // K} ids x {K}), "
        f"{num_classes} classes, amp {amp}, channels_last {channels_last}, device {device}, "
        f"{torch.get_num_threads()} torch thread(s). Both loops train on the same {len(batches)} pre-loaded "
        f"batches (host memory, copied to the device each step). {repeats} interleaved rounds (order rotated every "
        f"round) of {steps} steps per loop after {warmup} warm-up step(s); `best` is the fastest round, `median` "
        f"the median round, `paired` the median over rounds of the two loops' ratio in the same round, `CPU` "
        f"uses this process's CPU seconds.", "",
    ]
    if busy:
        lines += [f"The machine is shared with other jobs, whose load comes and goes (load average "
                  f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores, this process "
                  "counting 1): absolute rates are noisy, the ratios come from interleaved rounds.", ""]
    else:
        lines += [f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores.",
                  ""]
    lines += ["| loop | steps/s best | steps/s median | images/s best | GFLOP/step (fwd+bwd) | achieved FLOP/s | "
              "of matmul peak |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in model.items():
        lines.append(f"| {name} | {row['steps_per_s_best']:.4f} | {row['steps_per_s_median']:.4f} | "
                     f"{row['images_per_s_best']:.2f} | {row['flops_per_step'] / 1e9:.1f} | "
                     f"{fmt_rate(row['flop_per_s_best'])}FLOP/s | {row['fraction_of_matmul_peak'] * 100:.0f} % |")
    extra_reads = host_reads[c_name] - host_reads[b_name]
    lines += ["", f"Host reads of device values per step (profiler count of `_local_scalar_dense` + `nonzero`; each "
              f"is a device sync on CUDA): ccreid {host_reads[c_name]}, bare {host_reads[b_name]} (the bare loop's: "
              f"Adam's CPU step counters, no sync on CUDA"
              + (", and the fp16 GradScaler's inf check, a sync in both loops" if amp == "fp16" else "")
              + f"), so ccreid's step adds {extra_reads}. A baseline "
              f"batch also carries an int64 parsing map of {batch_bytes['parsing'] / 2**20:.1f} MiB (all -1: baseline "
              f"loads no maps) next to {batch_bytes['image'] / 2**20:.1f} MiB of images, built and collated by the "
              "loader (and pinned, on CUDA) every step."]
    lines += ["", f"**ccreid / bare (steps/s): {ratios['best']:.3f} best, {ratios['median']:.3f} median, "
              f"{ratios['paired_median']:.3f} paired, {ratios['cpu_best']:.3f} CPU** -> "
              f"{'meets' if meets else 'misses'} the >= {TARGET} target (judged on {' and '.join(judged)}).", "",
              f"Measured matmul peak ({n}x{n}x{n}, {mm_reps} per timing):", ""]
    lines += [f"- {name}: {fmt_rate(p['flop_per_s_best'])}FLOP/s best, {fmt_rate(p['flop_per_s_median'])}FLOP/s "
              "median" for name, p in peak.items()]
    lines += ["", f"Achieved FLOP/s = FlopCounterMode FLOPs of one step (forward + backward) x steps/s, against the "
              f"{peak_name} peak; one forward alone is {forward_flops / 1e9:.1f} GFLOP (a step = "
              f"{flops[c_name] / forward_flops:.2f}x forward)"
              + (" (cuDNN convolutions run in TF32 by default: see the tf32 peak)" if cuda else "")
              + ".", "",
              f"Data loading (`DataManager.train_loader`: decode + train augmentation + collate, batch {batch} at "
              f"{height}x{width}; steady state after the first batch, {args.loader_batches} batches per timing):", "",
              "| loader | images/s best | images/s median | per worker | first batch s | workers needed |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, row in loader.items():
        lines.append(f"| {name} | {row['images_per_s_best']:.1f} | {row['images_per_s_median']:.1f} | "
                     f"{row['images_per_s_per_worker_best']:.1f} | {row['first_batch_s_median']:.2f} | "
                     f"{row['workers_needed_for_model_rate']:.3f} |")
    verdicts = []
    for suffix, what in (("", "without parsing maps (baseline)"), (" +parsing", "with parsing maps (CRE / BSGA)")):
        rows = [(w, row) for name, row in loader.items() for w in [row["workers"]]
                if name == f"loader workers={w}{suffix}"]
        if not rows:
            continue
        most, row = max(rows, key=lambda x: x[0])
        bottleneck = row["images_per_s_best"] < model_rate
        verdicts.append(f"{what}: {most} worker(s) deliver {row['images_per_s_best']:.0f} images/s "
                        f"({row['images_per_s_per_worker_best']:.0f} per worker), "
                        + ("loading IS the bottleneck" if bottleneck else "loading is not the bottleneck")
                        + f" (about {math.ceil(row['workers_needed_for_model_rate'] * 1.25)} worker(s) would keep up "
                        f"with 25 % margin)")
    lines += ["", f"Model throughput (ccreid step, best): {model_rate:.2f} images/s. `workers needed` = model "
              "images/s / one worker's images/s (workers=0: the main process). `+parsing` also reads the parsing "
              "maps (what CRE / BSGA presets load). The synthetic images are small JPEGs (rendered at "
              f"{cfg.data.synthetic.height}x{cfg.data.synthetic.width}, resized to {height}x{width}); larger "
              "real-dataset JPEGs decode slower.", ""]
    lines += [f"- {v}." for v in verdicts]
    write_text(Path(args.out + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
