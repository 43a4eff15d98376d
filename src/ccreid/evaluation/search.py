"""Nearest-neighbour search over gallery features (cosine similarity, largest first).

Features are L2-normalised and searched by inner product. With ``faiss`` installed
(``pip install faiss-cpu``) the index is a FAISS ``IndexFlatIP`` (``exact``),
``IndexIVFFlat`` (``ivf``) or ``IndexIVFPQ`` (``ivfpq``); without it, an exact torch
index with the same ``search`` interface is returned and flagged ``is_fallback``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation.distance import as_tensor

KINDS = ("exact", "ivf", "ivfpq")
DEFAULT_NPROBE = 32
FALLBACK_NOTE = "faiss is not installed: using exact torch search (pip install faiss-cpu for faster and IVF/PQ indexes)"
#: Queries and gallery rows scored at once by the torch index.
_QUERY_CHUNK = 256
_GALLERY_CHUNK = 65536


def normalized(features) -> np.ndarray:
    """C-contiguous float32 rows of unit L2 norm (zero rows stay zero), built chunk by chunk."""
    x = as_tensor(features).detach()
    if x.ndim != 2 or len(x) == 0:
        raise CCReIDError(f"features must be a non-empty 2-D array (N x D), got shape {tuple(x.shape)}")
    out = torch.empty(x.shape, dtype=torch.float32)
    for start in range(0, len(x), _GALLERY_CHUNK):
        rows = x[start:start + _GALLERY_CHUNK].to("cpu", torch.float32)
        if not bool(torch.isfinite(rows).all()):
            raise CCReIDError(f"features contain NaN or inf values (rows {start}..); re-extract them")
        out[start:start + _GALLERY_CHUNK] = torch.nn.functional.normalize(rows, dim=1)
    return out.numpy()


class FaissIndex:
    """A FAISS index over normalised features; ``search`` returns similarities and indices."""

    is_fallback = False
    note = ""

    def __init__(self, index, kind: str) -> None:
        self.index, self.kind = index, kind

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, queries, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``[N, k]`` cosine similarities (float32) and gallery indices (int64, -1 = none)."""
        q = _queries(queries, self.dim)
        scores, indices = self.index.search(q, max(1, min(k, self.ntotal)))
        return scores, indices.astype(np.int64)


class TorchIndex:
    """Exact inner-product search in torch (the fallback without faiss)."""

    kind = "exact"
    is_fallback = True
    note = FALLBACK_NOTE

    def __init__(self, features) -> None:
        self.features = torch.from_numpy(normalized(features))

    @property
    def ntotal(self) -> int:
        return len(self.features)

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def search(self, queries, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``[N, k]`` cosine similarities (float32) and gallery indices (int64), ties to the lower index."""
        q = torch.from_numpy(_queries(queries, self.dim))
        k = max(1, min(k, self.ntotal))
        scores = torch.empty(len(q), k)
        indices = torch.empty(len(q), k, dtype=torch.int64)
        for q0 in range(0, len(q), _QUERY_CHUNK):
            best_s, best_i = scores[:0], indices[:0]
            for g0 in range(0, self.ntotal, _GALLERY_CHUNK):
                chunk = q[q0:q0 + _QUERY_CHUNK] @ self.features[g0:g0 + _GALLERY_CHUNK].T
                # earlier candidates have lower indices, so a stable sort keeps ties by index
                cand_s = torch.cat([best_s, chunk], 1) if g0 else chunk
                cand_i = torch.cat([best_i, torch.arange(g0, g0 + chunk.shape[1]).expand_as(chunk)], 1) \
                    if g0 else torch.arange(chunk.shape[1]).expand_as(chunk)
                top = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k]
                best_s, best_i = cand_s.gather(1, top), cand_i.gather(1, top)
            scores[q0:q0 + _QUERY_CHUNK], indices[q0:q0 + _QUERY_CHUNK] = best_s, best_i
        return scores.numpy(), indices.numpy()


def _queries(queries, dim: int) -> np.ndarray:
    q = normalized(queries)
    if q.shape[1] != dim:
        raise CCReIDError(f"query features have dimension {q.shape[1]} but the index has {dim}")
    return q


def import_faiss():
    """The ``faiss`` module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def build_index(features, kind: str = "exact", nlist: Optional[int] = None, m: Optional[int] = None,
                nprobe: Optional[int] = None):
    """Index ``[G, D]`` gallery features for cosine search.

    ``nlist``: IVF cells (default ``sqrt(G)``, at most ``G / 39`` so that k-means has
    39 points per cell); ``nprobe``: cells visited per query (default ``DEFAULT_NPROBE``);
    ``m``: PQ sub-quantisers, dividing ``D`` (default ``D / 8``, 8 bits each).
    """
    if kind not in KINDS:
        raise CCReIDError(f"option kind: unknown index kind {kind!r} (use {', '.join(KINDS)})")
    for name, value in (("nlist", nlist), ("m", m), ("nprobe", nprobe)):
        if value is not None and value < 1:
            raise CCReIDError(f"option {name} must be >= 1, got {value}")
    x = normalized(features)
    faiss = import_faiss()
    if faiss is None:
        return TorchIndex(x)
    count, dim = x.shape
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = nlist or max(1, min(int(math.sqrt(count)), count // 39))
        if nlist > count:
            raise CCReIDError(f"option nlist must be at most the gallery size {count}, got {nlist}")
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            m = m or max(1, dim // 8)
            if count < 256:
                raise CCReIDError(f"kind ivfpq needs at least 256 gallery features to train, got {count} (use exact)")
            if dim % m:
                raise CCReIDError(f"option m must divide the feature dimension {dim}, got {m}")
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = min(nlist, nprobe or DEFAULT_NPROBE)
    index.add(x)
    return FaissIndex(index, kind)
