"""Sparse k-reciprocal re-ranking: the dense result without the ``(Q+G)^2`` matrices.

The dense re-ranking orders item i's neighbours by ``original[i, j] = M[j, i]^2 / c_i``
(``M`` the block matrix ``[[q_q, q_g], [q_g^T, g_g]]`` of float32 distances, ``c_i`` the
largest squared entry of column i) with ties to the lower index. Here:

- candidates come from a FAISS exact inner-product index (``IndexFlatIP``; an exact torch
  search without faiss) over float32 vectors: unit features for cosine; for euclidean the
  centred features as ``[y, |y|^2]`` against ``[2x, -1]`` (``= |x|^2 - |x - y|^2``); the
  farthest items (for ``c_i``) from the negated queries;
- every candidate's distance is recomputed with :mod:`ccreid.evaluation.distance` (float64
  products rounded onto the float32 grid: the dense matrices' values) and candidates are
  sorted by (original, index);
- a list is accepted only when its k-th value is below a proven lower bound for every item
  not fetched (a float32 inner product errs by at most ``(d + 16) 2^-22 sum_k |q_k y_k|``);
  otherwise that item's search is repeated with twice the candidates. The neighbour lists
  are therefore the dense ones. ``c_i`` is the exact maximum over the 4 farthest
  candidates, which can differ from the dense one only when float32 near-ties hide the
  farthest item, changing distances by ~1e-7 relatively.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation.blocks import Distances
from ccreid.evaluation.distance import as_tensor, check_metric, chunk_distance, paired_distance, prepare
from ccreid.evaluation.rerank import check_params, rerank_from
from ccreid.evaluation.search import import_faiss

#: Feature values gathered at once for exact pair distances; queries searched at once by torch.
_GATHER = 2**22
_SEARCH_ROWS = 1024
#: Farthest candidates recomputed exactly for the scale ``c_i``.
_FARTHEST = 4
#: Working memory (MiB) of the query-gallery distance rows.
_ROWS_MB = 256
_MARGIN = 2.0**-20


def _dot_error(dim: int) -> float:
    """Bound on a float32 inner product's error relative to the sum of ``|q_k y_k|`` (as
    :func:`~ccreid.evaluation.distance.fast_cosine_bound`), with the rounding of the vectors."""
    return (dim + 16) * 2.0**-22


class _Items:
    """Queries then gallery items: search vectors, index and exact squared distances."""

    def __init__(self, feats, metric: str, num_q: int) -> None:
        self.metric, self.num_q = metric, num_q
        self.rows = prepare(feats, metric, name="features")  # float64, as the dense matrices use them
        if metric == "cosine":
            unit = self.rows.float()
            self.db, self.near, self.far = unit, unit, -unit
            self.eps = torch.full((len(unit),), _dot_error(unit.shape[1]), dtype=torch.float64)
        else:  # centred (distances do not change): smaller norms, tighter bounds
            x = self.rows[:, :-2] - self.rows[:, :-2].mean(0)
            self.sq_norm, self.sq_centred = self.rows[:, -2], (x * x).sum(1)
            ones = torch.ones(len(x), 1)
            self.db = torch.cat([x.float(), self.sq_centred.float()[:, None]], 1)
            self.near, self.far = torch.cat([2 * x.float(), -ones], 1), torch.cat([-2 * x.float(), ones], 1)
            top = float(self.sq_centred.max())  # |2 x.y - |y|^2| terms sum to at most 2|x||y| + |y|^2
            self.eps = _dot_error(x.shape[1] + 1) * (2 * self.sq_centred.sqrt() * top ** 0.5 + top)
        dim = self.db.shape[1]
        self.faiss = import_faiss()
        if self.faiss is not None:
            self.index = self.faiss.IndexFlatIP(dim)
            self.index.add(np.ascontiguousarray(self.db.numpy()))

    def search(self, queries: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Largest inner products ``[len, k]`` (float64) and item indices with the index vectors."""
        if self.faiss is not None:
            scores, idx = self.index.search(np.ascontiguousarray(queries.numpy()), k)
            return torch.from_numpy(scores).double(), torch.from_numpy(idx).long()
        db = self.db.double()
        found = [torch.topk(q.double() @ db.T, k, dim=1) for q in queries.split(_SEARCH_ROWS)]
        return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])

    def square(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Float32 ``M[a, b]^2``: the row of a query-gallery pair is the query, else ``a``."""
        swap = (a >= self.num_q) & (b < self.num_q)
        row, col = torch.where(swap, b, a).reshape(-1), torch.where(swap, a, b).reshape(-1)
        out = torch.empty(len(row), dtype=torch.float32)
        step = max(1, _GATHER // self.rows.shape[1])
        for s in range(0, len(row), step):
            out[s:s + step] = paired_distance(self.rows[row[s:s + step]], self.rows[col[s:s + step]], self.metric)
        return out.pow_(2).reshape(a.shape)

    def lower_bound(self, items: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """Float64 lower bound on ``M[j, i]^2`` for every item j scoring at most ``score`` for item i."""
        if self.metric == "cosine":
            d = (1 - score - self.eps[items] - 2.0**-22).clamp(min=0)
            return d * d * (1 - _MARGIN)
        d2 = self.sq_centred[items] - score - self.eps[items]
        return (d2 - 2.0**-21 * (float(self.sq_norm.max()) + d2.abs())).clamp(min=0) * (1 - _MARGIN)

    def scale(self) -> torch.Tensor:
        """``c_i``: the largest squared distance of each item (float32, at least the smallest normal)."""
        items = torch.arange(len(self.rows))
        _, far = self.search(self.far, min(len(items), _FARTHEST))
        return self.square(far, items[:, None].expand_as(far)).max(1).values.clamp(min=torch.finfo(torch.float32).tiny)

    def nearest(self, width: int, scale: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[N, width]`` neighbours by (original distance, index), as the dense sort gives them,
        and their original distances."""
        n = len(self.rows)
        rank = torch.empty(n, width, dtype=torch.int64)
        values = torch.empty(n, width)
        todo, fetch = torch.arange(n), min(n, 2 * width)
        while len(todo):
            score, cand = self.search(self.near[todo], fetch)
            original = self.square(cand, todo[:, None].expand_as(cand)) / scale[todo, None]
            order = torch.argsort(cand, dim=1)
            order = order.gather(1, torch.argsort(original.gather(1, order), dim=1, stable=True))
            cand, original = cand.gather(1, order), original.gather(1, order)
            if fetch >= n:
                done = torch.ones(len(todo), dtype=torch.bool)
            else:
                bound = self.lower_bound(todo, score[:, -1]) / scale[todo].double() * (1 - _MARGIN)
                done = original[:, width - 1].double() < bound
            rank[todo[done]], values[todo[done]] = cand[done, :width], original[done, :width]
            todo, fetch = todo[~done], min(n, 2 * fetch)
        return rank, values

    def original(self, rank: torch.Tensor, values: torch.Tensor, scale: torch.Tensor):
        """``pair_original(i, j)``: ``original[i, j]`` from the neighbour lists, else computed."""
        n = len(rank)
        keys = (torch.arange(n)[:, None] * n + rank).reshape(-1)
        keys, order = torch.sort(keys)
        values = values.reshape(-1)[order]

        def pair_original(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            key = i * n + j
            at = torch.searchsorted(keys, key).clamp(max=len(keys) - 1)
            out = values[at]
            miss = keys[at] != key
            out[miss] = self.square(j[miss], i[miss]) / scale[i[miss]]
            return out

        return pair_original


def sparse_re_rank(qf, gf, metric: str = "cosine", k1: int = 20, k2: int = 6, lambda_value: float = 0.3
                   ) -> torch.Tensor:
    """Re-ranked ``[Q, G]`` float32 distances of features (device of ``qf``), equal to the dense
    :func:`~ccreid.evaluation.rerank.rerank_features`; computed on the CPU."""
    check_metric(metric)
    check_params(k1, k2, lambda_value)
    q, g = as_tensor(qf), as_tensor(gf)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1] or not len(q) or not len(g):
        raise CCReIDError(f"re-ranking: qf {tuple(q.shape)} and gf {tuple(g.shape)} must be non-empty N x D "
                          f"arrays of one dimension")
    dtype = torch.promote_types(q.dtype, g.dtype)
    num_q, n = len(q), len(q) + len(g)
    items = _Items(torch.cat([q.to("cpu", dtype), g.to("cpu", dtype)]), metric, num_q)
    scale = items.scale()
    rank, values = items.nearest(min(n, max(k1 + 1, k2)), scale)
    rows = items.rows
    distances = Distances(num_q, n - num_q, rows.shape[1], rows.device, lambda q0, q1, g0, g1: chunk_distance(
        rows[q0:q1], rows[num_q + g0:num_q + g1], metric))

    def query_original(q0: int, q1: int) -> torch.Tensor:
        return distances.rows(q0, q1, _ROWS_MB).pow_(2) / scale[q0:q1, None]

    final = rerank_from(rank, items.original(rank, values, scale), query_original, num_q, k1, k2, lambda_value)
    return final.to(q.device)
