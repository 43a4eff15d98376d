"""CMC and mAP for the general, same-clothes and clothes-changing rules (METHOD.md).

One streaming code path serves every size; nothing of size Q x G is ever held. The
valid matches of each query ("positives", few) are found from the labels alone and
their distances computed directly; the gallery is then streamed in chunks, and for
each positive we count the kept gallery items of other identities that rank before it
(smaller distance, or equal distance and smaller gallery index). With the positives'
order among themselves, that gives every positive's exact rank, hence CMC and both AP
definitions. Only query and gallery chunks are looped over, never single queries.

Distances are the float32 values of :mod:`ccreid.evaluation.distance`. For cosine, a
chunk is computed with a float32 product whose error is bounded (``fast_cosine_bound``);
only entries within that bound of a positive's distance are recomputed exactly, so the
result is the same as ranking the exact matrix, whatever the chunking or device.

Rules (same id = same person id):

- ``general``: remove same id & same camera;
- ``cc``: also remove same id & same clothes;
- ``sc``: also remove same id & other clothes (positives: same id, same clothes).

AP modes:

- ``noninterp`` (default; Simple-CCReID, torchreid, fast-reid, hence the CC-ReID
  papers): the mean over a query's true matches of the precision at each match's rank,
  ``mean_n n / r_n`` for the n-th match at rank ``r_n``;
- ``market1501``: the trapezoidal AP of the official Market-1501 script, the mean over
  matches of the average of the precision just before the match
  (``(n-1)/(r_n-1)``, or 1 at rank 1) and at it (``n/r_n``). It is never higher than
  ``noninterp`` for the same ranking, typically 0.5-1 points lower.

mINP (Ye et al., as fast-reid computes it): the mean over queries of ``|matches| / r_last``,
the rank of the hardest match.

Queries without a valid match are left out of every average and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch

from ccreid.choices import AP_MODES
from ccreid.errors import CCReIDError
from ccreid.evaluation.distance import (as_tensor, check_metric, chunk_distance, fast_cosine, fast_cosine_bound,
                                       paired_distance, prepare)

RULES = ("general", "sc", "cc")
#: the same-identity gallery images each rule removes (messages)
REMOVED_BY = {"general": "those from the query's camera",
              "cc": "those from the query's camera or in the query's clothes",
              "sc": "those from the query's camera or in other clothes"}
#: Bytes per distance of a chunk counted against ``memory_mb``: the float32 chunk (float64
#: product for euclidean), its mask, and index/key tensors for entries ranking before a
#: positive (all of them only when features barely separate identities).
BYTES_PER_DISTANCE = 64
#: Bytes per feature value of a prepared gallery chunk (float64 copy plus its source).
BYTES_PER_FEATURE = 24

_LOW32 = 2**32


@dataclass
class PairLabels:
    q_pids: torch.Tensor
    g_pids: torch.Tensor
    q_camids: torch.Tensor
    g_camids: torch.Tensor
    q_clothes: Optional[torch.Tensor]
    g_clothes: Optional[torch.Tensor]


def pair_labels(num_q: int, num_g: int, device: torch.device, rule: str, **arrays) -> PairLabels:
    if rule not in RULES:
        raise CCReIDError(f"option protocol/rule: unknown {rule!r} (use {', '.join(RULES)})")
    out = {}
    for key, value in arrays.items():
        if value is None:
            if rule != "general" and key.endswith("clothes"):
                raise CCReIDError(f"{key} is required by the {rule!r} rule (or use rule 'general')")
            out[key] = None
            continue
        t = as_tensor(value, device).reshape(-1)
        expected = num_q if key.startswith("q_") else num_g
        if len(t) != expected:
            side = "queries" if key.startswith("q_") else "gallery items"
            raise CCReIDError(f"{key} has {len(t)} entries but there are {expected} {side}")
        if t.is_floating_point() or t.is_complex():
            raise CCReIDError(f"{key} must hold integers, got {t.dtype}")
        out[key] = t.long()
    return PairLabels(**out)


def no_match_reason(rule: str, q_pids, g_pids) -> str:
    """Why no query has a valid match (``queries == 0``), in words, for the error a caller raises."""
    shared = np.intersect1d(np.asarray(q_pids).reshape(-1), np.asarray(g_pids).reshape(-1))
    if not len(shared):
        return f"none of the {len(q_pids)} queries has a valid match: no gallery image shares a query's person id"
    return (f"none of the {len(q_pids)} queries has a valid match: the {rule} rule removes every gallery image of "
            f"the queries' identities ({REMOVED_BY[rule]})")


def same_identity_pairs(q_pids: torch.Tensor, g_pids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """All (query, gallery) index pairs sharing a person id, by query then gallery index."""
    g_sorted, g_order = torch.sort(g_pids, stable=True)
    q_pids = q_pids.contiguous()
    lo = torch.searchsorted(g_sorted, q_pids, side="left")
    counts = torch.searchsorted(g_sorted, q_pids, side="right") - lo
    pair_q = torch.repeat_interleave(torch.arange(len(q_pids), device=q_pids.device), counts)
    within = torch.arange(len(pair_q), device=q_pids.device) - (torch.cumsum(counts, 0) - counts)[pair_q]
    return pair_q, g_order[lo[pair_q] + within]


def valid_match(rule: str, same_camera, same_clothes):
    """The match rules (METHOD.md), one definition for every caller: whether a gallery image of
    the query's identity counts as a true match (otherwise it is removed from the ranking).
    Never from the query's camera; ``cc`` needs other clothes, ``sc`` the same clothes.
    Works elementwise on bool tensors and on Python bools."""
    valid = same_camera == 0
    if rule == "cc":
        return valid & (same_clothes == 0)
    if rule == "sc":
        return valid & (same_clothes != 0)
    return valid


def is_match(labels: PairLabels, pair_q: torch.Tensor, pair_g: torch.Tensor, rule: str) -> torch.Tensor:
    """Which same-id pairs are valid matches; the others are removed from the ranking."""
    same_camera = labels.q_camids[pair_q] == labels.g_camids[pair_g]
    same_clothes = labels.q_clothes[pair_q] == labels.g_clothes[pair_g] if rule != "general" else None
    return valid_match(rule, same_camera, same_clothes)


def _ordered_bits(d: torch.Tensor) -> torch.Tensor:
    """Int64 in [0, 2^32) with the order of the float32 values ``d`` (-0.0 == +0.0)."""
    bits = (d + 0.0).view(torch.int32).to(torch.int64)
    return torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF)) + 2**31


class _PositiveRanks:
    """Ranks of every query's valid matches, accumulated over streamed distance chunks.

    Positives are sorted by (query, distance, gallery index); ``hist[k]`` counts the kept
    other-identity gallery items whose first beaten positive is ``k``. Same-identity
    items never enter the counts: positives are ranked among themselves from their own
    distances, and the removed ones do not count at all.
    """

    def __init__(self, q: torch.Tensor, g: torch.Tensor, d: torch.Tensor, labels: PairLabels) -> None:
        order = torch.argsort(g, stable=True)
        order = order[torch.argsort(d[order], stable=True)]
        order = order[torch.argsort(q[order], stable=True)]
        self.q, self.g, self.d = q[order], g[order], d[order]
        self.q_pids, self.g_pids = labels.q_pids, labels.g_pids
        queries = torch.arange(len(self.q_pids), device=q.device)
        self.start = torch.searchsorted(self.q, queries, side="left")
        self.end = torch.searchsorted(self.q, queries, side="right")
        self.key = self.q * _LOW32 + _ordered_bits(self.d)
        new_run = torch.ones_like(self.key, dtype=torch.bool)
        new_run[1:] = self.key[1:] != self.key[:-1]
        self.run = torch.cumsum(new_run, 0) - 1
        self.run_key = self.run * _LOW32 + self.g
        has = self.end > self.start
        self.limit = torch.full((len(queries),), float("-inf"), device=q.device)
        self.limit[has] = self.d[self.end[has] - 1]
        self.hist = torch.zeros(len(self.q) + 1, dtype=torch.int64, device=q.device)

    def add(self, dist: torch.Tensor, q0: int, g0: int, eps: float,
            exact: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        """Count a float32 chunk (rows ``q0..``, columns ``g0..``) within ``eps`` of the
        exact distances; entries whose count could depend on that error (and exact ties)
        are settled with ``exact(rows, cols)`` (chunk-local indices)."""
        q1 = q0 + len(dist)
        rows, cols = torch.nonzero(dist <= (self.limit[q0:q1] + eps)[:, None], as_tuple=True)
        other = self.q_pids[rows + q0] != self.g_pids[cols + g0]
        rows, cols = rows[other], cols[other]
        if len(rows) == 0:
            return
        lo, hi = int(self.start[q0]), int(self.end[q1 - 1])  # this chunk's positives
        keys, run_keys = self.key[lo:hi], self.run_key[lo:hi]
        q = rows + q0
        approx = dist[rows, cols]
        first = torch.searchsorted(keys, q * _LOW32 + _ordered_bits(approx - eps)) + lo
        last = torch.searchsorted(keys, q * _LOW32 + _ordered_bits(approx + eps), right=True) + lo
        unsure = torch.nonzero(first != last).squeeze(1)  # a positive lies within eps
        if len(unsure):
            qu = q[unsure]
            key = qu * _LOW32 + _ordered_bits(exact(rows[unsure], cols[unsure]))
            settled = torch.searchsorted(keys, key) + lo
            inside = settled < self.end[qu]
            tied = torch.nonzero(inside & (self.key[settled.clamp(max=len(self.key) - 1)] == key)).squeeze(1)
            if len(tied):  # equal distance: beats only the tied positives with a larger gallery index
                g = cols[unsure[tied]] + g0
                settled[tied] = torch.searchsorted(run_keys, self.run[settled[tied]] * _LOW32 + g) + lo
            first[unsure] = settled
        # past the query's last positive: beats none of them (bin len(q) is never read)
        first = torch.where(first < self.end[q], first, len(self.q))
        self.hist += torch.bincount(first, minlength=len(self.hist))

    def ranks(self) -> torch.Tensor:
        """1-based rank of each positive among the kept gallery items."""
        cum = torch.cat([self.hist.new_zeros(1), torch.cumsum(self.hist[:-1], 0)])  # cum[k]: sum of hist[:k]
        own = self.start[self.q]
        return 1 + (torch.arange(len(self.q), device=self.q.device) - own) + cum[1:] - cum[own]


def _summarise(pos: _PositiveRanks, num_q: int, num_g: int, ap_mode: str, ranks: Sequence[int],
               max_rank: int) -> dict:
    rank = pos.ranks().double()
    nth = (torch.arange(len(pos.q), device=rank.device) - pos.start[pos.q] + 1).double()
    precision = nth / rank
    if ap_mode == "market1501":
        before = torch.where(rank > 1, (nth - 1) / (rank - 1).clamp(min=1), torch.ones_like(rank))
        precision = (before + precision) / 2
    ap_sum = torch.zeros(num_q, dtype=torch.float64, device=rank.device).index_add_(0, pos.q, precision)
    count = pos.end - pos.start
    has = count > 0
    ap = (ap_sum[has] / count[has]).cpu()
    first = rank[pos.start[has]].cpu()
    n = int(has.sum())
    result = {"queries": n, "queries_without_match": num_q - n}
    for r in ranks:
        result[f"rank{r}"] = float((first <= r).double().mean() * 100) if n else 0.0
    result["mAP"] = float(ap.mean() * 100) if n else 0.0
    # mINP (fast-reid): matches found per position searched to reach the hardest match
    last = rank[pos.end[has] - 1].cpu()
    result["mINP"] = float((count[has].cpu().double() / last).mean() * 100) if n else 0.0
    levels = torch.arange(1, min(max_rank, num_g) + 1, dtype=torch.float64)
    cmc = (first[:, None] <= levels[None, :]).double().mean(0) * 100 if n else torch.zeros(len(levels))
    result["cmc"] = [float(v) for v in cmc]
    return result


def chunk_sizes(num_q: int, num_g: int, dim: int, chunk_size: Optional[int], gallery_chunk: Optional[int],
                memory_mb: float, bytes_per_distance: int = BYTES_PER_DISTANCE) -> Tuple[int, int]:
    """Queries and gallery items per chunk: given ones, or fitted to ``memory_mb`` (a chunk's
    distances cost ``bytes_per_distance`` each, its gallery features :data:`BYTES_PER_FEATURE`)."""
    budget = memory_mb * 2**20
    if gallery_chunk is None:
        gallery_chunk = int(budget / 4 / max(1, dim * BYTES_PER_FEATURE))
    gallery_chunk = max(1, min(num_g, gallery_chunk))
    if chunk_size is None:
        chunk_size = int((budget - gallery_chunk * dim * BYTES_PER_FEATURE) / (bytes_per_distance * gallery_chunk))
    return max(1, min(num_q, chunk_size)), gallery_chunk


def _rank(labels: PairLabels, rule: str, pair_distance: Callable, chunks: Iterable) -> _PositiveRanks:
    """Positives with their distances, then every ``(q0, g0, dist, eps, exact)`` chunk
    counted against them (:meth:`_PositiveRanks.add`)."""
    pair_q, pair_g = same_identity_pairs(labels.q_pids, labels.g_pids)
    match = is_match(labels, pair_q, pair_g, rule)
    pos_q, pos_g = pair_q[match], pair_g[match]
    positives = _PositiveRanks(pos_q, pos_g, pair_distance(pos_q, pos_g), labels)
    for q0, g0, dist, eps, exact in chunks:
        positives.add(dist, q0, g0, eps, exact)
    return positives


def _check_options(ap_mode: str, max_rank: int) -> None:
    if ap_mode not in AP_MODES:
        raise CCReIDError(f"option ap_mode: unknown {ap_mode!r} (use {' or '.join(AP_MODES)})")
    if max_rank < 1:
        raise CCReIDError(f"option max_rank must be >= 1, got {max_rank}")


def evaluate(
    qf,
    gf,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_clothes=None,
    g_clothes=None,
    rule: str = "general",
    metric: str = "cosine",
    ap_mode: str = "noninterp",
    ranks: Sequence[int] = (1, 5, 10),
    max_rank: int = 50,
    chunk_size: Optional[int] = None,
    gallery_chunk: Optional[int] = None,
    memory_mb: float = 512,
    device: Optional[torch.device | str] = None,
) -> dict:
    """Rank-k (``rank1``, ``rank5``, ``rank10`` for ``ranks``) and ``mAP`` in percent,
    ``queries`` (with a valid match), ``queries_without_match`` and ``cmc`` (percent at
    ranks 1..min(max_rank, gallery size)).

    ``qf``/``gf``: ``[Q, D]`` / ``[G, D]`` tensors or NumPy arrays (any float dtype;
    ``gf`` may be a float16 array or a memmap: it is read one gallery chunk at a time).
    ``chunk_size`` queries x ``gallery_chunk`` gallery items are compared at once; left
    unset, they are fitted to ``memory_mb`` of working memory (plus the queries, held
    as float64). ``device``: where to compute (default: the device of ``qf``). Results
    do not depend on the chunking. ``rule`` and ``ap_mode`` (``noninterp`` /
    ``market1501``, which differ in how precision is averaged): see the module docstring.
    """
    check_metric(metric)
    _check_options(ap_mode, max_rank)
    qf = as_tensor(qf)
    gf = gf if hasattr(gf, "shape") else np.asarray(gf)
    device = torch.device(device) if device is not None else qf.device
    queries = prepare(qf, metric, device, name="qf")
    num_q, num_g = len(queries), len(gf)
    if num_q == 0 or num_g == 0:
        raise CCReIDError(f"{'qf' if num_q == 0 else 'gf'} is empty: nothing to evaluate")
    if len(gf.shape) != 2 or gf.shape[1] != qf.shape[1]:
        raise CCReIDError(f"gf has shape {tuple(gf.shape)} but qf has feature dimension {qf.shape[1]}")
    labels = pair_labels(num_q, num_g, device, rule, q_pids=q_pids, g_pids=g_pids, q_camids=q_camids,
                     g_camids=g_camids, q_clothes=q_clothes, g_clothes=g_clothes)
    qc, gc = chunk_sizes(num_q, num_g, qf.shape[1], chunk_size, gallery_chunk, memory_mb)

    def gallery_rows(index: torch.Tensor):
        return gf[index.to(gf.device)] if isinstance(gf, torch.Tensor) else gf[index.cpu().numpy()]

    def pair_distance(pq: torch.Tensor, pg: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(pq), dtype=torch.float32, device=device)
        for s in range(0, len(pq), gc):
            rows = prepare(gallery_rows(pg[s:s + gc]), metric, device, name="gf")
            out[s:s + gc] = paired_distance(queries[pq[s:s + gc]], rows, metric)
        return out

    bound = fast_cosine_bound(queries.shape[1], device) if metric == "cosine" else None
    queries32 = queries.float() if bound is not None else None

    def chunks():
        for g0 in range(0, num_g, gc):
            gallery = prepare(gf[g0:g0 + gc], metric, device, name=f"gf (rows {g0}..{min(num_g, g0 + gc) - 1})")
            gallery32 = gallery.float() if bound is not None else None
            for q0 in range(0, num_q, qc):
                if bound is not None:  # float32 product; entries near a positive are re-checked exactly
                    dist, eps = fast_cosine(queries32[q0:q0 + qc], gallery32), bound
                else:
                    dist, eps = chunk_distance(queries[q0:q0 + qc], gallery, metric), 0.0

                def exact(rows: torch.Tensor, cols: torch.Tensor, q0=q0, gallery=gallery) -> torch.Tensor:
                    return paired_distance(queries[rows + q0], gallery[cols], metric)

                yield q0, g0, dist, eps, exact

    positives = _rank(labels, rule, pair_distance, chunks())
    return _summarise(positives, num_q, num_g, ap_mode, ranks, max_rank)


def evaluate_distmat(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_clothes=None,
    g_clothes=None,
    rule: str = "general",
    ap_mode: str = "noninterp",
    ranks: Sequence[int] = (1, 5, 10),
    max_rank: int = 50,
    chunk_size: Optional[int] = None,
    gallery_chunk: Optional[int] = None,
    memory_mb: float = 512,
    device: Optional[torch.device | str] = None,
) -> dict:
    """:func:`evaluate` on a precomputed ``[Q, G]`` distance matrix (e.g. after
    re-ranking). Distances are compared as float32; the matrix is not modified."""
    _check_options(ap_mode, max_rank)
    if getattr(distmat, "ndim", None) != 2:
        raise CCReIDError("distmat must be a 2-D [queries x gallery] matrix")
    num_q, num_g = distmat.shape
    if num_q == 0 or num_g == 0:
        raise CCReIDError(f"distmat has shape {tuple(distmat.shape)}: nothing to evaluate")
    device = torch.device(device) if device is not None else as_tensor(distmat).device
    labels = pair_labels(num_q, num_g, device, rule, q_pids=q_pids, g_pids=g_pids, q_camids=q_camids,
                     g_camids=g_camids, q_clothes=q_clothes, g_clothes=g_clothes)
    qc, gc = chunk_sizes(num_q, num_g, 0, chunk_size, gallery_chunk, memory_mb)
    matrix = as_tensor(distmat)

    def pair_distance(pq: torch.Tensor, pg: torch.Tensor) -> torch.Tensor:
        out = matrix[pq.to(matrix.device), pg.to(matrix.device)].to(device=device, dtype=torch.float32)
        if not bool(torch.isfinite(out).all()):
            raise CCReIDError("distmat contains NaN or inf values")
        return out

    def chunks():
        for g0 in range(0, num_g, gc):
            for q0 in range(0, num_q, qc):
                block = matrix[q0:q0 + qc, g0:g0 + gc].to(device=device, dtype=torch.float32)
                if not bool(torch.isfinite(block.sum())) and not bool(torch.isfinite(block).all()):
                    raise CCReIDError("distmat contains NaN or inf values")
                yield q0, g0, block, 0.0, lambda rows, cols, block=block: block[rows, cols]

    positives = _rank(labels, rule, pair_distance, chunks())
    return _summarise(positives, num_q, num_g, ap_mode, ranks, max_rank)
