"""The user's cache of exported ONNX models (``--backend auto`` / ``onnxruntime``).

A network is exported once and the file reused by every later extraction of the same
network: ``<cache>/onnx/<key>.onnx``, where ``<cache>`` is ``$CCREID_CACHE_DIR``, else
``$XDG_CACHE_HOME/ccreid``, else ``~/.cache/ccreid`` (never the weights' folder), and the key
is a SHA-256 of everything the exported graph depends on (:func:`export_key`): the weights
(every parameter and buffer), the network's structure and settings (module tree and their
plain attributes, e.g. the eval feature), the input size, the opset, and the code (versions
of torch and onnxscript, the source of ccreid and of every module class in the network).
Entries are written atomically; deleting the folder is always safe.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import os
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from ccreid.runtime.io import atomic_path

CACHE_ENV = "CCREID_CACHE_DIR"
_PLAIN = (bool, int, float, str, type(None))


def cache_dir() -> Path:
    """``$CCREID_CACHE_DIR``, else ``$XDG_CACHE_HOME/ccreid``, else ``~/.cache/ccreid``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "ccreid"


def _hash_files(digest, paths: Iterable[Path]) -> None:
    for path in sorted(set(paths)):
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())


@functools.lru_cache(maxsize=None)
def _package_code() -> bytes:
    """SHA-256 of ccreid's own source files (read once per process)."""
    digest = hashlib.sha256()
    _hash_files(digest, Path(__file__).resolve().parents[1].rglob("*.py"))
    return digest.digest()


def _source_file(module: nn.Module):
    """The file defining ``module``'s class (None for a class without one, e.g. made by ``exec``)."""
    try:
        return inspect.getsourcefile(type(module))
    except TypeError:
        return None


def _settings(module: nn.Module) -> list:
    """A module's plain attributes (numbers, strings, tuples of them): strides, the eval feature..."""
    def plain(v) -> bool:
        return isinstance(v, _PLAIN) or (isinstance(v, tuple) and all(isinstance(x, _PLAIN) for x in v))
    return sorted((k, repr(v)) for k, v in vars(module).items() if k != "training" and plain(v))


def export_key(model: nn.Module, size: tuple, opset: int) -> str:
    """The cache key of ``model`` exported for inputs of ``size`` after the batch axis (``(3, H, W)``, clips
    ``(T, 3, H, W)``) with ``opset`` (see the module docstring)."""
    import onnxscript

    digest = hashlib.sha256(repr((tuple(size), opset, torch.__version__, onnxscript.__version__)).encode())
    digest.update(_package_code())
    _hash_files(digest, (Path(f) for f in map(_source_file, model.modules()) if f))
    for name, module in model.named_modules():
        digest.update(repr((name, type(module).__qualname__, _settings(module))).encode())
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        data = tensor.detach().cpu().contiguous()
        digest.update(repr((name, str(data.dtype), tuple(data.shape))).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def cached_file(key: str, write: Callable[[Path], None]) -> Path:
    """``<cache>/onnx/<key>.onnx``, written atomically by ``write(temp_path)`` when missing."""
    path = cache_dir() / "onnx" / f"{key}.onnx"
    if not path.is_file():
        with atomic_path(path, f"set {CACHE_ENV} to a writable folder") as tmp:
            write(tmp)
    return path
