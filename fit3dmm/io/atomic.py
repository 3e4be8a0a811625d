"""Atomic file writes: a reader sees the old file or the complete new one, never a partial file.

Each output is written to a hidden temporary file in the destination folder (same file system, so the final
``os.replace`` is atomic), flushed to disk with ``fsync``, then renamed over the destination.  On any
exception (Ctrl-C included) the temporary files are removed and the destination is left untouched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any


def _temp_name(path: Path) -> Path:
    """A unique hidden sibling of ``path`` that keeps its extension (libraries pick the format by it)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")


def _fsync_path(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_directory(folder: Path) -> None:
    """Make renames in ``folder`` durable (POSIX only; a no-op where directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_files(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Write several files as a group: yields one temporary path per destination, in the same order.

    The caller writes each temporary path (it does not exist yet).  On success every temporary file is
    fsynced, then renamed onto its destination in the given order — put the file that refers to the
    others last (e.g. texture, material, then OBJ), so a reader that finds it also finds what it
    references.  On an exception all temporary files are removed and no destination is touched.

    Raises:
        FileNotFoundError: the writer did not create one of the temporary files.
    """
    targets = [Path(p) for p in paths]
    if not targets:
        raise ValueError("atomic_files needs at least one path")
    if len(set(targets)) != len(targets):
        raise ValueError(f"atomic_files got the same path twice: {[str(p) for p in targets]}")
    temps = [_temp_name(p) for p in targets]
    try:
        yield list(temps)
        for temp, target in zip(temps, targets, strict=True):
            if not temp.is_file():
                raise FileNotFoundError(f"nothing was written for {target}")
            _fsync_path(temp)
        for temp, target in zip(temps, targets, strict=True):
            os.replace(temp, target)
    except BaseException:
        for temp in temps:
            with suppress(FileNotFoundError):
                temp.unlink()
        raise
    for folder in dict.fromkeys(t.parent for t in targets):
        fsync_directory(folder)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open ``path`` for writing (``mode`` ``"wb"`` or ``"w"``) so that it appears only once complete.

    Usage: ``with atomic_write(out / "params.json", "w") as handle: handle.write(text)``.  Text mode
    defaults to UTF-8.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    if mode == "wb" and encoding is not None:
        raise ValueError("encoding is for text mode 'w' only")
    with atomic_files([path]) as (temp,):
        exclusive = "xb" if mode == "wb" else "x"
        with open(temp, exclusive, encoding=None if mode == "wb" else encoding or "utf-8") as handle:
            yield handle


def atomic_save(path: str | Path, writer: Callable[[Path], Any]) -> None:
    """Atomically write ``path`` with a library that writes by file name, e.g.
    ``atomic_save(out / "mesh.ply", mesh.export)``; ``writer`` gets a temporary path with the same extension.

    Raises:
        OSError: ``writer`` returned ``False`` (as ``cv2.imwrite`` does on failure) or wrote nothing.
    """
    with atomic_files([path]) as (temp,):
        if writer(temp) is False:
            raise OSError(f"writing {path} failed")
