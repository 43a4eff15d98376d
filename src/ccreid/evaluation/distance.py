"""Query-gallery distances whose float32 values do not depend on the chunking or device.

A distance is accumulated in float64 and then rounded onto a per-query float32 grid:
cosine ``d = f32(2 - s) - 1`` (``s`` the cosine similarity; grid 2^-23 ~ 1.2e-7, the
resolution of a float32 similarity) and euclidean ``d = sqrt(f32(|q-g|^2 + t) - t)``
with ``t = f32(|q|^2)``. The float64 rounding error (~1e-15 relative) is far below
that grid, so the value of a pair is the same whichever BLAS kernel, chunk shape or
device computed it: exactly equal distances stay equal and ties are broken by gallery
index (:mod:`ccreid.evaluation.ranking`). Rounding is monotone, so the order of
distinct distances is kept up to that grid.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ccreid.errors import CCReIDError

METRICS = ("cosine", "euclidean")


def as_tensor(x, device: Optional[torch.device] = None) -> torch.Tensor:
    """A tensor view of ``x`` (tensor, NumPy array or sequence), moved to ``device``."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if device is None else t.to(device)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise CCReIDError(f"option metric: unknown {metric!r} (use {' or '.join(METRICS)})")


def prepare(features, metric: str, device: Optional[torch.device] = None, name: str = "features") -> torch.Tensor:
    """Float64 rows for :func:`chunk_distance` / :func:`paired_distance`.

    Cosine: the L2-normalised rows. Euclidean: the rows plus two columns, the squared
    norm and its float32 rounding (the query's grid offset ``t``).
    """
    x = as_tensor(features, device).to(torch.float64)
    if x.ndim != 2:
        raise CCReIDError(f"{name} must be a 2-D array (N x D), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise CCReIDError(f"{name} contains NaN or inf values; re-extract the features")
    if metric == "cosine":
        return torch.nn.functional.normalize(x, dim=1)
    sq = (x * x).sum(1, keepdim=True)
    return torch.cat([x, sq, sq.to(torch.float32).to(torch.float64)], dim=1)


def _finish(raw: torch.Tensor, offset, metric: str) -> torch.Tensor:
    """Float64 similarity (cosine) or squared distance (euclidean) -> float32 distance."""
    if metric == "cosine":
        return raw.neg_().add_(2.0).to(torch.float32).sub_(1.0)
    on_grid = raw.add_(offset).to(torch.float32).to(torch.float64)
    return on_grid.sub_(offset).clamp_(min=0.0).sqrt_().to(torch.float32)


def chunk_distance(q: torch.Tensor, g: torch.Tensor, metric: str) -> torch.Tensor:
    """Float32 ``[len(q), len(g)]`` distances of rows from :func:`prepare`."""
    if metric == "cosine":
        return _finish(q @ g.T, None, metric)
    sq = (q[:, :-2] @ g[:, :-2].T).mul_(-2.0).add_(q[:, -2:-1]).add_(g[:, -2][None, :])
    return _finish(sq, q[:, -1:], metric)


def paired_distance(q: torch.Tensor, g: torch.Tensor, metric: str) -> torch.Tensor:
    """Float32 distance of row ``i`` of ``q`` to row ``i`` of ``g`` (rows from :func:`prepare`)."""
    if metric == "cosine":
        return _finish((q * g).sum(1), None, metric)
    sq = (q[:, :-2] * g[:, :-2]).sum(1).mul_(-2.0).add_(q[:, -2]).add_(g[:, -2])
    return _finish(sq, q[:, -1], metric)


def fast_cosine_bound(dim: int, device: torch.device) -> Optional[float]:
    """Bound on ``|approx - exact|`` for :func:`fast_cosine`, or None where float32 matmul
    may run at reduced precision (TF32/bf16 settings, other devices)."""
    if device.type not in ("cpu", "cuda") or torch.get_float32_matmul_precision() != "highest":
        return None
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return None
    # float32 dot products of unit vectors err by at most dim * 2^-24 (any summation order);
    # rounding the unit vectors and the grid add a few 2^-24: take 4x that, with margin.
    return (dim + 16) * 2.0**-22


def fast_cosine(q32: torch.Tensor, g32: torch.Tensor) -> torch.Tensor:
    """Float32 ``1 - q @ g.T`` of float32 unit rows: within :func:`fast_cosine_bound` of exact."""
    return (q32 @ g32.T).neg_().add_(1.0)


def pairwise_distance(qf, gf, metric: str = "cosine") -> torch.Tensor:
    """Full float32 ``[Q, G]`` matrix: ``cosine`` (1 - cosine similarity) or ``euclidean``."""
    check_metric(metric)
    q = as_tensor(qf)
    return chunk_distance(prepare(q, metric, name="qf"), prepare(gf, metric, q.device, name="gf"), metric)
