"""Re-ranking speed: dense against sparse k-reciprocal re-ranking, and sparse alone at ~50k images.

    python benchmarks/bench_rerank.py [--both 1000x9000] [--sparse 2000x50000] [--dim 512] [--noise 2.2]
                                      [--threads 2]

``ccreid.evaluation.rerank_features`` (k1=20, k2=6, lambda=0.3, cosine) with ``impl="dense"``
(the full (Q+G)^2 matrices) and ``impl="sparse"`` (exact FAISS k-NN lists, only the needed
pair distances) on the same features; the sparse result is compared with the dense one
(largest difference of the re-ranked distances, rank-1 and mAP). Features are the synthetic
ones of ``bench_metrics.make_split`` (``--noise`` 2.2: the metric benchmarks' data). Each run is a
fresh process (its peak RSS is the run's), timed from features to the re-ranked ``[Q, G]``
matrix; torch and FAISS use ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_metrics import make_split
from ccreid.evaluation import evaluate_distmat, pairwise_distance, rerank_features
from ccreid.evaluation.search import import_faiss
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text

KEYS = ("rank1", "mAP")


def run(num_q: int, num_g: int, dim: int, noise: float, impl: str, threads: int, keep: bool) -> dict:
    """One re-ranking in this (child) process: seconds, peak RSS, metrics (and the matrix if ``keep``)."""
    torch.set_num_threads(threads)
    import_faiss().omp_set_num_threads(threads)
    qf, gf, labels = make_split(num_q, num_g, dim, 0, noise=noise)
    labels = {k: labels[k] for k in ("q_pids", "g_pids", "q_camids", "g_camids")}
    load = os.getloadavg()
    start = time.perf_counter()
    dist = rerank_features(qf, gf, "cosine", impl=impl)
    seconds = time.perf_counter() - start
    plain = evaluate_distmat(pairwise_distance(qf, gf), **labels)
    reranked = evaluate_distmat(dist, **labels)
    out = {"queries": num_q, "gallery": num_g, "dim": dim, "impl": impl, "seconds": round(seconds, 1),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "load_avg_before_after": [load, os.getloadavg()],
           **{f"{k}_plain": round(plain[k], 3) for k in KEYS}, **{f"{k}_reranked": round(reranked[k], 3) for k in KEYS}}
    return out | ({"dist": dist.numpy()} if keep else {})


def in_child(*args) -> dict:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run, *args).result()


def size(text: str) -> tuple:
    q, g = text.lower().split("x")
    return int(q), int(g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--both", type=size, default=(1000, 9000), help="QxG re-ranked dense and sparse")
    parser.add_argument("--sparse", type=size, default=(2000, 50000), help="QxG re-ranked sparse only")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=2.2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if import_faiss() is None:
        raise SystemExit("bench_rerank needs faiss-cpu (pip install faiss-cpu)")
    runs = []
    dense = in_child(*args.both, args.dim, args.noise, "dense", args.threads, True)
    sparse = in_child(*args.both, args.dim, args.noise, "sparse", args.threads, True)
    difference = float(np.abs(dense.pop("dist") - sparse.pop("dist")).max())
    runs += [dense, sparse | {"max_abs_difference_to_dense": difference}]
    print(runs, flush=True)
    runs.append(in_child(*args.sparse, args.dim, args.noise, "sparse", args.threads, False))
    print(runs[-1], flush=True)
    table = ["| queries x gallery | impl | time (s) | peak RSS (MiB) | rank-1 plain / re-ranked "
             "| mAP plain / re-ranked | max abs diff to dense | load avg (1 min) before / after |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r['queries']:,} x {r['gallery']:,} | {r['impl']} | {r['seconds']} | {r['peak_rss_mib']:,} | "
              f"{r['rank1_plain']} / {r['rank1_reranked']} | {r['mAP_plain']} / {r['mAP_reranked']} | "
              f"{r.get('max_abs_difference_to_dense', '–')} | {r['load_avg_before_after'][0][0]:.1f} / "
              f"{r['load_avg_before_after'][1][0]:.1f} |" for r in runs]
    items = sum(args.sparse)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    ratio = dense["seconds"] / max(sparse["seconds"], 0.1)
    text = (f"# Re-ranking: dense vs sparse\n\n{__doc__.split(chr(10) * 2, 2)[2].strip()}\n\n"
            f"Command: `{command}`; {args.dim}-d features, noise {args.noise}, {args.threads} threads, faiss "
            f"{import_faiss().__version__}.\n\n" + "\n".join(table) + "\n\n"
            f"At {args.both[0]:,} x {args.both[1]:,}, sparse took {1 / ratio:.2f}x the dense time. Dense was not "
            f"run at {args.sparse[0]:,} x {args.sparse[1]:,}: one ({items:,})^2 float32 matrix is "
            f"{items ** 2 * 4 / 2**30:.1f} GiB and it holds several (computed, not measured). {os.cpu_count()} CPU "
            "cores, shared with other jobs: see the load averages (all three in rerank_speed.json).\n")
    out = Path(args.out)
    machine = machine_info(torch.device("cpu")) | {"load_avg": os.getloadavg()}
    write_json(out / "rerank_speed.json", {"command": command, "runs": runs, "machine": machine})
    write_text(out / "rerank_speed.md", text)


if __name__ == "__main__":
    main()
