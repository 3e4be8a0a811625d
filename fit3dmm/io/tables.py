"""CSV tables: the one reader and writer behind batch reports, comparison tables and training logs.

UTF-8, comma-separated, one header row, ``\\n`` line ends, empty cells for missing values; columns not listed
are left out.  :func:`write_csv` replaces the file atomically; :func:`append_csv` adds one row in place.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fit3dmm.io.atomic import atomic_write


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Atomically write ``rows`` under the header ``columns``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())


def append_csv(path: str | Path, row: Mapping[str, Any], columns: Sequence[str]) -> None:
    """Append one row to a table written by :func:`write_csv` with the same ``columns``."""
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.DictWriter(handle, fieldnames=list(columns), restval="", extrasaction="ignore",
                       lineterminator="\n").writerow(row)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV table as dicts of strings ([] when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
