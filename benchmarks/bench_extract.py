"""Feature-extraction throughput: the extraction pipelines vs the raw model forward, and ONNX Runtime vs PyTorch.

    python benchmarks/bench_extract.py [--backbone resnet50] [--size 256x128] [--images 128] [--batch 32]

On the same images, in one process, repeats interleaved in rotating order (best and median reported):
- raw forward: the model (+ flip average) on an already decoded, normalised batch tensor;
- ``Embedder.embed(paths)`` (``ccreid.load(w).embed``): decode + test transform + forward + flip + L2;
- ``extract_features`` over ``DataManager.loader`` (what ``ccreid test`` runs; ``--workers`` loader processes).
Pipeline overhead = pipeline time / raw time - 1 (target <= 10 %).
ONNX: the exported graph (L2-normalised output, no flip) in onnxruntime vs the same PyTorch computation,
both on CPU with ``--threads`` threads, and their max abs difference.
The model is randomly initialised (speed does not depend on the weights); images are synthetic PNGs.
"""

from __future__ import annotations

import argparse
import shutil
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ccreid.config import load_config, to_yaml
from ccreid.data.manager import DataManager
from ccreid.data.synthetic import generate
from ccreid.deploy import Embedder, export_onnx
from ccreid.engine.checkpoint import save_weights
from ccreid.engine.evaluator import extract_features
from ccreid.engine.runtime import machine_info, write_json, write_text
from ccreid.methods import build_model_from_config


def timed(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process; not loader worker processes)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def pct(table: dict, name: str) -> str:
    return f"{table[name] * 100:+.1f} %" if name in table else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", default="256x128", help="input HxW")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the extract_features path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/extract_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp())
    root = generate(tmp / "synthetic", ids=max(6, args.images // 6 + 6), outfits=2, images_per_outfit=3,
                    height=height, width=width)
    cfg = load_config("synthetic", [
        f"data.root={root}", f"data.height={height}", f"data.width={width}", f"data.workers={args.workers}",
        f"model.backbone={args.backbone}", "model.width_mult=1.0", "model.pretrained=none", "train.device=cpu",
        f"test.batch_size={args.batch}", "test.flip=true", "data.ids_per_batch=2", "data.images_per_id=2",
    ])
    model = build_model_from_config(cfg, 10).eval()
    save_weights(tmp / "model.safetensors", model, to_yaml(cfg), 10)
    embedder = Embedder.from_weights(tmp / "model.safetensors", device="cpu")
    manager = DataManager(cfg, need_parsing=False)
    split = next(iter(manager.eval_splits("test").values()))
    records = list({r.path: r for r in manager.dataset.train + split.query + split.gallery}.values())[:args.images]
    paths = [r.path for r in records]
    batches = embedder.preprocess(paths).split(args.batch)
    net = embedder.model

    @torch.no_grad()
    def raw(flip: bool = True, normalize: bool = False) -> list:
        out = []
        for b in batches:
            f = net(b)
            f = (f + net(torch.flip(b, dims=[3]))) / 2 if flip else f
            out.append(F.normalize(f, dim=1) if normalize else f)
        return out

    loader = manager.loader(records)
    runs = {"raw forward": raw, "Embedder.embed(paths)": lambda: embedder.embed(paths),
            "Embedder.preprocess(paths) only": lambda: embedder.preprocess(paths),
            f"extract_features(loader, workers={args.workers})": lambda: extract_features(net, loader, "cpu", True)}
    onnx_path = export_onnx(tmp / "model.safetensors", tmp / "model.onnx")[0]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle ORT threads would steal CPU
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    runs["PyTorch (no flip, L2)"] = lambda: raw(flip=False, normalize=True)
    runs["onnxruntime (no flip, L2)"] = lambda: [session.run(None, {"images": b.numpy()}) for b in batches]
    for fn in runs.values():  # warm-up (allocators, loader workers, ORT graph)
        fn()
    seconds = {name: [] for name in runs}
    cpu_seconds = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotate: no fixed order bias
            wall, cpu = timed(runs[name])
            seconds[name].append(wall)
            cpu_seconds[name].append(cpu)
    best = {name: min(v) for name, v in seconds.items()}
    median = {name: statistics.median(v) for name, v in seconds.items()}
    best_cpu = {name: min(v) for name, v in cpu_seconds.items()}
    rate = {name: len(paths) / s for name, s in best.items()}
    onnx_out = torch.cat([torch.from_numpy(session.run(None, {"images": b.numpy()})[0]) for b in batches])
    max_diff = float((onnx_out - torch.cat(raw(flip=False, normalize=True))).abs().max())
    pipelines = ["Embedder.embed(paths)", f"extract_features(loader, workers={args.workers})"]
    overhead = {name: best[name] / best["raw forward"] - 1 for name in pipelines}
    cpu_overhead = {name: best_cpu[name] / best_cpu["raw forward"] - 1 for name in pipelines[:1]}
    preprocess_share = best_cpu["Embedder.preprocess(paths) only"] / best_cpu["raw forward"]
    command = (f"python benchmarks/bench_extract.py --backbone {args.backbone} --size {args.size} --images "
               f"{args.images} --batch {args.batch} --threads {args.threads} --workers {args.workers} "
               f"--repeats {args.repeats}")
    result = {"command": command, "images": len(paths), "seconds": seconds, "best_s": best, "median_s": median,
              "cpu_seconds": cpu_seconds, "best_cpu_s": best_cpu, "images_per_s": rate,
              "pipeline_overhead_wall": overhead, "pipeline_overhead_cpu": cpu_overhead,
              "preprocess_cpu_vs_forward_cpu": preprocess_share, "onnx_max_abs_diff": max_diff,
              "onnx_vs_torch_speedup": best["PyTorch (no flip, L2)"] / best["onnxruntime (no flip, L2)"],
              "machine": machine_info(torch.device("cpu")) | {"load_avg": os.getloadavg()}}
    write_json(args.out + ".json", result)
    rows = "\n".join(f"| {name} | {best[name]:.2f} | {median[name]:.2f} | {best_cpu[name]:.2f} | {rate[name]:.1f} | "
                     f"{pct(overhead, name)} | {pct(cpu_overhead, name)} |" for name in runs)
    text = (f"# Extraction throughput\n\nCommand: `{command}`  \nMachine: {result['machine']}\n\n"
            f"{len(paths)} synthetic {height}x{width} PNG images, {args.backbone} (random weights), batch "
            f"{args.batch}, {args.threads} torch/ORT threads, {args.repeats} interleaved repeats (rotating order); "
            f"rates and overheads from the best repeat (least disturbed by other load, see load_avg).\n\n"
            "| path | best wall s | median wall s | best CPU s | images/s | wall overhead | CPU overhead |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n" + rows + "\n\n"
            f"Overhead = pipeline / raw forward - 1. Decode + test transform alone costs "
            f"{preprocess_share * 100:.1f} % of the raw forward's CPU time. CPU seconds count this process's threads "
            f"only (the loader path decodes in worker processes, so its CPU column is not comparable).\n\n"
            f"Raw forward, Embedder.embed and extract_features include the flip average (two forwards per "
            f"image); the PyTorch / onnxruntime rows do not. "
            f"ONNX Runtime / PyTorch speed ratio: {result['onnx_vs_torch_speedup']:.2f}x; max abs difference of "
            f"their L2-normalised features: {max_diff:.2e}.\n")
    write_text(args.out + ".md", text)
    shutil.rmtree(tmp)
    print(text)


if __name__ == "__main__":
    main()
