"""Feature-extraction throughput: the default engine (auto), PyTorch (plain / prepared fp32 / bf16) and
ONNX Runtime, against a bare ONNX Runtime session, and the pipelines.

    python benchmarks/bench_extract.py [--backbone resnet50] [--last-stride 1] [--size 256x128] [--images 64]
        [--batch 32] [--threads 2] [--device cpu]
        [--accuracy-weights outputs/comparison/ours/seed0/model.safetensors]

The network: ``--backbone`` (width 1), ``--last-stride``, average pooling + BNNeck, random weights, set
here (benchmarks/equal_work.py), not read from configs/synthetic.yaml (which only supplies the images).
Every engine runs that one network on the same batches: the torch rows' FLOPs per batch are counted
(FlopCounterMode) and must be equal, or no ratio is reported; ONNX Runtime's cannot be counted by torch,
its rows run the export of the same eval model (their features match the plain model's: last column).
On the same images, in one process, repeats interleaved in rotating order (best and median reported):
- engines, no flip, L2-normalised, on decoded and normalised batches: the default ``ccreid.load(w)``
  network (``--backend auto``: onnxruntime on the CPU when installed, its export cached), the plain eval
  model (what the extraction paths ran before), ``prepare(model)`` (``--backend torch``: BatchNorm folded,
  channels_last), the same with ``precision="bf16"``, and a bare onnxruntime session on the ``ccreid
  export onnx`` file (the reference; ``--backend onnxruntime`` is the default's engine on the CPU), and a
  second identical session (A/A: how far one engine measures from itself in this run);
- pipelines with the flip average: ``embed`` of the prepared torch network on the batches (raw forward),
  ``Embedder.embed(paths)`` (``ccreid.load(w).embed``: decode + transform + forward + flip + L2),
  ``extract_features`` over ``DataManager.loader`` (``ccreid test`` / ``extract``), default and torch.
The default's first call (export into a temporary cache + session) and a later load (cache reused) are
timed once each.
Ratios are images/s over the onnxruntime session's, from the best repeats (least disturbed by other
load; CPU-second ratios beside them). Features are compared with the plain model's (max abs difference
of L2-normalised features). ``--accuracy-weights``: rank-1 / mAP of a trained checkpoint on its
dataset's test protocols with each engine (torch fp32, torch bf16, onnxruntime).
The speed model is randomly initialised (speed does not depend on the weights); images are synthetic PNGs.
``--device cuda`` (benchmarks/gpu_check.sh): the torch engines and pipelines run on the GPU, the
reference is an onnxruntime session on its CUDA provider when the installed onnxruntime has one (no
reference otherwise), the CPU-only onnxruntime backend is left out; every batch starts on the CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ccreid.commands.tester import load_checkpoint_config, trained_model
from ccreid.config import load_config, to_yaml
from ccreid.data.manager import DataManager
from ccreid.data.synthetic import generate
from ccreid.deploy import Embedder, export_onnx
from ccreid.inference.backends import embed, prepare
from ccreid.inference.evaluator import evaluate_splits, extract_features
from ccreid.inference.onnx_cache import CACHE_ENV
from ccreid.methods import build_model_from_config
from ccreid.runs.checkpoint import save_weights
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text
from equal_work import count_flops, model_config, model_settings, require_equal_flops

REFERENCE = "onnxruntime session (reference)"
TWIN = "onnxruntime session, a second one (A/A)"
PLAIN = "PyTorch plain eval model (before)"
DEFAULT = "ccreid.load(w): --backend auto (default)"
TORCH = "prepare(): torch fp32"
TARGET = 1.0  # the default engine vs the bare session


def timed(fn, device: torch.device) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process; not loader worker processes)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu


def onnxruntime_session(path: Path, device: torch.device, threads: int):
    """A bare onnxruntime session on ``device`` (CPU, or the CUDA provider), or None when there is none."""
    import onnxruntime as ort

    provider = "CPUExecutionProvider" if device.type == "cpu" else "CUDAExecutionProvider"
    if provider not in ort.get_available_providers():
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle ORT threads would steal CPU
    return ort.InferenceSession(str(path), options, providers=[provider])


def default_embedder(weights: Path, device: torch.device) -> tuple[Embedder, float]:
    """``ccreid.load(weights)`` with its defaults, and the seconds to its first features (one image)."""
    start = time.perf_counter()
    embedder = Embedder.from_weights(weights, device=str(device))
    embedder.forward_batch(torch.zeros(1, 3, embedder.height, embedder.width))
    return embedder, time.perf_counter() - start


def judge(vs_ort: dict, vs_ort_cpu: dict, seconds: dict, engine: str) -> str:
    """The default engine against the bare session, judged on the best wall and the best CPU-second
    repeats; the paired median (the two in the same round) beside them."""
    wall, cpu = vs_ort[DEFAULT], vs_ort_cpu[DEFAULT]
    paired = statistics.median(r / d for r, d in zip(seconds[REFERENCE], seconds[DEFAULT]))
    meets = "meets" if min(wall, cpu) >= TARGET else "misses"
    twin = (f" An identical second session (the same engine twice, A/A) measured {vs_ort[TWIN]:.3f}x (wall), "
            f"{vs_ort_cpu[TWIN]:.3f}x (CPU): the spread of this measurement." if TWIN in vs_ort else "")
    return (f"The default (`--backend auto`, here {engine}) runs at {wall:.3f}x the bare ONNX Runtime session's "
            f"images/s (best wall), {cpu:.3f}x (best CPU seconds), {paired:.3f}x (paired median wall): {meets} the "
            f">= {TARGET} target (judged on the best wall and best CPU ratios).{twin}")


def accuracy(weights: str, threads: int) -> dict:
    """Rank-1 / mAP per test protocol of ``weights`` with each engine."""
    cfg, loaded = load_checkpoint_config(weights, None, [])
    model = trained_model(cfg, loaded, weights).eval()
    manager = DataManager(cfg, need_parsing=False)
    splits = manager.eval_splits("test")
    out = {}
    for name, (backend, precision) in {"torch fp32": ("torch", "fp32"), "torch bf16": ("torch", "bf16"),
                                       "onnxruntime": ("onnxruntime", "fp32")}.items():
        net = prepare(model, "cpu", backend, precision)
        results = evaluate_splits(net, splits, manager.loader, torch.device("cpu"), cfg.test)
        out[name] = {p: {"rank1": r["rank1"], "mAP": r["mAP"]} for p, r in results.items()}
    return {"weights": weights, "preset": cfg.model.preset, "backbone": cfg.model.backbone,
            "size": f"{cfg.data.height}x{cfg.data.width}", "threads": threads, "results": out}


def accuracy_text(acc: dict) -> str:
    protocols = list(next(iter(acc["results"].values())))
    head = "| engine | " + " | ".join(f"{p} rank-1 | {p} mAP" for p in protocols) + " |\n"
    rule = "|---|" + "---:|---:|" * len(protocols) + "\n"
    rows = "\n".join(f"| {name} | " + " | ".join(f"{r[p]['rank1']:.2f} | {r[p]['mAP']:.2f}" for p in protocols)
                     + " |" for name, r in acc["results"].items())
    return (f"\n## Accuracy by engine\n\n`{acc['weights']}` ({acc['preset']}, {acc['backbone']}, {acc['size']}) on "
            f"its dataset's test protocols, flip-averaged, {acc['threads']} threads:\n\n{head}{rule}{rows}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--last-stride", type=int, default=1, choices=(1, 2), help="stride of layer4 (1: the paper's)")
    parser.add_argument("--size", default="256x128", help="input HxW")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the extract_features path")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--accuracy-weights", default=None, help="a trained checkpoint: rank-1 / mAP per engine")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (see the module docstring)")
    parser.add_argument("--out", default="benchmarks/results/extract_speed")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and not torch.cuda.is_available()):
        parser.error(f"--device {args.device}: expected cpu, or cuda with a CUDA GPU visible")
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp())
    os.environ[CACHE_ENV] = str(tmp / "cache")  # the default engine's export: a fresh cache, not the user's
    root = generate(tmp / "synthetic", ids=max(6, args.images // 6 + 6), outfits=2, images_per_outfit=3,
                    height=height, width=width)
    cfg = model_config(load_config("synthetic", [  # the synthetic images; the model spelled out
        f"data.root={root}", f"data.height={height}", f"data.width={width}", f"data.workers={args.workers}",
        "train.device=cpu", f"test.batch_size={args.batch}", "test.flip=true", "data.ids_per_batch=2",
        "data.images_per_id=2",
    ]), args.backbone, args.last_stride)
    weights = tmp / "model.safetensors"
    save_weights(weights, build_model_from_config(cfg, 10).eval(), to_yaml(cfg), 10)
    embedder, first_call_s = default_embedder(weights, device)
    latency = {"first call (export into the cache, session, 1 image)": first_call_s,
               "later load (cache reused, session, 1 image)": default_embedder(weights, device)[1]}
    torch_embedder = Embedder.from_weights(weights, device=str(device), backend="torch")
    manager = DataManager(cfg, need_parsing=False)
    split = next(iter(manager.eval_splits("test").values()))
    records = list({r.path: r for r in manager.dataset.train + split.query + split.gallery}.values())[:args.images]
    paths = [r.path for r in records]
    batches = embedder.preprocess(paths).split(args.batch)
    plain = torch_embedder.model
    nets = {DEFAULT: embedder.net, TORCH: torch_embedder.net,
            "prepare(): torch bf16": prepare(plain, device, precision="bf16")}

    @torch.no_grad()
    def run(net, flip: bool = False) -> list:
        return [F.normalize(embed(net, b, flip), dim=1) for b in batches]

    @torch.no_grad()
    def run_plain() -> list:  # the model call of the extraction paths before prepare()
        return [F.normalize(plain(b.to(device)), dim=1) for b in batches]

    torch_rows = {PLAIN: lambda: plain(batches[0].to(device))} | {
        name: (lambda net=net: net(batches[0])) for name, net in nets.items() if net.backend == "torch"}
    with torch.no_grad():
        for fn in torch_rows.values():
            fn()  # a first batch: bf16's one-time layer check (runtime/precision.py) is not the per-batch work
        flops_per_batch = require_equal_flops({name: count_flops(fn) for name, fn in torch_rows.items()}, "batch")
    onnx_path = export_onnx(weights, tmp / "model.onnx")[0]
    session = onnxruntime_session(onnx_path, device, args.threads)
    runs = {PLAIN: run_plain} | {name: (lambda net=net: run(net)) for name, net in nets.items()}
    if session is not None:  # the reference, and an identical second session: how far equal engines measure apart
        twin = onnxruntime_session(onnx_path, device, args.threads)
        runs[REFERENCE] = lambda: [torch.from_numpy(session.run(None, {"images": b.numpy()})[0]) for b in batches]
        runs[TWIN] = lambda: [torch.from_numpy(twin.run(None, {"images": b.numpy()})[0]) for b in batches]
    reference = REFERENCE if session is not None else PLAIN
    engines = list(runs)
    loader = manager.loader(records)
    workers = f"workers={args.workers}"
    runs |= {"raw forward + flip (torch fp32)": lambda: run(torch_embedder.net, flip=True),
             "Embedder.embed(paths) (default)": lambda: embedder.embed(paths),
             "Embedder.embed(paths) (torch fp32)": lambda: torch_embedder.embed(paths),
             "Embedder.preprocess(paths) only": lambda: embedder.preprocess(paths),
             f"extract_features(loader, {workers}) (default)": lambda: extract_features(embedder.net, loader, device),
             f"extract_features(loader, {workers}) (torch fp32)":
                 lambda: extract_features(torch_embedder.net, loader, device)}
    for fn in runs.values():  # warm-up (allocators, oneDNN primitives, loader workers, ORT graph)
        fn()
    load_start = os.getloadavg()
    seconds = {name: [] for name in runs}
    cpu_seconds = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotate: no fixed order bias
            wall, cpu = timed(runs[name], device)
            seconds[name].append(wall)
            cpu_seconds[name].append(cpu)
    best = {name: min(v) for name, v in seconds.items()}
    median = {name: statistics.median(v) for name, v in seconds.items()}
    best_cpu = {name: min(v) for name, v in cpu_seconds.items()}
    rate = {name: len(paths) / s for name, s in best.items()}
    vs_ort = {name: best[reference] / best[name] for name in engines}
    vs_ort_cpu = {name: best_cpu[reference] / best_cpu[name] for name in engines}
    plain_features = torch.cat(run_plain()).cpu()
    max_diff = {name: float((torch.cat(runs[name]()).cpu() - plain_features).abs().max()) for name in engines}
    raw = "raw forward + flip (torch fp32)"
    pipelines = [name for name in names[len(engines):] if name not in (raw, "Embedder.preprocess(paths) only")]
    overhead = {name: best[name] / best[raw] - 1 for name in pipelines}
    preprocess_share = best_cpu["Embedder.preprocess(paths) only"] / best_cpu[raw]
    command = (f"python benchmarks/bench_extract.py --backbone {args.backbone} --last-stride {args.last_stride} "
               f"--size {args.size} --images "
               f"{args.images} --batch {args.batch} --threads {args.threads} --workers {args.workers} "
               f"--repeats {args.repeats} --device {args.device}" + (f" --accuracy-weights {args.accuracy_weights}"
                                              if args.accuracy_weights else ""))
    verdict = judge(vs_ort, vs_ort_cpu, seconds, embedder.net.backend) if reference == REFERENCE else None
    result = {"command": command, "model_settings": model_settings(cfg), "flops_per_batch_torch": flops_per_batch,
              "default_engine": embedder.net.backend, "default_latency_s": latency, "default_verdict": verdict,
              "images": len(paths), "seconds": seconds, "best_s": best, "median_s": median,
              "cpu_seconds": cpu_seconds, "best_cpu_s": best_cpu, "images_per_s": rate,
              "speed_vs_onnxruntime_wall": vs_ort, "speed_vs_onnxruntime_cpu": vs_ort_cpu,
              "max_abs_diff_vs_plain_fp32": max_diff, "pipeline_overhead_wall": overhead,
              "preprocess_cpu_vs_forward_cpu": preprocess_share,
              "reference": reference, "machine": machine_info(device) | {"load_avg_start": load_start,
                                                               "load_avg": os.getloadavg(),
                                                               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}}
    if args.accuracy_weights:
        result["accuracy"] = accuracy(args.accuracy_weights, args.threads)
        result["machine"]["load_avg_end"] = os.getloadavg()
    write_json(args.out + ".json", result)
    short = "ORT" if reference == REFERENCE else "plain"  # no onnxruntime session on this device
    engine_rows = "\n".join(
        f"| {name} | {best[name]:.2f} | {median[name]:.2f} | {best_cpu[name]:.2f} | {rate[name]:.1f} | "
        f"{vs_ort[name]:.2f}x | {vs_ort_cpu[name]:.2f}x | {max_diff[name]:.1e} |" for name in engines)
    pipeline_rows = "\n".join(
        f"| {name} | {best[name]:.2f} | {median[name]:.2f} | {best_cpu[name]:.2f} | {rate[name]:.1f} | "
        + (f"{overhead[name] * 100:+.1f} % |" if name in overhead else " |") for name in names[len(engines):])
    load = max(load_start[0], result["machine"]["load_avg"][0])
    busy = (f"**The machine was busy (load average {load:.1f} on {os.cpu_count()} cores): the absolute rates "
            "are low and noisy; rerun on a quiet machine for figures to quote.**\n\n" if load > 1.5 else "")
    latency_text = "; ".join(f"{k}: {v:.1f} s" for k, v in latency.items())
    text = (f"# Extraction throughput\n\nCommand: `{command}`  \nMachine: {result['machine']}\n\n{busy}"
            f"{len(paths)} synthetic {height}x{width} PNG images; the network: {model_settings(cfg)}, random "
            f"weights (set in the script, not read from a config file), {flops_per_batch / 1e9:.1f} GFLOP per batch "
            f"in every torch engine (FlopCounterMode, checked equal); batch {args.batch}, {args.threads} torch/ORT threads, "
            f"{args.repeats} interleaved repeats (rotating order); rates and ratios from the best repeat (least "
            f"disturbed by other load, see load_avg).\n\n"
            + (f"**{verdict}**\n\n" if verdict else "")
            + f"The default's start-up ({embedder.net.backend}): {latency_text}.\n\n"
            "## Engines (no flip, L2-normalised features)\n\n"
            f"| engine | best wall s | median wall s | best CPU s | images/s | vs {short} (wall) | vs {short} (CPU s) | "
            "max abs diff vs plain fp32 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n" + engine_rows + "\n\n"
            "## Pipelines (flip average: two forwards per image)\n\n"
            "| path | best wall s | median wall s | best CPU s | images/s | overhead vs raw forward |\n"
            "|---|---:|---:|---:|---:|---:|\n" + pipeline_rows + "\n\n"
            f"Overhead = pipeline / raw forward (prepared torch fp32, flip) - 1. Decode + test transform alone costs "
            f"{preprocess_share * 100:.1f} % of the raw forward's CPU time. CPU seconds count this process's threads "
            f"only (the loader paths decode in worker processes).\n"
            + (accuracy_text(result["accuracy"]) if args.accuracy_weights else ""))
    write_text(args.out + ".md", text)
    shutil.rmtree(tmp)
    print(text)


if __name__ == "__main__":
    main()
