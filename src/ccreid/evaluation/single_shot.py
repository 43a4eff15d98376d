"""CUHK03-style single-gallery-shot CMC (torchreid's ``eval_cuhk03``).

For each query and each of ``repeats`` draws, one gallery image is sampled per identity
(uniformly) and the query's rank is that of its own identity's sample among them. As in
torchreid, the query's removed images (same identity and same camera; with the ``cc`` /
``sc`` rules also the clothes conditions of :func:`~ccreid.evaluation.ranking.valid_match`)
are never sampled, queries without a valid match are left out, and the CMC is averaged
over draws and queries. Ties in distance go to the lower gallery index. (torchreid's AP is
that of the whole gallery, i.e. :func:`~ccreid.evaluation.evaluate`'s.)

The draw of query ``i``, identity ``p`` in repeat ``r`` is ``u = U[r, i mod B, p]`` with
``U = numpy.random.default_rng((seed, i // B)).random((repeats, B', P))`` (``B`` =
:data:`QUERY_BLOCK`, ``B'`` the block's size, ``P`` the gallery identities in ascending
id order), so results do not depend on memory or device. Identity ``p`` draws its
``floor(u n)``-th image by gallery index among its ``n`` images; the query's own identity
draws among its ``n`` valid matches. Memory: ``B x G`` distances and ``repeats x B x P`` draws.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation.blocks import Distances, from_features, from_matrix
from ccreid.evaluation.ranking import is_match, pair_labels, same_identity_pairs

#: Queries sharing one random generator (see the module docstring).
QUERY_BLOCK = 256


def single_gallery_shot(qf, gf, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                        rule: str = "general", metric: str = "cosine", repeats: int = 10, seed: int = 0,
                        ranks: Sequence[int] = (1, 5, 10), max_rank: int = 50, memory_mb: float = 512,
                        device: Optional[torch.device | str] = None) -> dict:
    """``rank1``/``rank5``/``rank10`` (for ``ranks``) and ``cmc`` (ranks 1..min(max_rank, gallery
    identities)) in percent, ``queries`` and ``queries_without_match``, of the features' distances."""
    return _single_shot(from_features(qf, gf, metric, device), rule, repeats, seed, ranks, max_rank, memory_mb,
                        q_pids=q_pids, g_pids=g_pids, q_camids=q_camids, g_camids=g_camids, q_clothes=q_clothes,
                        g_clothes=g_clothes)


def single_gallery_shot_distmat(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                                rule: str = "general", repeats: int = 10, seed: int = 0,
                                ranks: Sequence[int] = (1, 5, 10), max_rank: int = 50, memory_mb: float = 512,
                                device: Optional[torch.device | str] = None) -> dict:
    """:func:`single_gallery_shot` of a ``[Q, G]`` distance matrix (e.g. re-ranked)."""
    return _single_shot(from_matrix(distmat, device), rule, repeats, seed, ranks, max_rank, memory_mb,
                        q_pids=q_pids, g_pids=g_pids, q_camids=q_camids, g_camids=g_camids, q_clothes=q_clothes,
                        g_clothes=g_clothes)


def draws(seed: int, block: int, repeats: int, rows: int, identities: int) -> torch.Tensor:
    """Float64 ``[repeats, rows, identities]`` uniforms of query block ``block``."""
    return torch.from_numpy(np.random.default_rng((seed, block)).random((repeats, rows, identities)))


def _single_shot(dist: Distances, rule: str, repeats: int, seed: int, ranks: Sequence[int], max_rank: int,
                 memory_mb: float, **arrays) -> dict:
    if repeats < 1 or seed < 0 or max_rank < 1:
        raise CCReIDError(f"single-gallery-shot: repeats ({repeats}) and max_rank ({max_rank}) must be >= 1 "
                          f"and seed ({seed}) >= 0")
    labels = pair_labels(dist.num_q, dist.num_g, dist.device, rule, **arrays)
    pair_q, pair_g = same_identity_pairs(labels.q_pids, labels.g_pids)
    match = is_match(labels, pair_q, pair_g, rule)
    pos_q, pos_g = pair_q[match], pair_g[match]  # valid matches by query, then gallery index
    matches = torch.bincount(pos_q, minlength=dist.num_q)
    first = torch.cumsum(matches, 0) - matches
    order = torch.sort(labels.g_pids, stable=True).indices  # gallery by identity, then index
    ids, size = torch.unique_consecutive(labels.g_pids[order], return_counts=True)
    start = torch.cumsum(size, 0) - size
    own = torch.searchsorted(ids, labels.q_pids).clamp(max=len(ids) - 1)  # own identity's column, if any
    levels = min(max([max_rank, *ranks]), len(ids))  # a sample's rank is at most the identity count
    hist = torch.zeros(levels + 1, dtype=torch.int64, device=dist.device)  # ranks 1..levels, then beyond
    for block, q0 in enumerate(range(0, dist.num_q, QUERY_BLOCK)):
        q1 = min(q0 + QUERY_BLOCK, dist.num_q)
        rows = dist.rows(q0, q1, memory_mb)
        valid = matches[q0:q1] > 0
        cols = own[q0:q1, None]
        u = draws(seed, block, repeats, q1 - q0, len(ids)).to(dist.device)
        for r in range(repeats):
            sample = order[start + (u[r] * size).long().clamp(max=size - 1)]  # [rows, identities]
            pick = first[q0:q1] + (u[r].gather(1, cols)[:, 0] * matches[q0:q1]).long().clamp(
                max=(matches[q0:q1] - 1).clamp(min=0))
            positive = pos_g[pick.clamp(max=max(len(pos_g) - 1, 0))] if len(pos_g) else pick
            d, d_pos = rows.gather(1, sample), rows.gather(1, positive[:, None])
            beats = (d < d_pos) | ((d == d_pos) & (sample < positive[:, None]))
            beats.scatter_(1, cols, False)
            rank = 1 + beats.sum(1)[valid]
            hist += torch.bincount(rank.clamp(max=levels + 1) - 1, minlength=levels + 1)
    n = int((matches > 0).sum())
    cmc = torch.cumsum(hist[:levels], 0).double() / max(n * repeats, 1) * 100
    result = {"queries": n, "queries_without_match": dist.num_q - n}
    for k in ranks:
        result[f"rank{k}"] = float(cmc[min(k, levels) - 1]) if n else 0.0
    result["cmc"] = [float(v) for v in cmc[:max_rank]]
    return result
