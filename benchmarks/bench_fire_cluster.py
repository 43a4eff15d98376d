"""FIRe²'s per-epoch clustering cost: time and peak memory of FFM's clustering on synthetic features.

    python benchmarks/bench_fire_cluster.py [--sizes 1000x20 100x200 2000x10] [--dim 2048] [--threads 1]

``ccreid.methods.fire.cluster_identities`` (per identity: k-reciprocal Jaccard distance, k1=20,
k2=6, then DBSCAN eps 0.4, min_samples 1) on ``identities x images`` features: each identity
wears 3 outfits (a random identity vector plus a random outfit vector, plus noise per image),
in shuffled dataset order. Each size runs in a fresh process; the features are written in
place (no temporaries), so the growth of the peak RSS over the RSS before clustering is the
clustering's own memory. This is the work done once per clustered epoch after the feature
extraction (which costs one pass of the test transform over the training set, not timed);
scikit-learn is imported before the clock starts. CPU time is the process's (less sensitive
than wall time to other jobs on the machine). One torch thread by default: the work per
identity is many tiny tensor operations, and on a loaded 2-core machine two OpenMP threads
made a 20-image identity's Jaccard distance 60x slower (0.46 s against 7.5 ms).
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

import torch

from ccreid.methods.fire import cluster_identities
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text

OUTFITS = 3


def rss_mib() -> float:
    """Current resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_features(num_pids: int, per_pid: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[num_pids * per_pid, dim]`` float32 features and their pids, shuffled, filled identity by identity."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.empty(num_pids * per_pid, dim)
    for p in range(num_pids):
        ident, outfit = torch.randn(dim, generator=gen), torch.randn(OUTFITS, dim, generator=gen)
        worn = torch.randint(0, OUTFITS, (per_pid,), generator=gen)
        block = feats[p * per_pid:(p + 1) * per_pid]
        torch.randn(block.shape, generator=gen, out=block)
        block.mul_(0.8).add_(ident).add_(outfit[worn])
    perm = torch.randperm(len(feats), generator=gen)
    pids = torch.arange(num_pids).repeat_interleave(per_pid)[perm]
    return feats[perm], pids


def run(num_pids: int, per_pid: int, dim: int, threads: int) -> dict:
    """One clustering in this (child) process."""
    torch.set_num_threads(threads)
    feats, pids = make_features(num_pids, per_pid, dim)
    import sklearn.cluster  # noqa: F401  (once per training, not per epoch)

    before = rss_mib()
    load = os.getloadavg()
    start, cpu = time.perf_counter(), time.process_time()
    clusters = cluster_identities(feats, pids)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"identities": num_pids, "images_per_identity": per_pid, "images": len(feats), "dim": dim,
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "ms_per_identity": round(1000 * seconds / num_pids, 2),
            "rss_before_mib": round(before), "peak_rss_mib": round(peak), "clustering_mib": round(peak - before),
            "features_mib": round(feats.numel() * 4 / 2**20), "classes": len(clusters.centres),
            "load_avg_before_after": [load, os.getloadavg()]}


def in_child(*args) -> dict:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run, *args).result()


def size(text: str) -> tuple[int, int]:
    ids, per = text.lower().split("x")
    return int(ids), int(per)


def table(runs: list) -> str:
    rows = ["| identities x images | images | time (s) | CPU time (s) | ms / identity | clustering memory (MiB) "
            "| peak RSS (MiB) | fine classes | load avg (1 min) before / after |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        (b, _, _), (a, _, _) = r["load_avg_before_after"]
        rows.append(f"| {r['identities']:,} x {r['images_per_identity']} | {r['images']:,} | {r['seconds']} "
                    f"| {r['cpu_seconds']} | {r['ms_per_identity']} | {r['clustering_mib']:,} | {r['peak_rss_mib']:,} "
                    f"| {r['classes']:,} | {b:.1f} / {a:.1f} |")
    return "\n".join(rows)


def write_report(out: Path, command: str, dim: int, threads: int, runs: list) -> None:
    """``fire_cluster.json`` and ``fire_cluster.md`` in ``out``."""
    machine = machine_info(torch.device("cpu"))
    write_json(out / "fire_cluster.json", {"command": command, "threads": threads, "runs": runs, "machine": machine})
    doc = __doc__.split("\n\n", 2)[2].strip()
    dense = 2 * max(r["images"] for r in runs) ** 2 * 4 / 2**30
    write_text(out / "fire_cluster.md", f"# FIRe² clustering cost per clustered epoch\n\n{doc}\n\n"
               f"Command: `{command}`; {dim}-d features, {threads} thread(s).\n\n{table(runs)}\n\n"
               f"Clustering the whole set at once would hold two N x N float32 matrices (V and the Jaccard "
               f"distance, as the official code's `compute_jaccard_distance`): {dense:.1f} GiB at "
               f"N = {max(r['images'] for r in runs):,} (computed, not measured). {machine['cpu_count']} CPU "
               f"cores, shared with other jobs: wall times are inflated (load averages above, all three in "
               f"fire_cluster.json); CPU times are the process's own.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=size, nargs="+", default=[(1000, 20), (100, 200), (2000, 10)],
                        help="identities x images per identity")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    runs = [in_child(ids, per, args.dim, args.threads) for ids, per in args.sizes]
    command = shlex.join(["python", "benchmarks/bench_fire_cluster.py", *sys.argv[1:]])
    write_report(Path(args.out), command, args.dim, args.threads, runs)
    print(table(runs))


if __name__ == "__main__":
    main()
