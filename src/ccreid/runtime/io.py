"""Atomic file writes and one-line errors for failed writes (a full disk, a read-only folder ...)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from ccreid.errors import CCReIDError, first_line


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: errno -> (the cause in plain words, what to do)
WRITE_ERRORS = {
    errno.ENOSPC: ("no space left on device", "free some space or choose another --out"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose another --out"),
    errno.EROFS: ("read-only file system", "choose a writable --out"),
    errno.EACCES: ("permission denied", "choose a folder you may write, or change its permissions"),
    errno.EPERM: ("permission denied", "choose a folder you may write, or change its permissions"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another --out"),
    errno.EISDIR: ("it is a folder", "pass a file path"),
}


def _errno_of(err: BaseException) -> Optional[int]:
    """The OS error behind ``err``: its errno, or what a library's message says: safetensors
    ``(os error 28)``, torch's zip writer ``unexpected pos`` (a full disk)."""
    if getattr(err, "errno", None) is not None:
        return err.errno
    found = re.search(r"os error (\d+)", str(err))
    if found:
        return int(found.group(1))
    return errno.ENOSPC if "unexpected pos" in str(err) else None


def write_failure(path: str | os.PathLike, err: BaseException, todo: Optional[str] = None) -> CCReIDError:
    """A one-line error for a failed write of ``path``: the cause in plain words and what to do
    (``todo``, where the usual advice, about ``--out``, does not fit)."""
    code = _errno_of(err)
    cause, usual = WRITE_ERRORS.get(code, (getattr(err, "strerror", None) or first_line(err), "check the path"))
    return CCReIDError(f"cannot write {path}: {cause}; {todo or usual} (files written before are intact)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, todo: Optional[str] = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only on success. A failed
    write leaves ``path`` as it was and no temp file, and is a one-line :func:`write_failure`
    (saying ``todo``, when given)."""
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except CCReIDError:
        raise
    except Exception as err:  # libraries wrap OS errors in their own types
        if _errno_of(err) is None:
            raise
        raise write_failure(target, err, todo) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indented, UTF-8)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
