"""Streaming evaluation at scale: time and peak memory of 10,000 queries x 1,000,000 gallery.

    python benchmarks/bench_streaming.py [--queries 10000] [--gallery 1000000] [--dim 512]
                                         [--storage float32|float16] [--memory-mb 512]

The synthetic features of ``bench_metrics.make_split`` (20 images per identity, 2
outfits, 4 cameras, one query in ten from an identity absent from the gallery) are
generated chunk by chunk straight into one preallocated array, float32 by default (the
gallery alone is then 2 GB, held in memory during the whole run, as a user who loaded
an .npz would hold it). ``ccreid.evaluation.evaluate`` then streams it in gallery and
query chunks fitted to ``--memory-mb``; the Q x G matrix (40 GB at float32) never
exists. Peak RSS is the process's ``ru_maxrss`` (resource.getrusage), so it includes
the features, the labels and the Python/torch runtime; the RSS right before evaluation
is reported too. CPU threads: ``--threads`` (default 2).

After the measured runs (so not in the peak RSS), a check on the first
``--check-queries`` queries against the full gallery compares the streamed result with
another chunking (all those queries x a quarter of the gallery per chunk) and with the
per-query NumPy loop of ``bench_metrics`` on the exact distance matrix of those queries.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from bench_metrics import KEYS, distance_matrix, loop_evaluate, make_split
from ccreid.evaluation import evaluate
from ccreid.evaluation.ranking import chunk_sizes
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--storage", choices=["float32", "float16"], default="float32")
    parser.add_argument("--memory-mb", type=float, default=512)
    parser.add_argument("--rules", nargs="+", default=["general", "cc"])
    parser.add_argument("--check-queries", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    qf, gf, labels = make_split(args.queries, args.gallery, args.dim, args.seed)
    if args.storage == "float16":
        gf = gf.half()
    generate_s = time.perf_counter() - start
    rss_before = current_rss_mb()
    qc, gc = chunk_sizes(args.queries, args.gallery, args.dim, None, None, args.memory_mb)
    runs = []
    for rule in args.rules:
        start = time.perf_counter()
        res = evaluate(qf, gf, **labels, rule=rule, memory_mb=args.memory_mb)
        runs.append({"rule": rule, "seconds": round(time.perf_counter() - start, 1),
                     "peak_rss_mb_so_far": round(peak_rss_mb()), **{k: res[k] for k in KEYS}})
        print(runs[-1], flush=True)
    peak = peak_rss_mb()
    n = min(args.check_queries, args.queries)
    sub = {k: (v[:n] if k.startswith("q_") else v) for k, v in labels.items()}
    checks = []
    for rule in args.rules:
        streamed = evaluate(qf[:n], gf, **sub, rule=rule, memory_mb=args.memory_mb)
        other = evaluate(qf[:n], gf, **sub, rule=rule, chunk_size=n, gallery_chunk=args.gallery // 4 + 1)
        loop = loop_evaluate(distance_matrix(qf[:n], gf).numpy(), **sub, rule=rule)
        checks.append({"rule": rule, "queries": n, "other_chunking_identical": streamed == other,
                       "loop_max_abs_diff": max(abs(float(loop[k]) - float(streamed[k])) for k in KEYS)})
        print(checks[-1], flush=True)
    result = {
        "queries": args.queries, "gallery": args.gallery, "dim": args.dim, "storage": args.storage,
        "gallery_features_mb": round(gf.numel() * gf.element_size() / 2**20),
        "memory_mb_option": args.memory_mb, "chunk": {"queries": qc, "gallery": gc},
        "generate_s": round(generate_s, 1), "rss_before_eval_mb": round(rss_before), "peak_rss_mb": round(peak),
        "under_4gb": peak < 4096, "threads": args.threads, "runs": runs, "checks": checks,
        "machine": machine_info(torch.device("cpu")),
    }
    rows = ["| rule | time (s) | mAP | rank-1 | rank-5 | rank-10 | queries | without match |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {r['rule']} | {r['seconds']} | {r['mAP']:.2f} | {r['rank1']:.2f} | {r['rank5']:.2f} | "
             f"{r['rank10']:.2f} | {r['queries']} | {r['queries_without_match']} |" for r in runs]
    text = (f"# Streaming evaluation: {args.queries:,} x {args.gallery:,} x {args.dim}\n\n"
            f"{__doc__.split(chr(10) * 2, 2)[2].strip()}\n\n"
            f"- gallery features: {args.storage}, {result['gallery_features_mb']} MiB in memory\n"
            f"- chunks: {qc} queries x {gc} gallery items (`memory_mb={args.memory_mb:g}`)\n"
            f"- RSS before evaluation (features, labels, runtime): {result['rss_before_eval_mb']} MiB\n"
            f"- **peak RSS of the whole process: {result['peak_rss_mb']} MiB** "
            f"({'under' if result['under_4gb'] else 'OVER'} 4 GiB)\n"
            f"- threads: {args.threads}; feature generation took {result['generate_s']} s (not included below)\n\n"
            + "\n".join(rows) + "\n\nChecks on the first queries (full gallery):\n\n"
            + "\n".join(f"- {c['rule']}, {c['queries']} queries: same result with the other chunking: "
                        f"{'yes' if c['other_chunking_identical'] else 'NO'}; max |difference| to the NumPy loop: "
                        f"{c['loop_max_abs_diff']:.1e}" for c in checks) + "\n")
    out = Path(args.out)
    suffix = "" if args.storage == "float32" else f"_{args.storage}"
    write_json(out / f"streaming{suffix}.json", result)
    write_text(out / f"streaming{suffix}.md", text)


if __name__ == "__main__":
    main()
