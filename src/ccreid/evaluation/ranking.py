"""CMC and mAP for the general, same-clothes and clothes-changing rules (METHOD.md).

Pure functions of features and labels. Vectorised over queries (only query chunks are
looped), ties in distance broken by gallery index (stable sort), queries without a valid
match excluded from the averages and counted.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

RULES = ("general", "sc", "cc")
AP_MODES = ("noninterp", "market1501")


def _tensor(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype) if dtype is not None else t


def pairwise_distance(qf: torch.Tensor, gf: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """``cosine`` (1 - cosine similarity of L2-normalised features) or ``euclidean``."""
    if metric == "cosine":
        q = torch.nn.functional.normalize(qf, dim=1)
        g = torch.nn.functional.normalize(gf, dim=1)
        return 1.0 - q @ g.T
    if metric == "euclidean":
        return torch.cdist(qf, gf)
    raise ValueError(f"metric must be cosine or euclidean, got {metric!r}")


def match_masks(
    q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None, rule: str = "general"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(good, junk)`` boolean ``[Q, G]`` masks of the rule; junk is removed before ranking.

    general: junk = same id & same camera. cc: also same id & same clothes.
    sc: also same id & other clothes (only same-clothes images count as matches).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    same_id = q_pids[:, None] == g_pids[None, :]
    junk = same_id & (q_camids[:, None] == g_camids[None, :])
    if rule != "general":
        if q_clothes is None or g_clothes is None:
            raise ValueError(f"rule {rule!r} needs clothes ids for query and gallery")
        same_clothes = q_clothes[:, None] == g_clothes[None, :]
        junk = junk | (same_id & (same_clothes if rule == "cc" else ~same_clothes))
    return same_id & ~junk, junk


def rank_distmat(
    distmat: torch.Tensor, good: torch.Tensor, junk: torch.Tensor, ap_mode: str = "noninterp"
) -> Dict[str, torch.Tensor]:
    """Per-query first-hit rank, AP and a validity flag for one chunk of queries."""
    if ap_mode not in AP_MODES:
        raise ValueError(f"ap_mode must be one of {AP_MODES}, got {ap_mode!r}")
    order = torch.sort(distmat, dim=1, stable=True).indices
    hits = good.gather(1, order)
    valid = ~junk.gather(1, order)
    rank = torch.cumsum(valid, dim=1)  # 1-based rank among the kept gallery items
    num_good = hits.sum(1)
    cum_hits = torch.cumsum(hits, dim=1).double()
    rank_d = rank.double().clamp(min=1)  # junk before the first kept item has rank 0
    precision = cum_hits / rank_d
    if ap_mode == "noninterp":
        contrib = precision
    else:
        # official Market-1501 script: mean of the precision just before and at each hit
        prev_rank = rank_d - 1
        before = torch.where(prev_rank > 0, (cum_hits - 1) / prev_rank.clamp(min=1), torch.ones_like(prev_rank))
        contrib = (before + precision) / 2
    ap = (contrib * hits).sum(1) / num_good.clamp(min=1)
    first_hit = torch.where(hits, rank, torch.full_like(rank, torch.iinfo(rank.dtype).max)).min(1).values
    return {"first_hit": first_hit, "ap": ap, "has_match": num_good > 0}


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
    chunk_size: int = 256,
    device: Optional[torch.device | str] = None,
) -> dict:
    """Ranking metrics in percent: ``rank1/5/10``, ``mAP``, ``queries``,
    ``queries_without_match`` and ``cmc`` (list up to ``max_rank``).

    Queries are processed ``chunk_size`` at a time, so memory is ``chunk_size x G``.
    """
    device = torch.device(device) if device is not None else None
    qf, gf = _tensor(qf, torch.float32), _tensor(gf, torch.float32)
    if device is not None:
        qf, gf = qf.to(device), gf.to(device)
    labels = [_tensor(x).to(qf.device).long() if x is not None else None
              for x in (q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes)]
    qp, gp, qc, gc, qcl, gcl = labels
    first_hits, aps, has_match = [], [], []
    for start in range(0, len(qf), chunk_size):
        sl = slice(start, start + chunk_size)
        good, junk = match_masks(qp[sl], gp, qc[sl], gc, None if qcl is None else qcl[sl], gcl, rule)
        out = rank_distmat(pairwise_distance(qf[sl], gf, metric), good, junk, ap_mode)
        first_hits.append(out["first_hit"].cpu())
        aps.append(out["ap"].cpu())
        has_match.append(out["has_match"].cpu())
    return summarise(torch.cat(first_hits), torch.cat(aps), torch.cat(has_match), ranks, max_rank)


def summarise(first_hit: torch.Tensor, ap: torch.Tensor, has_match: torch.Tensor,
              ranks: Sequence[int] = (1, 5, 10), max_rank: int = 50) -> dict:
    """Average per-query results over queries with a valid match."""
    n = int(has_match.sum())
    result = {"queries": n, "queries_without_match": int((~has_match).sum())}
    valid_first = first_hit[has_match]
    levels = torch.arange(1, max_rank + 1)
    cmc = ((valid_first[:, None] <= levels[None, :]).double().mean(0) * 100) if n else torch.zeros(max_rank)
    for r in ranks:
        result[f"rank{r}"] = float(((valid_first <= r).double().mean() * 100) if n else 0.0)
    result["mAP"] = float(ap[has_match].mean() * 100) if n else 0.0
    result["cmc"] = [float(v) for v in cmc]
    return result
