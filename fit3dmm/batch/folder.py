"""The output folder of a batch run: locked for the run, one complete sub-folder per photo or none.

A photo's files are written into a hidden temporary folder ``OUT/.fit3dmm-tmp-*`` and renamed to
``OUT/<name>`` once everything, ``done.json`` last, is on disk, so an interrupted run (Ctrl-C, SIGTERM, a
crash, SIGKILL) never leaves a half-written ``OUT/<name>``; temporary folders are removed on Ctrl-C/SIGTERM,
or at the start of the next run.  One run at a time may write into ``OUT`` (a lock on ``OUT/.fit3dmm.lock``,
removed when the run ends).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from fit3dmm.io.atomic import atomic_write, fsync_directory

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None

REPORT_NAME = "report.csv"
MARKER_NAME = "done.json"
LOCK_NAME = ".fit3dmm.lock"
TEMP_PREFIX = ".fit3dmm-tmp-"
TRASH_PREFIX = ".fit3dmm-old-"
MARKER_SCHEMA = "fit3dmm.done"
RESERVED_NAMES = frozenset({REPORT_NAME.lower(), MARKER_NAME.lower(), LOCK_NAME.lower(), "", ".", ".."})
"""Names a photo's output folder may not take."""


def _take_lock(path: Path) -> int:
    """Create and exclusively lock ``path``; returns the file descriptor that holds the lock while open.

    A run that ends unlinks its lock file before releasing it (:func:`_release_lock`), so a run that opened the
    file just before may then lock a file that is no longer at ``path``; it tries again on the file that is
    there now, so that two runs never hold locks on different files of the same name.

    Raises:
        OSError: another run holds the lock.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OSError(f"{path.parent}: another fit3dmm run is writing into this folder") from None
        if _is_at(fd, path):
            return fd
        os.close(fd)


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the file now at ``path``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _release_lock(fd: int, path: Path) -> None:
    """Remove the lock file while still holding its lock (the next run then creates a new one), then
    release it; a file at ``path`` that is not this lock's is left alone."""
    try:
        if _is_at(fd, path):
            path.unlink()
    finally:
        os.close(fd)


class OutputFolder:
    """The output folder of a batch run, locked for the run (context manager).

    Entering creates it, takes the lock (:class:`OSError` when another run holds it) and removes the
    temporary folders of interrupted runs; leaving releases the lock and removes its file.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock: int | None = None  # the locked file's descriptor

    def __enter__(self) -> OutputFolder:
        if self.root.exists() and not self.root.is_dir():
            raise OSError(f"{self.root} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            self._lock = _take_lock(self.root / LOCK_NAME)
        for stale in self.root.iterdir():
            if stale.name.startswith((TEMP_PREFIX, TRASH_PREFIX)) and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            _release_lock(self._lock, self.root / LOCK_NAME)
            self._lock = None

    def marker(self, name: str) -> dict[str, Any] | None:
        """The ``done.json`` of a complete photo folder, or None (absent, unreadable, or files missing)."""
        folder = self.root / name
        try:
            doc = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("schema") != MARKER_SCHEMA:
            return None
        if not isinstance(doc.get("rows"), list) or not isinstance(doc.get("files"), list):
            return None
        if not all((folder / f).is_file() for f in doc.get("files", [])):
            return None
        return doc

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.root / name)

    def new_temp(self, name: str) -> Path:
        temp = self.root / f"{TEMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
        temp.mkdir()
        return temp

    def commit(self, temp: Path, name: str, marker: dict[str, Any]) -> None:
        """Write ``done.json`` into ``temp``, then rename ``temp`` to ``name`` (replacing what is there)."""
        with atomic_write(temp / MARKER_NAME, "w") as handle:
            handle.write(json.dumps(marker, indent=1, allow_nan=False) + "\n")
        final = self.root / name
        if os.path.lexists(final):
            trash = self.root / f"{TRASH_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(temp, final)
            if trash.is_dir() and not trash.is_symlink():
                shutil.rmtree(trash, ignore_errors=True)
            else:
                trash.unlink()
        else:
            os.replace(temp, final)
        fsync_directory(self.root)

    @staticmethod
    def discard(temp: Path) -> None:
        shutil.rmtree(temp, ignore_errors=True)
