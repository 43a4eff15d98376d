"""Gallery indexes on disk and top-k search (``ccreid index`` / ``ccreid search``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ccreid.errors import CCReIDError
from ccreid.evaluation.search import FaissIndex, TorchIndex, build_index
from ccreid.runs.features_io import load_index, load_side, save_index


def index_features(features: str | Path, out: str | Path, kind: str = "exact", nlist: Optional[int] = None,
                   m: Optional[int] = None, nprobe: Optional[int] = None) -> FaissIndex | TorchIndex:
    """Index the gallery rows (``gf``) of a features file at ``out`` with their paths and labels."""
    gallery = load_side(features, "g")
    index = build_index(gallery.pop("f"), kind, nlist, m, nprobe)
    save_index(index, out, {key: value.tolist() for key, value in gallery.items()} | {"features": str(features)})
    return index


def query_features(features: Optional[str | Path] = None, images: Sequence[str] = (),
                   weights: Optional[str | Path] = None, device: str = "auto") -> tuple[np.ndarray, List[str]]:
    """Query features and names: the ``qf`` rows of a features file (else its ``gf``), or
    ``images`` embedded with ``weights``."""
    if (features is None) == (not images):
        raise CCReIDError("pass exactly one of --features FILE.npz and --images IMAGE [IMAGE ...]")
    if features is not None:
        side = load_side(features, "q", "g")
        names = side.get("paths", np.arange(len(side["f"]))).tolist()
        return side["f"], [str(n) for n in names]
    if weights is None:
        raise CCReIDError("--images needs --weights (the checkpoint that built the gallery features)")
    from ccreid.deploy import load

    folders = [p for p in images if Path(p).is_dir()]
    if folders:
        raise CCReIDError(f"--images: {folders[0]} is a folder; pass image files (e.g. {folders[0]}/*.jpg)")
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        raise CCReIDError(f"--images: {missing[0]} does not exist")
    return load(weights, device).embed(list(images)).numpy(), list(images)


def search_index(index_path: str | Path, queries: np.ndarray, names: Sequence[str], k: int = 10) -> dict:
    """Top-``k`` gallery items per query: ``{"index", "backend", "results": [{"query", "matches": [...]}]}``,
    each match ``{"rank", "index", "score"}`` plus ``path``/``pid``/``camid``/``clothes`` when indexed."""
    if k < 1:
        raise CCReIDError(f"option -k must be >= 1, got {k}")
    index, meta = load_index(index_path)
    scores, indices = index.search(queries, k)
    columns = {key: meta[key] for key in ("paths", "pids", "camids", "clothes") if isinstance(meta.get(key), list)}
    singular = {"paths": "path", "pids": "pid", "camids": "camid", "clothes": "clothes"}
    results = []
    for name, row_scores, row_indices in zip(names, scores, indices):
        matches = [{"rank": rank, "index": int(i), "score": round(float(s), 6)}
                   | {singular[key]: values[i] for key, values in columns.items()}
                   for rank, (s, i) in enumerate(zip(row_scores, row_indices), 1) if i >= 0]
        results.append({"query": name, "matches": matches})
    return {"index": str(index_path), "backend": "torch" if index.is_fallback else f"faiss {index.kind}",
            "note": index.note, "results": results}
