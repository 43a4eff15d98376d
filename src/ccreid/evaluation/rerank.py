"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised in torch, dense or sparse.

Follows the authors' reference implementation step by step: squared distances scaled by
each column's maximum (the "original" distance), k-reciprocal sets with the 2/3 expansion
rule, Gaussian-weighted V, query expansion over the k2 nearest, Jaccard distance mixed with
the original by ``lambda_value``. Nearest-neighbour lists are ordered by (original distance,
index), so ties go to the lower index. A query-gallery pair sharing no expanded neighbour
has Jaccard distance 1, hence final distance ``(1 - lambda) + lambda * original``.

Two ways to the neighbour lists and original distances, then one sparse pipeline (sets, V
and Jaccard hold ~k1 * k2 entries per item):

- dense (:func:`re_rank`): the full ``(Q+G)^2`` matrix, each row sorted; memory
  O((Q+G)^2), meant for up to :data:`DENSE_LIMIT` images;
- sparse (:mod:`ccreid.evaluation.rerank_sparse`): exact k-NN lists from FAISS and only the
  needed pairs' distances; memory O(Q*G + (Q+G)*k). Same result as dense.

The Jaccard part alone (:func:`jaccard_from`) also gives the all-pairs Jaccard distance of
one set of features that cluster-based methods (FIRe²) cluster on (:func:`jaccard_distance`).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation.distance import as_tensor, pairwise_distance
from ccreid.evaluation.ranking import evaluate_distmat

#: Largest query + gallery count re-ranked densely by ``impl="auto"`` (its matrices: ~5 GB).
DENSE_LIMIT = 20_000
IMPLS = ("auto", "dense", "sparse")
#: Rows sorted at once; items whose sets are expanded at once; pairs summed at once for Jaccard.
_ROWS = 256
_ITEMS = 4096
_JACCARD_PAIRS = 2**22
#: Final distances combined at once (entries).
_FINAL_BLOCK = 2**24


def check_params(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1 or k2 < 1:
        raise CCReIDError(f"re-ranking: k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise CCReIDError(f"re-ranking: lambda_value must be in [0, 1], got {lambda_value}")


def _nearest(dist: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of each row's ``width`` smallest entries, ascending, ties to the lower index."""
    return torch.cat([torch.sort(dist[r:r + _ROWS], dim=1, stable=True).indices[:, :width]
                      for r in range(0, len(dist), _ROWS)])


def _reciprocal(neighbours: torch.Tensor) -> torch.Tensor:
    """``[N, k]`` mask: row i's neighbour j also lists i among its own ``k`` neighbours."""
    return torch.cat([(neighbours[neighbours[r:r + _ITEMS]] == torch.arange(
        r, min(r + _ITEMS, len(neighbours)), device=neighbours.device)[:, None, None]).any(-1)
        for r in range(0, len(neighbours), _ITEMS)])


def _expanded_sets(rank: torch.Tensor, k1: int):
    """Each item's expanded k-reciprocal set as ``(rows, cols)`` entries, sorted by row then column."""
    n = len(rank)
    fwd, half = rank[:, :k1 + 1], rank[:, :int(round(k1 / 2)) + 1]
    recip, half_recip = _reciprocal(fwd), _reciprocal(half)
    keys = []
    for r in range(0, n, _ITEMS):
        f, ok_f = fwd[r:r + _ITEMS], recip[r:r + _ITEMS]
        ids = torch.arange(r, r + len(f), device=rank.device)[:, None]
        own = (ids * n + f)[ok_f]  # the k-reciprocal sets, as keys row * n + col
        known = torch.sort(own).values
        members = ids[:, :, None] * n + half[f]  # half sets of each candidate ...
        member_ok = half_recip[f]  # ... their reciprocal members
        at = torch.searchsorted(known, members).clamp(max=max(len(known) - 1, 0))
        inside = known[at] == members if len(known) else torch.zeros_like(member_ok)
        inter, size = (member_ok & inside).sum(-1), member_ok.sum(-1)
        accept = ok_f & (inter.double() > 2.0 / 3 * size.double())
        keys.append(torch.unique(torch.cat([own, members[accept[..., None] & member_ok]])))
    keys = torch.cat(keys)
    return keys // n, keys % n


def _expand_queries(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, nearest: torch.Tensor, n: int):
    """Row i becomes the mean of the rows of its ``nearest[i]`` items (query expansion)."""
    count = torch.bincount(rows, minlength=n)
    start = torch.cumsum(count, 0) - count
    width = nearest.shape[1]
    out_keys, out_vals = [], []
    for r in range(0, n, _ITEMS):
        src = nearest[r:r + _ITEMS].reshape(-1)
        c = count[src]
        owner = torch.arange(r, r + len(src) // width, device=rows.device).repeat_interleave(width)
        offset = torch.arange(int(c.sum()), device=rows.device) - (torch.cumsum(c, 0) - c).repeat_interleave(c)
        entry = start[src].repeat_interleave(c) + offset
        keys, inverse = torch.unique(owner.repeat_interleave(c) * n + cols[entry], return_inverse=True)
        out_keys.append(keys)
        out_vals.append(torch.zeros(len(keys), dtype=vals.dtype, device=vals.device).index_add_(
            0, inverse, vals[entry]))
    keys = torch.cat(out_keys)
    return keys // n, keys % n, torch.cat(out_vals) / width


def _shared(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, num_q: int, first_g: int,
            n: int) -> torch.Tensor:
    """``S[i, j] = sum_k min(v[i, k], v[first_g + j, k])`` for rows ``i < num_q`` and ``first_g + j < n``."""
    gallery = rows >= first_g
    order = torch.argsort(cols[gallery], stable=True)  # gallery entries grouped by column k
    g_row, g_col, g_val = rows[gallery][order] - first_g, cols[gallery][order], vals[gallery][order]
    counts = torch.bincount(g_col, minlength=n)
    start = torch.cumsum(counts, 0) - counts
    query = rows < num_q
    qi, qk, qv = rows[query], cols[query], vals[query]
    pairs = counts[qk]  # partners of each query entry: the column's gallery entries
    cum = torch.cumsum(pairs, 0)
    levels = torch.tensor(range(_JACCARD_PAIRS, int(cum[-1]) if len(cum) else 0, _JACCARD_PAIRS), device=rows.device)
    edges = [0] + torch.searchsorted(cum, levels, right=True).tolist() + [len(qi)]
    shared = torch.zeros(num_q, n - first_g, dtype=vals.dtype, device=vals.device)
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = pairs[lo:hi]
        rep = torch.repeat_interleave(torch.arange(lo, hi, device=rows.device), m)
        partner = start[qk[rep]] + torch.arange(len(rep), device=rows.device) - (torch.cumsum(m, 0) - m)[rep - lo]
        shared.index_put_((qi[rep], g_row[partner]), torch.minimum(qv[rep], g_val[partner]), accumulate=True)
    return shared


def jaccard_from(rank: torch.Tensor, pair_original: Callable, k1: int, k2: int, num_q: Optional[int] = None,
                 extra_mass: Optional[torch.Tensor] = None) -> torch.Tensor:
    """k-reciprocal Jaccard distances ``1 - S / (2 - S)`` from the neighbour lists ``rank`` and
    ``pair_original(i, j)`` (original distances of index pairs): ``[Q, G]`` of the first ``num_q``
    items (queries) to the others (gallery), or ``[N, N]`` of every pair when ``num_q`` is None.

    Item i's k-reciprocal set is taken from ``rank[:, :k1 + 1]`` (fewer columns: all of them),
    its half sets from ``rank[:, :round(k1 / 2) + 1]``; query expansion averages ``rank[:, :k2]``
    (an index listed twice counts twice). ``extra_mass`` (``[N]``) is added to each row's sum
    of weights before the weights are divided by it."""
    n = len(rank)
    rows, cols = _expanded_sets(rank, k1)
    vals = torch.exp(-pair_original(rows, cols))
    mass = torch.zeros(n, dtype=vals.dtype, device=vals.device).index_add_(0, rows, vals)
    vals = vals / (mass if extra_mass is None else mass + extra_mass)[rows]
    if k2 != 1:
        rows, cols, vals = _expand_queries(rows, cols, vals, rank[:, :k2], n)
    shared = _shared(rows, cols, vals, n, 0, n) if num_q is None else _shared(rows, cols, vals, num_q, num_q, n)
    step = max(1, _FINAL_BLOCK // max(1, shared.shape[1]))
    for q0 in range(0, len(shared), step):
        s = shared[q0:q0 + step]
        s.div_(s.neg().add_(2)).neg_().add_(1)
    return shared


def rerank_from(rank: torch.Tensor, pair_original: Callable, query_original: Callable, num_q: int, k1: int, k2: int,
                lambda_value: float) -> torch.Tensor:
    """Re-ranked ``[Q, G]`` distances from the neighbour lists ``rank`` (``[N, >= min(N, max(k1 + 1, k2))]``,
    by original distance, ties to the lower index), ``pair_original(i, j)`` (original distances of
    index pairs) and ``query_original(q0, q1)`` (original distances of queries q0..q1-1 to the gallery)."""
    final = jaccard_from(rank, pair_original, k1, k2, num_q)
    step = max(1, _FINAL_BLOCK // max(1, final.shape[1]))
    for q0 in range(0, num_q, step):  # the Jaccard distance mixed with the original distance
        s = final[q0:q0 + step].mul_(1 - lambda_value)
        s.add_(query_original(q0, min(q0 + step, num_q)), alpha=lambda_value)
    return final


def jaccard_distance(features: torch.Tensor, k1: int = 20, k2: int = 6, faiss_padding: bool = True) -> torch.Tensor:
    """``[N, N]`` k-reciprocal Jaccard distances among L2-normalised ``features`` (``[N, D]``), as
    cluster-based re-ID computes them (SpCL's ``compute_jaccard_distance``, used by FIRe²).

    Differences from re-ranking: the original distance is ``2 - 2 cos`` (not scaled by column
    maxima), neighbour lists hold the ``k1`` nearest items (self included, ties to the lower
    index: the k-reciprocal sets come from ``k1`` columns, not ``k1 + 1``), every item is both
    query and gallery, and negative distances (rounding) are clipped to 0.

    Fewer than ``k1`` items: that code's faiss search pads each list with -1, which numpy then
    reads as the last item. With ``faiss_padding`` (the default) ccreid does the same: every
    set also holds the last item a second time (in the weights' sum; its weight is written
    once) and the query-expansion lists are filled with it; without, each item counts once."""
    check_params(k1, k2, 0.0)
    n = len(features)
    original = 2 - 2 * features.float() @ features.float().T
    rank = _nearest(original, min(n, k1))
    extra = None
    if faiss_padding and n < k1:
        rank = torch.cat([rank, rank.new_full((n, k1 - n), n - 1)], 1)
        extra = torch.exp(-original[:, n - 1])
    return jaccard_from(rank, lambda i, j: original[i, j], k1, k2, extra_mass=extra).clamp_(min=0)


def re_rank(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> torch.Tensor:
    """Re-ranked ``[Q, G]`` float32 distance matrix (device of ``q_g_dist``), dense."""
    q_g = as_tensor(q_g_dist).float()
    q_q, g_g = as_tensor(q_q_dist, q_g.device).float(), as_tensor(g_g_dist, q_g.device).float()
    num_q, num_g = q_g.shape
    for name, t, shape in (("q_q_dist", q_q, (num_q, num_q)), ("g_g_dist", g_g, (num_g, num_g))):
        if tuple(t.shape) != shape:
            raise CCReIDError(f"re-ranking: {name} has shape {tuple(t.shape)}, expected {shape}")
    check_params(k1, k2, lambda_value)
    original = torch.cat([torch.cat([q_q, q_g], 1), torch.cat([q_g.T, g_g], 1)], 0).pow_(2)
    original = (original / original.max(dim=0).values.clamp(min=torch.finfo(torch.float32).tiny)).T.contiguous()
    rank = _nearest(original, max(k1 + 1, k2))
    return rerank_from(rank, lambda i, j: original[i, j], lambda q0, q1: original[q0:q1, num_q:], num_q, k1, k2,
                       lambda_value)


def rerank_features(qf, gf, metric: str = "cosine", k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                    impl: str = "auto") -> torch.Tensor:
    """Re-ranked ``[Q, G]`` distances of features. ``impl``: ``dense`` (:func:`re_rank` of the
    pairwise distances), ``sparse`` (FAISS k-NN, same result) or ``auto`` (dense up to
    :data:`DENSE_LIMIT` queries + gallery items, sparse beyond)."""
    if impl not in IMPLS:
        raise CCReIDError(f"option rerank_impl: unknown {impl!r} (use {', '.join(IMPLS)})")
    check_params(k1, k2, lambda_value)
    if impl == "sparse" or (impl == "auto" and len(qf) + len(gf) > DENSE_LIMIT):
        from ccreid.evaluation.rerank_sparse import sparse_re_rank

        return sparse_re_rank(qf, gf, metric, k1, k2, lambda_value)
    return re_rank(pairwise_distance(qf, gf, metric), pairwise_distance(qf, qf, metric),
                   pairwise_distance(gf, gf, metric), k1, k2, lambda_value)


def evaluate_reranked(qf, gf, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                      metric: str = "cosine", k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                      impl: str = "auto", **options) -> dict:
    """:func:`~ccreid.evaluation.evaluate` (same arguments and result) on the re-ranked
    distances of the features; ``options`` (rule, ap_mode, ...) go to ``evaluate_distmat``."""
    return evaluate_distmat(rerank_features(qf, gf, metric, k1, k2, lambda_value, impl), q_pids, g_pids, q_camids,
                            g_camids, q_clothes, g_clothes, **options)
