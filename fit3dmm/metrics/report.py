"""Markdown tables for benchmark scripts."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return format(float(value), floatfmt)
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table, one line per row, no trailing newline.

    Cells: reals (Python or numpy floats) with ``format(value, floatfmt)`` (NaN → ``nan``), integers and
    bools with ``str``, anything else with ``str`` and ``|`` escaped; a key missing from a row (or None) is
    an empty cell.

    Raises:
        ValueError: no columns, or a column that no row has (most likely a typo).
    """
    if not columns:
        raise ValueError("columns must name at least one column, got none")
    missing = [c for c in columns if not any(c in row for row in rows)]
    if rows and missing:
        keys = sorted({k for row in rows for k in row})
        raise ValueError(f"columns {missing} appear in no row; the rows have {keys}")
    lines = [list(columns), ["---"] * len(columns)]
    lines += [[_cell(row.get(c), floatfmt) for c in columns] for row in rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
