"""Feature files (``.npz``) and search indexes on disk, validated on load, written atomically.

A features file holds ``qf``, ``gf`` (float, ``N x D``), ``q_pids``, ``g_pids``,
``q_camids``, ``g_camids`` and optionally ``q_clothes``, ``g_clothes`` (integers, one per
row), plus any extra arrays (e.g. image paths). A file written by ``ccreid extract --protocol``
also records the protocol's rule (:data:`PROTOCOL_KEY`), which ``ccreid eval`` then uses; folder
and CSV extracts without a query split or labels serve ``ccreid index`` / ``search``. An index is saved as ``PATH`` (a FAISS
index, or the normalised features of the torch fallback as ``.npy``) and ``PATH.json``
(backend, kind, size and the caller's metadata such as image paths and ids). A training
run also keeps its final test features (:data:`TEST_FEATURES_NAME`) for its report.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ccreid.errors import CCReIDError, first_line
from ccreid.evaluation.search import FaissIndex, TorchIndex, import_faiss
from ccreid.files import require_file
from ccreid.runtime.io import atomic_path, write_json

FEATURE_KEYS = ("qf", "gf")
LABEL_KEYS = ("q_pids", "g_pids", "q_camids", "g_camids")
CLOTHES_KEYS = ("q_clothes", "g_clothes")
#: the rule (general, sc, cc) of the protocol a file was extracted for
PROTOCOL_KEY = "protocol"
#: Rows checked for NaN/inf at once (bounds the temporary mask).
_CHECK_ROWS = 65536


def _read_npz(path: Path) -> Dict[str, np.ndarray]:
    require_file(path, "features file", "write one with `ccreid extract`")
    if not zipfile.is_zipfile(path):
        raise CCReIDError(f"features file {path} is not an .npz archive (write one with `ccreid extract` or np.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CCReIDError(f"features file {path} is not a readable .npz without pickled objects ({err})")


def _check_features(path: Path, key: str, x: np.ndarray) -> None:
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise CCReIDError(f"{path}: key {key!r} must be a 2-D float array (N x D), got {x.dtype} {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise CCReIDError(f"{path}: key {key!r} is empty (shape {x.shape})")
    for start in range(0, len(x), _CHECK_ROWS):
        bad = ~np.isfinite(x[start:start + _CHECK_ROWS]).all(axis=1)
        if bad.any():
            raise CCReIDError(f"{path}: key {key!r} has NaN or inf values (first in row {start + int(bad.argmax())})")


def load_features(path: str | Path, protocol: Optional[str] = None) -> Tuple[str, Dict[str, np.ndarray]]:
    """The rule to score the ``.npz`` at ``path`` with (:func:`features_protocol`: the protocol it
    was extracted for, else ``protocol``, else ``general``) and every array of it, validated for
    that rule (clothes ids for ``sc``/``cc``). Any problem raises :class:`CCReIDError` naming the
    file and the key.
    """
    path = Path(path)
    arrays = _read_npz(path)
    rule = features_protocol(path, arrays, protocol)
    return rule, _validated(path, arrays, require_clothes=rule != "general")


def _validated(path: Path, arrays: Dict[str, np.ndarray], require_clothes: bool) -> Dict[str, np.ndarray]:
    """``arrays`` after the checks of :func:`load_features`."""
    needed = FEATURE_KEYS + LABEL_KEYS + (CLOTHES_KEYS if require_clothes else ())
    missing = [key for key in needed if key not in arrays]
    if missing:
        raise CCReIDError(_missing_keys(path, arrays, missing, needed))
    present = [key for key in CLOTHES_KEYS if key in arrays]
    if len(present) == 1:
        other = CLOTHES_KEYS[1 - CLOTHES_KEYS.index(present[0])]
        raise CCReIDError(f"{path}: key {present[0]!r} is present but {other!r} is missing")
    for key in FEATURE_KEYS:
        _check_features(path, key, arrays[key])
    if arrays["qf"].shape[1] != arrays["gf"].shape[1]:
        raise CCReIDError(f"{path}: key 'gf' has dimension {arrays['gf'].shape[1]} "
                          f"but 'qf' has {arrays['qf'].shape[1]}")
    for key in LABEL_KEYS + tuple(present):
        labels, rows = arrays[key], len(arrays["qf" if key.startswith("q_") else "gf"])
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise CCReIDError(f"{path}: key {key!r} must be a 1-D integer array, got {labels.dtype} {labels.shape}")
        if len(labels) != rows:
            raise CCReIDError(f"{path}: key {key!r} has {len(labels)} entries but "
                              f"{'qf' if key.startswith('q_') else 'gf'} has {rows} rows")
    return arrays


def _missing_keys(path: Path, arrays: Dict[str, np.ndarray], missing: List[str], needed: Tuple[str, ...]) -> str:
    """Why ``ccreid eval`` cannot score the file: an extract of images without a query split or
    labels (kept for ``ccreid index``), or a file lacking keys."""
    if "gf" in arrays and "qf" not in arrays:
        return (f"features file {path} holds a folder or list extract (gallery features only, no query/gallery "
                f"split), not a protocol extract; `ccreid eval` needs queries and a gallery with person and camera "
                f"ids: write one with `ccreid extract --weights W --protocol cc --out F`, or from a CSV with "
                f"split (query/gallery), pid and camid columns (this file serves `ccreid index`)")
    if "g_paths" in arrays and set(missing) <= set(LABEL_KEYS + CLOTHES_KEYS):
        columns = "pid, camid" + (", clothes_id" if set(missing) & set(CLOTHES_KEYS) else "")
        return (f"features file {path} holds a list extract without {', '.join(missing)} (its CSV lacked those "
                f"columns); extract with --protocol, or from a CSV with split, {columns} columns")
    return f"{path}: missing key {missing[0]!r} (a features file needs {', '.join(needed)})"


def features_protocol(path: str | Path, arrays: Dict[str, np.ndarray], requested: Optional[str]) -> str:
    """The rule to score ``arrays`` with: the one the file was extracted for, else ``requested``,
    else ``general``; a ``requested`` rule other than the recorded one is an error."""
    recorded = str(arrays[PROTOCOL_KEY]) if PROTOCOL_KEY in arrays else None
    if recorded is not None and requested not in (None, recorded):
        raise CCReIDError(f"option --protocol {requested}: features file {path} holds the query and gallery of "
                          f"protocol {recorded} (ccreid extract --protocol {recorded}); evaluate it with --protocol "
                          f"{recorded} (or without --protocol), or extract with --protocol {requested}")
    return recorded or requested or "general"


def load_side(path: str | Path, *sides: str) -> Dict[str, np.ndarray]:
    """The arrays of the first of ``sides`` (``"q"``, ``"g"``) the features file holds,
    keys without the prefix.

    ``f`` (the features) is validated; ``paths``, ``pids``, ``camids`` and ``clothes``
    come along when present, one per row.
    """
    path = Path(path)
    arrays = _read_npz(path)
    side = next((s for s in sides if f"{s}f" in arrays), None)
    if side is None:
        raise CCReIDError(f"{path}: missing key {' or '.join(repr(s + 'f') for s in sides)} "
                          "(write the file with `ccreid extract`)")
    key = f"{side}f"
    _check_features(path, key, arrays[key])
    out = {"f": arrays[key]}
    for name in ("paths", "pids", "camids", "clothes"):
        full = f"{side}_{name}"
        values = arrays.get(full)
        if values is not None:
            if values.shape != (len(arrays[key]),):
                raise CCReIDError(f"{path}: key {full!r} has shape {values.shape}, "
                                  f"expected one entry per row of {key!r} ({len(arrays[key])})")
            out[name] = values
    return out


def save_features(path: str | Path, **arrays) -> Path:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz``, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{key: np.asarray(value) for key, value in arrays.items()})
    return path


def _metadata_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_index(index: FaissIndex | TorchIndex, path: str | Path, metadata: Optional[dict] = None) -> Path:
    """Write ``index`` to ``path`` and ``path.json`` (index facts + ``metadata``).

    List-like metadata values (image paths, person ids) must have one entry per indexed item.
    """
    path = Path(path)
    items = {key: np.asarray(value).tolist() if isinstance(value, np.ndarray) else value
             for key, value in (metadata or {}).items()}
    for key, value in items.items():
        if isinstance(value, (list, tuple)) and len(value) != index.ntotal:
            raise CCReIDError(f"index metadata {key!r} has {len(value)} entries but the index holds {index.ntotal}")
    backend = "torch" if isinstance(index, TorchIndex) else "faiss"
    with atomic_path(path) as tmp:
        if backend == "torch":
            with open(tmp, "wb") as handle:
                np.save(handle, index.features.numpy())
        else:
            import_faiss().write_index(index.index, str(tmp))
    write_json(_metadata_path(path), {"backend": backend, "kind": index.kind, "dim": index.dim,
                                      "ntotal": index.ntotal, "metadata": items})
    return path


def load_index(path: str | Path) -> Tuple[FaissIndex | TorchIndex, dict]:
    """The index saved at ``path`` and its metadata (what was passed to :func:`save_index`)."""
    path, meta_path = Path(path), _metadata_path(Path(path))
    for p in (path, meta_path):
        require_file(p, "index file", "build one with `ccreid index`")
    try:
        info = json.loads(meta_path.read_text())
        backend, kind, ntotal = info["backend"], info["kind"], int(info["ntotal"])
    except (ValueError, KeyError, TypeError) as err:
        raise CCReIDError(f"index metadata {meta_path} is not valid ({err}); rebuild the index")
    if backend == "torch":
        try:
            index = TorchIndex(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise CCReIDError(f"index file {path} is not readable ({err}); rebuild the index")
    else:
        faiss = import_faiss()
        if faiss is None:
            raise CCReIDError(f"index file {path} is a FAISS index: install faiss-cpu (pip install faiss-cpu)")
        try:
            index = FaissIndex(faiss.read_index(str(path)), kind)
        except RuntimeError as err:
            raise CCReIDError(f"index file {path} is not a readable FAISS index ({first_line(err)})")
    if index.ntotal != ntotal:
        raise CCReIDError(f"index file {path} holds {index.ntotal} items but {meta_path} says {ntotal}; rebuild it")
    return index, info.get("metadata", {})


#: The final evaluation's test features, kept beside a run's weights for ``ccreid report``.
TEST_FEATURES_NAME = "test_features.safetensors"


def save_test_features(path: Path, paths: List[str], feats: torch.Tensor, flip: bool) -> None:
    """``feats[i]`` is the feature of image ``paths[i]`` (``flip``: flip-averaged); atomic write."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({"features": feats.float().contiguous()}, str(tmp),
                  metadata={"paths": json.dumps(paths), "flip": str(bool(flip))})


def load_test_features(path: Path, weights: Path, flip: bool) -> Optional[Dict[str, torch.Tensor]]:
    """Image path -> feature from :func:`save_test_features`, or ``None`` where the file is
    missing, unreadable, older than ``weights`` or made with another ``flip``."""
    from safetensors import safe_open

    try:
        if path.stat().st_mtime < Path(weights).stat().st_mtime:
            return None
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("flip") != str(bool(flip)):
                return None
            feats = f.get_tensor("features")
        paths = json.loads(meta["paths"])
    except (OSError, KeyError, ValueError, RuntimeError):  # absent or damaged: extract again
        return None
    return dict(zip(paths, feats)) if len(paths) == len(feats) else None
