"""Metric speed: ccreid's vectorised CMC/mAP against a per-query NumPy loop.

    python benchmarks/bench_metrics.py [--sizes 2000x20000 10000x100000] [--loop-queries 2000]

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
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ccreid.engine.runtime import machine_info, write_json, write_text
from ccreid.evaluation import evaluate, evaluate_distmat, pairwise_distance

KEYS = ("rank1", "rank5", "rank10", "mAP", "queries", "queries_without_match")


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


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def distance_matrix(qf: torch.Tensor, gf: torch.Tensor, rows: int = 500, cols: int = 100_000) -> torch.Tensor:
    """``pairwise_distance`` computed block by block (bounded float64 temporaries)."""
    out = torch.empty(len(qf), len(gf))
    for g0 in range(0, len(gf), cols):
        for q0 in range(0, len(qf), rows):
            out[q0:q0 + rows, g0:g0 + cols] = pairwise_distance(qf[q0:q0 + rows], gf[g0:g0 + cols])
    return out


def run_size(num_q: int, num_g: int, dim: int, loop_queries: int, rules, seed: int) -> list:
    qf, gf, labels = make_split(num_q, num_g, dim, seed)
    distmat, dist_s = _timed(lambda: distance_matrix(qf, gf))
    n = min(num_q, loop_queries)
    sub = {k: (v[:n] if k.startswith("q_") else v) for k, v in labels.items()}
    runs = []
    for rule in rules:
        ours, ours_s = _timed(lambda: evaluate_distmat(distmat, **labels, rule=rule))
        ours_e2e, ours_e2e_s = _timed(lambda: evaluate(qf, gf, **labels, rule=rule))
        loop, loop_s = _timed(lambda: loop_evaluate(distmat[:n].numpy(), **sub, rule=rule))
        ours_sub = evaluate_distmat(distmat[:n], **sub, rule=rule) if n < num_q else ours
        loop_full_s = loop_s * num_q / n
        runs.append({
            "queries": num_q, "gallery": num_g, "dim": dim, "rule": rule,
            "loop_queries_timed": n, "loop_time_estimated": n < num_q,
            "loop_s": round(loop_full_s, 2), "ours_metric_s": round(ours_s, 3),
            "speedup_metric": round(loop_full_s / ours_s, 1),
            "distance_matrix_s": round(dist_s, 2), "ours_end_to_end_s": round(ours_e2e_s, 2),
            "identical": all(abs(float(loop[k]) - float(ours_sub[k])) <= 1e-9 for k in KEYS),
            "max_abs_diff": max(abs(float(loop[k]) - float(ours_sub[k])) for k in KEYS),
            "end_to_end_identical": all(ours_e2e[k] == ours[k] for k in KEYS),
            "ours": {k: ours[k] for k in KEYS},
        })
        print(runs[-1], flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["2000x20000", "10000x100000"])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--loop-queries", type=int, default=2000)
    parser.add_argument("--rules", nargs="+", default=["general", "cc"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for size in args.sizes:
        num_q, num_g = (int(v) for v in size.split("x"))
        runs += run_size(num_q, num_g, args.dim, args.loop_queries, args.rules, args.seed)
    header = ("| queries x gallery | rule | loop (s) | ccreid metric (s) | speed-up | numbers identical "
              "| distance matrix (s) | ccreid from features (s) | mAP | rank-1 |")
    rows = [header, "|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in runs:
        loop = f"{r['loop_s']}" + (f" (estimated from {r['loop_queries_timed']} queries)"
                                   if r["loop_time_estimated"] else "")
        same = f"{'yes' if r['identical'] else 'NO'} (max diff {r['max_abs_diff']:.1e})"
        rows.append(f"| {r['queries']} x {r['gallery']} | {r['rule']} | {loop} | {r['ours_metric_s']} | "
                    f"{r['speedup_metric']}x | {same} | "
                    f"{r['distance_matrix_s']} | {r['ours_end_to_end_s']} | {r['ours']['mAP']:.2f} | "
                    f"{r['ours']['rank1']:.2f} |")
    text = (f"# Metric speed: vectorised vs per-query loop\n\n{__doc__.split(chr(10) * 2, 2)[2].strip()}\n\n"
            + "\n".join(rows) + f"\n\nThreads: {args.threads}; dim {args.dim}; seed {args.seed}. "
            "'loop' and 'ccreid metric' both start from the same precomputed float32 distance matrix; "
            "'ccreid from features' is `evaluate(qf, gf, ...)` (streaming, distances included).\n")
    out = Path(args.out)
    write_json(out / "metrics_speed.json", {"runs": runs, "threads": args.threads,
                                            "machine": machine_info(torch.device("cpu"))})
    write_text(out / "metrics_speed.md", text)


if __name__ == "__main__":
    main()
