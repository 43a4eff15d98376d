"""Verification rates: TPR at FPR 1e-4, 1e-3 and 1e-2 over query-gallery pairs (fast-reid's ROC).

Pairs are every query with every gallery item. Positives: same identity and a valid match
under the rule (:func:`~ccreid.evaluation.ranking.valid_match`: never the same camera; the
``cc``/``sc`` clothes conditions); the other same-identity pairs are left out, as fast-reid
leaves out same identity + same camera. Negatives: every pair of different identities,
whatever the camera. A pair is accepted when its distance is below a threshold ``t``.

For a target FPR ``10^-e`` and ``N`` negatives, ``t`` is the ``(N // 10^e + 1)``-th smallest
negative distance: the largest threshold that accepts at most ``N // 10^e`` negatives (ties
included). TPR is the share of positives strictly below it, in percent: the best TPR among
operating points whose FPR does not exceed the target. Without negative (or positive) pairs
a false-positive rate (or a TPR) does not exist: the rates are then ``None``. Exact: the distances are streamed
in blocks and only the ``N // 100 + 1`` smallest negative distances are kept.
"""

from __future__ import annotations

from typing import Optional

import torch

from ccreid.evaluation.blocks import Distances, from_features, from_matrix
from ccreid.evaluation.ranking import pair_labels, same_identity_pairs, valid_match

#: FPR targets as powers of ten: 1e-4, 1e-3, 1e-2 (fast-reid's).
FPR_EXPONENTS = (4, 3, 2)


def rate_key(exponent: int) -> str:
    """Result key of the TPR at FPR ``10^-exponent``: ``tpr@fpr=1e-04``."""
    return f"tpr@fpr=1e-{exponent:02d}"


def verification_rates(qf, gf, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                       rule: str = "general", metric: str = "cosine", memory_mb: float = 512,
                       device: Optional[torch.device | str] = None) -> dict:
    """``tpr@fpr=1e-04``, ``tpr@fpr=1e-03``, ``tpr@fpr=1e-02`` (percent; ``None`` without negative or
    positive pairs), ``positive_pairs`` and ``negative_pairs`` of the features' distances (arguments as :func:`~ccreid.evaluation.evaluate`)."""
    dist = from_features(qf, gf, metric, device)
    return _rates(dist, rule, memory_mb, q_pids=q_pids, g_pids=g_pids, q_camids=q_camids, g_camids=g_camids,
                  q_clothes=q_clothes, g_clothes=g_clothes)


def verification_rates_distmat(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                               rule: str = "general", memory_mb: float = 512,
                               device: Optional[torch.device | str] = None) -> dict:
    """:func:`verification_rates` of a ``[Q, G]`` distance matrix (e.g. re-ranked)."""
    return _rates(from_matrix(distmat, device), rule, memory_mb, q_pids=q_pids, g_pids=g_pids, q_camids=q_camids,
                  g_camids=g_camids, q_clothes=q_clothes, g_clothes=g_clothes)


def _rates(dist: Distances, rule: str, memory_mb: float, **arrays) -> dict:
    labels = pair_labels(dist.num_q, dist.num_g, dist.device, rule, **arrays)
    negatives = dist.num_q * dist.num_g - len(same_identity_pairs(labels.q_pids, labels.g_pids)[0])
    accepted = {e: negatives // 10**e for e in FPR_EXPONENTS}  # negatives allowed below the threshold
    keep = min(negatives, max(accepted.values()) + 1)
    smallest = torch.empty(0, device=dist.device)
    positives = []
    for q0, g0, block in dist.chunks(memory_mb):
        q = slice(q0, q0 + block.shape[0])
        g = slice(g0, g0 + block.shape[1])
        same = labels.q_pids[q, None] == labels.g_pids[None, g]
        same_camera = labels.q_camids[q, None] == labels.g_camids[None, g]
        same_clothes = labels.q_clothes[q, None] == labels.g_clothes[None, g] if rule != "general" else None
        positives.append(block[same & valid_match(rule, same_camera, same_clothes)])
        if keep == 0:
            continue
        other = block[~same]
        if len(smallest) == keep:  # a value equal to the kept maximum changes no kept value
            other = other[other < smallest.max()]
        merged = torch.cat([smallest, other])
        smallest = merged if len(merged) <= keep else torch.topk(merged, keep, largest=False, sorted=False).values
    smallest = torch.sort(smallest).values
    pos = torch.cat(positives)
    result = {}
    defined = len(pos) > 0 and negatives > 0  # a rate needs positives, its threshold a negative
    for e, allowed in accepted.items():  # allowed < negatives: the threshold is a kept negative
        result[rate_key(e)] = float((pos < smallest[allowed]).double().mean() * 100) if defined else None
    return result | {"positive_pairs": len(pos), "negative_pairs": negatives}
