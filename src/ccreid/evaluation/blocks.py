"""Query-gallery distances block by block, from features or from a ``[Q, G]`` matrix.

For the metrics that read distances pair by pair (verification rates, single-gallery-shot):
the values are the float32 distances of :mod:`ccreid.evaluation.distance` (exact, the same
whatever the block shape) or the matrix's entries (e.g. after re-ranking), never the
whole ``Q x G`` matrix at once.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Tuple

import numpy as np
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation.distance import as_tensor, check_metric, chunk_distance, prepare
from ccreid.evaluation.ranking import BYTES_PER_FEATURE, chunk_sizes

#: Working bytes per distance of a block (the float64 product, the float32 value, masks
#: and gathered values); per gallery feature value: ranking's BYTES_PER_FEATURE.
BYTES_PER_DISTANCE = 32


class Distances:
    """Float32 distances ``block(q0, q1, g0, g1)`` of a query-gallery pair set on ``device``."""

    def __init__(self, num_q: int, num_g: int, dim: int, device: torch.device,
                 block: Callable[[int, int, int, int], torch.Tensor]) -> None:
        self.num_q, self.num_g, self.dim, self.device, self.block = num_q, num_g, dim, device, block

    def columns(self, rows: int, memory_mb: float) -> int:
        """Gallery items per block for ``rows`` queries within ``memory_mb``."""
        per_column = rows * BYTES_PER_DISTANCE + self.dim * BYTES_PER_FEATURE
        return max(1, min(self.num_g, int(memory_mb * 2**20 / per_column)))

    def chunks(self, memory_mb: float) -> Iterator[Tuple[int, int, torch.Tensor]]:
        """Every ``(q0, g0, block)`` covering the matrix, blocks fitted to ``memory_mb``."""
        rows, cols = chunk_sizes(self.num_q, self.num_g, self.dim, None, None, memory_mb, BYTES_PER_DISTANCE)
        for g0 in range(0, self.num_g, cols):
            for q0 in range(0, self.num_q, rows):
                yield q0, g0, self.block(q0, min(q0 + rows, self.num_q), g0, min(g0 + cols, self.num_g))

    def rows(self, q0: int, q1: int, memory_mb: float) -> torch.Tensor:
        """Float32 ``[q1 - q0, G]`` distances of queries ``q0..q1-1``, built in gallery blocks."""
        cols = self.columns(q1 - q0, memory_mb)
        if cols >= self.num_g:
            return self.block(q0, q1, 0, self.num_g)
        out = torch.empty(q1 - q0, self.num_g, dtype=torch.float32, device=self.device)
        for g0 in range(0, self.num_g, cols):
            out[:, g0:g0 + cols] = self.block(q0, q1, g0, min(g0 + cols, self.num_g))
        return out


def from_features(qf, gf, metric: str = "cosine", device: Optional[torch.device | str] = None) -> Distances:
    """Distances of query features ``qf`` to gallery features ``gf`` (gallery prepared per block)."""
    check_metric(metric)
    qf = as_tensor(qf)
    gf = gf if hasattr(gf, "shape") else np.asarray(gf)
    device = torch.device(device) if device is not None else qf.device
    queries = prepare(qf, metric, device, name="qf")
    if len(queries) == 0 or len(gf) == 0:
        raise CCReIDError(f"{'qf' if len(queries) == 0 else 'gf'} is empty: nothing to evaluate")
    if len(gf.shape) != 2 or gf.shape[1] != qf.shape[1]:
        raise CCReIDError(f"gf has shape {tuple(gf.shape)} but qf has feature dimension {qf.shape[1]}")

    def block(q0: int, q1: int, g0: int, g1: int) -> torch.Tensor:
        gallery = prepare(gf[g0:g1], metric, device, name=f"gf (rows {g0}..{g1 - 1})")
        return chunk_distance(queries[q0:q1], gallery, metric)

    return Distances(len(queries), len(gf), qf.shape[1], device, block)


def from_matrix(distmat, device: Optional[torch.device | str] = None) -> Distances:
    """Entries of a ``[Q, G]`` distance matrix (tensor or array), read block by block."""
    if getattr(distmat, "ndim", None) != 2:
        raise CCReIDError("distmat must be a 2-D [queries x gallery] matrix")
    matrix = as_tensor(distmat)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise CCReIDError(f"distmat has shape {tuple(matrix.shape)}: nothing to evaluate")
    device = torch.device(device) if device is not None else matrix.device

    def block(q0: int, q1: int, g0: int, g1: int) -> torch.Tensor:
        out = matrix[q0:q1, g0:g1].to(device=device, dtype=torch.float32)
        if not bool(torch.isfinite(out).all()):
            raise CCReIDError("distmat contains NaN or inf values")
        return out

    return Distances(matrix.shape[0], matrix.shape[1], 0, device, block)
