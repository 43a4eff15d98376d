"""Metric speed: ccreid's vectorised CMC/mAP against a per-query NumPy loop and fast-reid.

    python benchmarks/bench_metrics.py [--sizes 2000x20000 10000x100000] [--loop-queries 2000]
                                       [--fastreid-python-queries 500] [--threads 2]

The loop is written here in the style of Simple-CCReID's ``evaluate`` (for each query:
argsort its distance row, find good and junk gallery items with argwhere / setdiff1d /
intersect1d, drop junk with in1d, accumulate AP and CMC), with a stable argsort so that
ties follow the same rule as ccreid. Both sides get the same precomputed float32
distance matrix (``ccreid.evaluation.pairwise_distance``), so the times compare the
metric only; ccreid's end-to-end time from features (``evaluate``, distances included)
is reported too. Where the loop would take too long, it runs on the first
``--loop-queries`` queries and its full time is extrapolated linearly (marked
``estimated``); the numbers are then compared on that subset. Features are synthetic:
identity centres plus outfit and noise terms (see ``make_features``). One or two CPU
threads (``--threads``).

fast-reid (PyPI ``fastreid``; a benchmark-only dependency, in no extra: its metadata pins
torch 1.13) gets the same matrices, general rule only (its ``evaluate_rank`` has no clothes
labels): ``fastreid.evaluation.rank.evaluate_rank``, compiled (its Cython ``rank_cylib``,
which it uses when built) on every query, and its Python path (``use_cython=False``) on the
first ``--fastreid-python-queries`` queries, extrapolated like the loop. It runs on one thread
(a full-matrix ``np.argsort``, then a loop over queries), so ccreid's metric is also timed on
one thread. Install and build (numpy and Cython are all its ``rank.py`` needs; the benchmark
loads that file without running ``fastreid/evaluation/__init__.py``, which imports
``collections.Mapping``, gone since Python 3.10, and scikit-learn):

    pip install fastreid --no-deps cython
    cd $(python -c "import fastreid, os; print(os.path.dirname(fastreid.__file__))")/evaluation/rank_cylib
    python setup.py build_ext --inplace && rm -rf build

Ties: ccreid and the loop rank equal distances by gallery index (stable); fast-reid sorts with
NumPy's default, unstable ``np.argsort``, so a match tied with a non-match may fall either way.
Both its paths average the CMC in float32, the compiled one the APs too (the Python one in
float64), hence the tolerance of the comparison (``FASTREID_TOLERANCE``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shlex
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch

from ccreid.evaluation import evaluate, evaluate_distmat, pairwise_distance
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text

KEYS = ("rank1", "rank5", "rank10", "mAP", "queries", "queries_without_match")
FASTREID_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP", "queries")
#: percentage points: fast-reid averages the CMC (and, compiled, the APs) in float32
FASTREID_TOLERANCE = 1e-3


def make_features(pids: np.ndarray, clothes: np.ndarray, dim: int, seed: int, noise: float = 2.2,
                  outfit: float = 0.5, out: torch.Tensor | None = None, chunk: int = 8192) -> torch.Tensor:
    """Rows ``c[pid] + outfit * c'[clothes] + noise * e``: unit identity directions ``c``
    and outfit directions ``c'`` (both drawn from a per-id / per-outfit seed) plus
    Gaussian noise of norm ~``noise``. Written chunk by chunk into ``out`` (float32)."""
    out = torch.empty(len(pids), dim) if out is None else out
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(pids), chunk):
        p = torch.from_numpy(pids[start:start + chunk])
        c = torch.from_numpy(clothes[start:start + chunk])
        rows = _directions(p, dim, 1) + outfit * _directions(c, dim, 2)
        rows += noise / dim ** 0.5 * torch.randn(len(p), dim, generator=gen)
        out[start:start + chunk] = rows
    return out


def _directions(ids: torch.Tensor, dim: int, salt: int) -> torch.Tensor:
    """A fixed pseudo-random unit vector per id (a hash of id and coordinate, no table)."""
    prime = 2_147_483_647
    x = (ids[:, None].to(torch.int64) * 1_000_003 + torch.arange(dim) * 7919 + salt * 104_729) % prime
    for shift, mult in ((13, 48271), (11, 69621), (15, 48271)):  # xorshift-multiply rounds
        x = ((x ^ (x >> shift)) * mult) % prime
    v = (x.to(torch.float32) / 2_147_483_647.0 - 0.5) * 12 ** 0.5
    return v / dim ** 0.5


def make_split(num_q: int, num_g: int, dim: int, seed: int, images_per_id: int = 20, outfits: int = 2,
               noise: float = 2.2):
    """Query/gallery labels and features: queries from gallery identities (one in ten absent)."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, num_g // images_per_id)
    g_pids = rng.integers(0, n_ids, num_g)
    q_pids = rng.integers(0, n_ids, num_q)
    q_pids[rng.random(num_q) < 0.1] += n_ids  # identities absent from the gallery
    labels = dict(q_pids=q_pids, g_pids=g_pids, q_camids=rng.integers(0, 4, num_q),
                  g_camids=rng.integers(0, 4, num_g), q_clothes=q_pids * outfits + rng.integers(0, outfits, num_q),
                  g_clothes=g_pids * outfits + rng.integers(0, outfits, num_g))
    qf = make_features(q_pids, labels["q_clothes"], dim, seed + 1, noise)
    gf = make_features(g_pids, labels["g_clothes"], dim, seed + 2, noise)
    return qf, gf, labels


def _ap_cmc(order: np.ndarray, good: np.ndarray, junk: np.ndarray):
    kept = order[np.isin(order, junk, invert=True)]
    hit_rows = np.flatnonzero(np.isin(kept, good))
    cmc = np.zeros(len(kept))
    cmc[hit_rows[0]:] = 1.0
    ap = np.mean((np.arange(len(hit_rows)) + 1) / (hit_rows + 1))
    return ap, cmc


def loop_evaluate(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                  rule: str = "general") -> dict:
    """Per-query evaluation in the style of Simple-CCReID (noninterp AP, CMC to gallery size)."""
    num_q, num_g = distmat.shape
    cmc_sum, ap_sum, valid, missing = np.zeros(num_g), 0.0, 0, 0
    for i in range(num_q):
        order = np.argsort(distmat[i], kind="stable")
        same_id = np.argwhere(g_pids == q_pids[i]).ravel()
        same_cam = np.argwhere(g_camids == q_camids[i]).ravel()
        good = np.setdiff1d(same_id, same_cam, assume_unique=True)
        junk = np.intersect1d(same_id, same_cam)
        if rule != "general":
            same_cl = np.argwhere(g_clothes == q_clothes[i]).ravel()
            removed = np.intersect1d(same_id, same_cl) if rule == "cc" else np.setdiff1d(same_id, same_cl)
            good = np.setdiff1d(good, removed, assume_unique=True)
            junk = np.union1d(junk, removed)
        if good.size == 0:
            missing += 1
            continue
        ap, cmc = _ap_cmc(order, good, junk)
        ap_sum += ap
        cmc_sum[:len(cmc)] += cmc
        cmc_sum[len(cmc):] += 1.0
        valid += 1
    cmc = cmc_sum / max(valid, 1) * 100
    return {"rank1": cmc[0], "rank5": cmc[min(4, num_g - 1)], "rank10": cmc[min(9, num_g - 1)],
            "mAP": ap_sum / max(valid, 1) * 100, "queries": valid, "queries_without_match": missing}


def load_fastreid() -> types.ModuleType:
    """fast-reid's ``fastreid/evaluation/rank.py`` (and its ``rank_cylib`` where built),
    without running ``fastreid/evaluation/__init__.py`` (see the module docstring)."""
    spec = importlib.util.find_spec("fastreid")
    if spec is None:
        raise SystemExit("fast-reid is not installed: pip install --no-deps fastreid cython, then build its "
                         "rank_cylib (see the docstring of benchmarks/bench_metrics.py)")
    package = types.ModuleType("fastreid.evaluation")
    package.__path__ = [str(Path(spec.origin).parent / "evaluation")]
    sys.modules["fastreid.evaluation"] = package
    with warnings.catch_warnings():  # its warning when rank_cylib is not built: the results say which path ran
        warnings.simplefilter("ignore")
        return importlib.import_module("fastreid.evaluation.rank")


def fastreid_evaluate(rank: types.ModuleType, distmat: np.ndarray, labels: dict, compiled: bool) -> dict:
    """fast-reid's ``evaluate_rank``, summarised as its ``ReidEvaluator`` does (percent)."""
    cmc, aps, inps = rank.evaluate_rank(distmat, labels["q_pids"], labels["g_pids"], labels["q_camids"],
                                        labels["g_camids"], max_rank=50, use_cython=compiled)
    return {"rank1": float(cmc[0]) * 100, "rank5": float(cmc[4]) * 100, "rank10": float(cmc[9]) * 100,
            "mAP": float(np.mean(aps)) * 100, "mINP": float(np.mean(inps)) * 100, "queries": len(aps)}


def _first(labels: dict, n: int) -> dict:
    """Labels of the first ``n`` queries (and the whole gallery)."""
    return {k: (v[:n] if k.startswith("q_") else v) for k, v in labels.items()}


def compare_fastreid(rank: types.ModuleType, distmat: torch.Tensor, labels: dict, python_queries: int,
                     ours: dict, ours_s: float, ours_1t_s: float) -> list:
    """fast-reid's compiled path (every query) and Python path (the first ``python_queries``,
    time extrapolated) against ccreid's general-rule metric (``ours``, timed on the default
    threads and on one) on the same matrix."""
    num_q = len(distmat)
    paths = ([("compiled", num_q)] if rank.IS_CYTHON_AVAI else []) + [("python", min(num_q, python_queries))]
    rows = []
    for path, n in paths:
        theirs, their_s = _timed(lambda: fastreid_evaluate(rank, distmat[:n].numpy(), _first(labels, n),
                                                          path == "compiled"))
        ref = ours if n == num_q else evaluate_distmat(distmat[:n], **_first(labels, n))
        full_s = their_s * num_q / n
        diff = max(abs(theirs[k] - float(ref[k])) for k in FASTREID_KEYS)
        rows.append({"path": path, "queries_timed": n, "time_estimated": n < num_q, "fastreid_s": round(full_s, 2),
                     "ratio_fastreid_over_ours": round(full_s / ours_s, 1),
                     "ratio_fastreid_over_ours_1thread": round(full_s / ours_1t_s, 1),
                     "equal": diff <= FASTREID_TOLERANCE, "max_abs_diff": diff, "fastreid": theirs,
                     "ours": {k: ref[k] for k in FASTREID_KEYS}})
        print(rows[-1], flush=True)
    return rows


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _timed_one_thread(fn):
    """``_timed`` with torch on one thread, as the loop and fast-reid run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _timed(fn)
    finally:
        torch.set_num_threads(threads)


def distance_matrix(qf: torch.Tensor, gf: torch.Tensor, rows: int = 500, cols: int = 100_000) -> torch.Tensor:
    """``pairwise_distance`` computed block by block (bounded float64 temporaries)."""
    out = torch.empty(len(qf), len(gf))
    for g0 in range(0, len(gf), cols):
        for q0 in range(0, len(qf), rows):
            out[q0:q0 + rows, g0:g0 + cols] = pairwise_distance(qf[q0:q0 + rows], gf[g0:g0 + cols])
    return out


def run_size(num_q: int, num_g: int, dim: int, loop_queries: int, rules, seed: int, rank: types.ModuleType,
             fastreid_queries: int) -> list:
    qf, gf, labels = make_split(num_q, num_g, dim, seed)
    distmat, dist_s = _timed(lambda: distance_matrix(qf, gf))
    n = min(num_q, loop_queries)
    sub = _first(labels, n)
    warm = _first(labels, 50)  # a process's first calls pay one-off costs (thread pools, allocator): not timed
    evaluate_distmat(distmat[:50], **warm)
    fastreid_evaluate(rank, distmat[:50].numpy(), warm, rank.IS_CYTHON_AVAI)
    runs = []
    for rule in rules:
        load_before = os.getloadavg()
        ours, ours_s = _timed(lambda: evaluate_distmat(distmat, **labels, rule=rule))
        _, ours_1t_s = _timed_one_thread(lambda: evaluate_distmat(distmat, **labels, rule=rule))
        ours_e2e, ours_e2e_s = _timed(lambda: evaluate(qf, gf, **labels, rule=rule))
        loop, loop_s = _timed(lambda: loop_evaluate(distmat[:n].numpy(), **sub, rule=rule))
        ours_sub = evaluate_distmat(distmat[:n], **sub, rule=rule) if n < num_q else ours
        loop_full_s = loop_s * num_q / n
        runs.append({
            "queries": num_q, "gallery": num_g, "dim": dim, "rule": rule,
            "loop_queries_timed": n, "loop_time_estimated": n < num_q,
            "loop_s": round(loop_full_s, 2), "ours_metric_s": round(ours_s, 3),
            "speedup_metric": round(loop_full_s / ours_s, 1), "ours_metric_1thread_s": round(ours_1t_s, 3),
            "speedup_metric_1thread": round(loop_full_s / ours_1t_s, 1),
            "distance_matrix_s": round(dist_s, 2), "ours_end_to_end_s": round(ours_e2e_s, 2),
            "identical": all(abs(float(loop[k]) - float(ours_sub[k])) <= 1e-9 for k in KEYS),
            "max_abs_diff": max(abs(float(loop[k]) - float(ours_sub[k])) for k in KEYS),
            "end_to_end_identical": all(ours_e2e[k] == ours[k] for k in KEYS),
            "ours": {k: ours[k] for k in KEYS},
        })
        print(runs[-1], flush=True)
        if rule == "general":
            runs[-1]["fastreid"] = compare_fastreid(rank, distmat, labels, fastreid_queries, ours, ours_s, ours_1t_s)
        runs[-1]["load_avg_before_after"] = [load_before, os.getloadavg()]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["2000x20000", "10000x100000"])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--loop-queries", type=int, default=2000)
    parser.add_argument("--fastreid-python-queries", type=int, default=500,
                        help="queries timed on fast-reid's Python path (its full time is extrapolated)")
    parser.add_argument("--rules", nargs="+", default=["general", "cc"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    rank = load_fastreid()
    torch.set_num_threads(args.threads)
    runs = []
    for size in args.sizes:
        num_q, num_g = (int(v) for v in size.split("x"))
        runs += run_size(num_q, num_g, args.dim, args.loop_queries, args.rules, args.seed, rank,
                         args.fastreid_python_queries)
    header = (f"| queries x gallery | rule | loop (s) | ccreid metric, {args.threads} threads (s) | speed-up "
              "| ccreid metric, 1 thread (s) | speed-up | numbers identical "
              "| distance matrix (s) | ccreid from features (s) | mAP | rank-1 |")
    rows = [header, "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in runs:
        loop = f"{r['loop_s']}" + (f" (estimated from {r['loop_queries_timed']} queries)"
                                   if r["loop_time_estimated"] else "")
        same = f"{'yes' if r['identical'] else 'NO'} (max diff {r['max_abs_diff']:.1e})"
        rows.append(f"| {r['queries']} x {r['gallery']} | {r['rule']} | {loop} | {r['ours_metric_s']} | "
                    f"{r['speedup_metric']}x | {r['ours_metric_1thread_s']} | {r['speedup_metric_1thread']}x | {same} | "
                    f"{r['distance_matrix_s']} | {r['ours_end_to_end_s']} | {r['ours']['mAP']:.2f} | "
                    f"{r['ours']['rank1']:.2f} |")
    built = "built: both paths timed" if rank.IS_CYTHON_AVAI else "NOT built: Python path only"
    rows += ["", f"fast-reid `evaluate_rank` (general rule; its compiled `rank_cylib` {built}) on the same "
             "matrices; ratio = fast-reid time / ccreid metric time; numbers (rank-1/5/10, mAP, mINP, valid "
             f"queries) equal within {FASTREID_TOLERANCE} points:", "",
             f"| queries x gallery | fast-reid path | fast-reid (s) | ccreid metric, {args.threads} threads (s) "
             "| ratio | ccreid metric, 1 thread (s) | ratio | numbers equal | mAP fast-reid / ccreid "
             "| rank-1 fast-reid / ccreid |", "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in runs:
        for f in r.get("fastreid", []):
            took = f"{f['fastreid_s']}" + (f" (estimated from {f['queries_timed']} queries)"
                                           if f["time_estimated"] else "")
            same = f"{'yes' if f['equal'] else 'NO'} (max diff {f['max_abs_diff']:.1e})"
            rows.append(f"| {r['queries']} x {r['gallery']} | {f['path']} | {took} | {r['ours_metric_s']} | "
                        f"{f['ratio_fastreid_over_ours']}x | {r['ours_metric_1thread_s']} | "
                        f"{f['ratio_fastreid_over_ours_1thread']}x | {same} | {f['fastreid']['mAP']:.4f} / "
                        f"{f['ours']['mAP']:.4f} | {f['fastreid']['rank1']:.4f} / {f['ours']['rank1']:.4f} |")
    command = shlex.join(["python", *sys.argv])
    machine = machine_info(torch.device("cpu"))
    loads = ", ".join(f"{r['queries']}x{r['gallery']} {r['rule']}: {b[0]:.1f} -> {a[0]:.1f}"
                      for r in runs for b, a in [r["load_avg_before_after"]])
    text = (f"# Metric speed: vectorised vs per-query loop and fast-reid\n\n"
            f"{__doc__.split(chr(10) * 2, 2)[2].strip()}\n\nCommand: `{command}`  \nMachine: {machine}  \n"
            f"Load average (1 min, before -> after each run, on {os.cpu_count()} cores shared with other jobs): "
            f"{loads}\n\n"
            + "\n".join(rows) + f"\n\nThreads: {args.threads}; dim {args.dim}; seed {args.seed}. "
            "'loop', 'ccreid metric' and fast-reid all start from the same precomputed float32 distance matrix; "
            "'ccreid from features' is `evaluate(qf, gf, ...)` (streaming, distances included).\n")
    out = Path(args.out)
    write_json(out / "metrics_speed.json", {"command": command, "runs": runs, "threads": args.threads,
                                            "fastreid_compiled": rank.IS_CYTHON_AVAI,
                                            "fastreid_tolerance": FASTREID_TOLERANCE, "machine": machine})
    write_text(out / "metrics_speed.md", text)


if __name__ == "__main__":
    main()
