"""Search at 1,000,000 gallery features: queries/s and recall@10 of IVF / IVF-PQ vs exact.

    python benchmarks/bench_search.py [--gallery 1000000] [--queries 1000] [--nlist 1000]
                                      [--nprobe 8 32 128] [--noise 2.2 1.0] [--threads 2]

Gallery and queries are the synthetic features of ``bench_metrics.make_split`` (512-d),
at two noise levels: 2.2 (the metric benchmarks' data: weak neighbour structure, close
to IVF's worst case of isotropic data) and 1.0 (tight identity clusters, like a
well-trained model's features).
``ccreid.evaluation.build_index`` builds each index (FAISS ``exact`` = IndexFlatIP, then
``ivf`` = IndexIVFFlat and ``ivfpq`` = IndexIVFPQ with 64 sub-quantisers of 8 bits, both
with ``--nlist`` cells); recall@10 is the fraction of the exact top-10 that an index
returns in its own top-10, averaged over queries; queries/s is one ``search`` call over
all queries with k=10. The torch fallback (used without faiss) is timed on the same
queries. Build time includes training (k-means) and adding.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np
import torch

from bench_metrics import make_split
from ccreid.evaluation import build_index
from ccreid.evaluation.search import TorchIndex, import_faiss
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def timed_search(index, queries, k: int):
    start = time.perf_counter()
    scores, idx = index.search(queries, k)
    return idx, len(queries) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--nlist", type=int, default=1000)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--noise", type=float, nargs="+", default=[2.2, 1.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    faiss = import_faiss()
    if faiss is None:
        raise SystemExit("bench_search needs faiss-cpu (pip install faiss-cpu)")
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    k = 10
    rows = []
    for noise in args.noise:
        qf, gf, _ = make_split(args.queries, args.gallery, args.dim, args.seed, noise=noise)

        def record(name: str, index, build_s: float, truth=None, **extra) -> np.ndarray:
            idx, qps = timed_search(index, qf, k)
            rows.append({"noise": noise, "index": name, "build_s": round(build_s, 1), "queries_per_s": round(qps, 1),
                         "recall_at_10": round(recall_at(idx, truth), 4) if truth is not None else 1.0, **extra})
            print(rows[-1], flush=True)
            return idx

        start = time.perf_counter()
        exact = build_index(gf, kind="exact")
        truth = record("faiss exact (IndexFlatIP)", exact, time.perf_counter() - start)
        del exact
        start = time.perf_counter()
        fallback = TorchIndex(gf)
        record("torch exact (fallback)", fallback, time.perf_counter() - start, truth)
        del fallback
        for kind in ("ivf", "ivfpq"):
            gc.collect()
            start = time.perf_counter()
            index = build_index(gf, kind=kind, nlist=args.nlist, nprobe=args.nprobe[0])
            build_s = time.perf_counter() - start
            for nprobe in args.nprobe:
                index.index.nprobe = nprobe
                record(f"faiss {kind}", index, build_s, truth, nlist=args.nlist, nprobe=nprobe)
            del index
        del qf, gf
        gc.collect()
    table = ["| noise | index | nlist | nprobe | build (s) | queries/s | recall@10 vs exact |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['noise']} | {r['index']} | {r.get('nlist', '–')} | {r.get('nprobe', '–')} | {r['build_s']} | "
              f"{r['queries_per_s']} | {r['recall_at_10']:.4f} |" for r in rows]
    text = (f"# Search: {args.queries:,} queries against {args.gallery:,} x {args.dim} gallery\n\n"
            f"{__doc__.split(chr(10) * 2, 2)[2].strip()}\n\nThreads: {args.threads} (torch and FAISS OpenMP); "
            f"faiss {faiss.__version__}.\n\n" + "\n".join(table) + "\n")
    out = Path(args.out)
    write_json(out / "search.json", {"gallery": args.gallery, "queries": args.queries, "dim": args.dim, "k": k,
                                     "threads": args.threads, "faiss": faiss.__version__, "runs": rows,
                                     "machine": machine_info(torch.device("cpu"))})
    write_text(out / "search.md", text)


if __name__ == "__main__":
    main()
