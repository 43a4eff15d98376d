"""Where commands may write: never over results the user already has (unless ``--overwrite``),
never over a training run from ``ccreid test``, and one writer per run folder at a time."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator, Optional

from ccreid.errors import CCReIDError
from ccreid.runs.checkpoint import WEIGHTS_NAME
from ccreid.runs.resume import CHECKPOINTS

logger = logging.getLogger(__name__)

LOCK_NAME = ".ccreid.lock"
RESULTS_NAME = "results.json"


def training_run_in(folder: Path) -> Optional[str]:
    """What marks ``folder`` as a training run (weights or checkpoints), or None."""
    for name in (WEIGHTS_NAME, CHECKPOINTS):
        if (folder / name).exists():
            return name
    return None


def results_in(folder: Path) -> Optional[str]:
    """What results ``folder`` holds (a run, a test, a demo, an ablation), or None."""
    return training_run_in(folder) or (RESULTS_NAME if (folder / RESULTS_NAME).exists() else None)


def refuse_results(folder: str | Path, overwrite: bool, option: str = "--out") -> None:
    """A one-line error when ``folder`` already holds results and ``overwrite`` is off."""
    found = results_in(Path(folder))
    if found and not overwrite:
        raise CCReIDError(f"{option} {folder} already holds results ({found}); choose another {option} "
                          "or pass --overwrite to replace them")


def refuse_file(path: str | Path, overwrite: bool, what: str, option: str = "--out") -> None:
    """A one-line error when the output file ``path`` exists and ``overwrite`` is off."""
    path = Path(path)
    if path.is_dir():
        raise CCReIDError(f"{option} {path} is a folder; pass the path of the {what} file to write")
    if path.exists() and not overwrite:
        raise CCReIDError(f"{option} {path} already exists ({what}); choose another {option} "
                          "or pass --overwrite to replace it")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(lock: Path) -> Optional[int]:
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder/.ccreid.lock`` (this process's pid) while writing the folder: a second
    writer is refused at once, naming the holder; a lock left by a dead process is taken over.
    A folder made here and left empty (the work failed before writing) is removed again."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CCReIDError(f"--out {folder} is a file; pass a folder for the outputs")
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _holder(lock)
            if pid is not None and pid != os.getpid() and _alive(pid):
                raise CCReIDError(f"{folder} is being written by process {pid} ({lock}); wait for it to end "
                                  "or choose another --out")
            logger.warning("took over %s: its process %s is no longer running", lock, pid)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        break
    try:
        yield
    finally:
        if _holder(lock) == os.getpid():
            lock.unlink(missing_ok=True)
        if made and not any(folder.iterdir()):
            folder.rmdir()
