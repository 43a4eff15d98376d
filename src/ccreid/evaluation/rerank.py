"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised in torch.

Follows the authors' reference implementation step by step (squared distances scaled by
each column's maximum, k-reciprocal sets with the 2/3 expansion rule, Gaussian-weighted
V, query expansion over the k2 nearest, Jaccard distance mixed with the original by
``lambda_value``). Nearest-neighbour lists use a stable sort, so ties go to the lower
index. Memory is O((Q+G)^2) like the reference: meant for galleries up to ~20k images.
"""

from __future__ import annotations

import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation.distance import as_tensor, pairwise_distance
from ccreid.evaluation.ranking import evaluate_distmat

#: Rows handled at once when sorting and in query expansion; pairs summed at once for Jaccard.
_ROWS = 256
_JACCARD_PAIRS = 2**22


def _check(q_g: torch.Tensor, q_q: torch.Tensor, g_g: torch.Tensor, k1: int, k2: int, lambda_value: float) -> None:
    num_q, num_g = q_g.shape
    for name, t, shape in (("q_q_dist", q_q, (num_q, num_q)), ("g_g_dist", g_g, (num_g, num_g))):
        if tuple(t.shape) != shape:
            raise CCReIDError(f"re-ranking: {name} has shape {tuple(t.shape)}, expected {shape}")
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
    rows = torch.arange(len(neighbours), device=neighbours.device)
    return (neighbours[neighbours] == rows[:, None, None]).any(-1)


def _expanded_sets(rank: torch.Tensor, k1: int) -> torch.Tensor:
    """Dense ``[N, N]`` mask of each item's expanded k-reciprocal set."""
    n = len(rank)
    rows = torch.arange(n, device=rank.device)
    fwd = rank[:, :k1 + 1]
    recip = _reciprocal(fwd)
    half = rank[:, :int(round(k1 / 2)) + 1]
    half_recip = _reciprocal(half)
    sets = torch.zeros(n, n, dtype=torch.bool, device=rank.device)
    sets[rows[:, None].expand_as(fwd)[recip], fwd[recip]] = True
    members = half[fwd]  # [N, k1+1, h]: half-neighbours of each candidate
    member_ok = half_recip[fwd]  # ... that are reciprocal, i.e. the candidate's half set
    size = member_ok.sum(-1)
    inter = (member_ok & sets[rows[:, None, None], members]).sum(-1)
    accept = recip & (inter.double() > 2.0 / 3 * size.double())
    add = accept[..., None] & member_ok
    sets[rows[:, None, None].expand_as(members)[add], members[add]] = True
    return sets


def _jaccard(v: torch.Tensor, num_q: int) -> torch.Tensor:
    """``1 - S / (2 - S)`` with ``S[i, j] = sum_k min(v[i, k], v[j, k])`` for query rows i."""
    col, row = v.T.nonzero(as_tuple=True)  # entries grouped by column k
    val = v[row, col]
    counts = torch.bincount(col, minlength=v.shape[1])
    start = torch.cumsum(counts, 0) - counts
    qi, qk = v[:num_q].nonzero(as_tuple=True)
    qv = v[qi, qk]
    pairs = counts[qk]  # partners of each query entry: the column's entries
    cum = torch.cumsum(pairs, 0)
    levels = torch.tensor(range(_JACCARD_PAIRS, int(cum[-1]) if len(cum) else 0, _JACCARD_PAIRS), device=v.device)
    edges = [0] + torch.searchsorted(cum, levels, right=True).tolist() + [len(qi)]
    shared = torch.zeros(num_q, v.shape[1], dtype=v.dtype, device=v.device)
    for lo, hi in zip(edges[:-1], edges[1:]):
        n = pairs[lo:hi]
        rep = torch.repeat_interleave(torch.arange(lo, hi, device=v.device), n)
        partner = start[qk[rep]] + torch.arange(len(rep), device=v.device) - (torch.cumsum(n, 0) - n)[rep - lo]
        shared.index_put_((qi[rep], row[partner]), torch.minimum(qv[rep], val[partner]), accumulate=True)
    return 1 - shared / (2 - shared)


def re_rank(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> torch.Tensor:
    """Re-ranked ``[Q, G]`` float32 distance matrix (device of ``q_g_dist``)."""
    q_g = as_tensor(q_g_dist).float()
    q_q, g_g = as_tensor(q_q_dist, q_g.device).float(), as_tensor(g_g_dist, q_g.device).float()
    _check(q_g, q_q, g_g, k1, k2, lambda_value)
    num_q = len(q_g)
    original = torch.cat([torch.cat([q_q, q_g], 1), torch.cat([q_g.T, g_g], 1)], 0).pow_(2)
    original = (original / original.max(dim=0).values.clamp(min=torch.finfo(torch.float32).tiny)).T.contiguous()
    rank = _nearest(original, max(k1 + 1, k2))
    sets = _expanded_sets(rank, k1)
    v = torch.where(sets, torch.exp(-original), torch.zeros((), device=original.device))
    v /= v.sum(1, keepdim=True)
    del sets
    if k2 != 1:
        v = torch.cat([v[rank[r:r + _ROWS, :k2]].mean(1) for r in range(0, len(v), _ROWS)])
    final = _jaccard(v, num_q).mul_(1 - lambda_value).add_(original[:num_q], alpha=lambda_value)
    return final[:, num_q:].contiguous()


def rerank_features(qf, gf, metric: str = "cosine", k1: int = 20, k2: int = 6,
                    lambda_value: float = 0.3) -> torch.Tensor:
    """:func:`re_rank` of the query-gallery, query-query and gallery-gallery distances of features."""
    return re_rank(pairwise_distance(qf, gf, metric), pairwise_distance(qf, qf, metric),
                   pairwise_distance(gf, gf, metric), k1, k2, lambda_value)


def evaluate_reranked(qf, gf, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                      metric: str = "cosine", k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                      **options) -> dict:
    """:func:`~ccreid.evaluation.evaluate` (same arguments and result) on the re-ranked
    distances of the features; ``options`` (rule, ap_mode, ...) go to ``evaluate_distmat``."""
    return evaluate_distmat(rerank_features(qf, gf, metric, k1, k2, lambda_value), q_pids, g_pids, q_camids,
                            g_camids, q_clothes, g_clothes, **options)
