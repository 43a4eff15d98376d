"""CSV manifests: the one reader of every CSV ccreid takes (custom datasets, the synthetic
dataset's manifest, NKUP's clothes list, ``ccreid extract --images x.csv``).

UTF-8 (a byte-order mark is fine), a header row; column names and cells are stripped.
A missing column, an unreadable or undecodable file, or a non-integer cell is a one-line
:class:`CCReIDError` naming the file (and line).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Iterator, Sequence, Tuple

from ccreid.errors import CCReIDError


def read_rows(path: str | Path, required: Sequence[str], expected: str,
              label: str = "") -> Iterator[Tuple[int, Dict[str, str]]]:
    """``(line number, {column: cell})`` of every data row; ``required`` columns must exist
    (``expected`` shows the full header in the error)."""
    path = Path(path)
    prefix = f"{label}: " if label else ""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [c.strip() for c in next(reader, [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise CCReIDError(f"{prefix}{path} lacks the column(s) {','.join(missing)} (expected {expected})")
            for line, cells in enumerate(reader, 2):
                if cells:
                    yield line, {c: (v.strip() if v is not None else "") for c, v in zip(header, cells)}
    except UnicodeDecodeError as err:
        raise CCReIDError(f"{prefix}{path} is not UTF-8 text (byte {err.start}); save it as UTF-8 CSV")
    except OSError as err:
        raise CCReIDError(f"{prefix}cannot read {path} ({err.strerror or err})")


def int_cell(row: Dict[str, str], column: str, line: int, path: str | Path, label: str = "") -> int:
    """Cell ``column`` of ``row`` as an integer, or a one-line error naming file, line and column."""
    value = row.get(column, "")
    try:
        return int(value)
    except ValueError:
        prefix = f"{label}: " if label else ""
        raise CCReIDError(f"{prefix}{path} line {line}: column {column} must be an integer, got {value!r}") from None
