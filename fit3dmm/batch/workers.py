"""Loading, observing and writing photos, in this process or in worker processes.

Detection and file writing run in ``jobs`` worker processes (spawned, each with its own detector; 0 = in this
process); the fitting runs in the main process.  Expected failures become a status and a one-line error,
never an exception.
"""

from __future__ import annotations

import pickle
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fit3dmm.batch.options import PhotoJob
from fit3dmm.defaults import STATUS_ERROR, STATUS_LOAD_ERROR, STATUS_NO_FACE, STATUS_OK, STATUS_TOO_SMALL
from fit3dmm.fitting.engine import one_line
from fit3dmm.io.outputs import MeshExtras, OutputOptions, OutputPaths, save_outputs
from fit3dmm.observe.detect import LandmarkDetector, NoFaceError
from fit3dmm.observe.image import ImageLoadError, load_image
from fit3dmm.observe.labelmaps import load_label_map
from fit3dmm.observe.observe import FaceTooSmallError, ObserveOptions, face_size, observe_photo
from fit3dmm.types.observation import Observation
from fit3dmm.types.result import FitResult


@dataclass
class Prepared:
    """A photo after loading and detection: one Observation (B = 1) per face, or why there is none."""

    job: PhotoJob
    status: str = STATUS_OK
    error: str = ""
    width: int | None = None
    height: int | None = None
    faces: list[Observation] = field(default_factory=list)
    face_sizes: list[float] = field(default_factory=list)
    time_load: float = 0.0
    time_detect: float = 0.0


@dataclass
class WriteTask:
    """Write the files of face ``face`` (a B = 1 CPU FitResult) into ``folder`` with file stem ``stem``."""

    job: PhotoJob
    face: int
    stem: str
    folder: Path
    result: FitResult
    params_extra: dict[str, Any]


@dataclass
class WriteOutcome:
    """What a write did: the file names relative to the photo folder, or the error."""

    files: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


class PhotoWorker:
    """Loads photos, observes faces and writes outputs; one per worker process (or one in this process).

    Args:
        observe: how photos are observed (the pipeline's options).
        outputs: which files to write; ``color`` the resolved colour mode.
        extras: the model's UVs and part labels for the writers.
        detector_factory: builds the landmark detector (called once, here).
    """

    def __init__(self, observe: ObserveOptions, outputs: OutputOptions, color: str, extras: MeshExtras,
                 detector_factory: Callable[[], LandmarkDetector]) -> None:
        self.observe = observe
        self.outputs = outputs
        self.color = color
        self.extras = extras
        self.detector = detector_factory()
        self._photo: tuple[Path, np.ndarray] | None = None

    def close(self) -> None:
        close = getattr(self.detector, "close", None)
        if close is not None:
            close()

    def load_photo(self, path: Path) -> np.ndarray:
        """The photo at ``path`` (the last one is kept, as a photo is read for detection and for writing)."""
        if self._photo is not None and self._photo[0] == path:
            return self._photo[1]
        photo = load_image(path)
        self._photo = (path, photo)
        return photo

    def prepare(self, job: PhotoJob) -> Prepared:
        """Load and observe (:func:`~fit3dmm.observe.observe.observe_photo`)."""
        out = Prepared(job)
        start = time.perf_counter()
        try:
            photo = self.load_photo(job.path)
        except ImageLoadError as exc:
            out.status, out.error = STATUS_LOAD_ERROR, one_line(exc)
        except Exception as exc:  # e.g. MemoryError on a huge photo
            out.status = STATUS_LOAD_ERROR
            out.error = f"cannot load image {job.path}: {type(exc).__name__}: {one_line(exc)}"
        out.time_load = time.perf_counter() - start
        if out.status != STATUS_OK:
            return out
        out.height, out.width = photo.shape[:2]
        start = time.perf_counter()
        try:
            labels = None if job.labels is None else load_label_map(job.labels.path, job.labels.format,
                                                                    photo.shape[:2])
            out.faces = observe_photo(photo, self.detector, self.observe, name=job.path.name, labels=labels)
            out.face_sizes = [face_size(o) for o in out.faces]
        except NoFaceError as exc:
            out.status, out.error = STATUS_NO_FACE, _with_path(job.path, exc)
        except FaceTooSmallError as exc:
            out.status, out.error = STATUS_TOO_SMALL, _with_path(job.path, exc)
        except Exception as exc:
            out.status, out.error = STATUS_ERROR, f"{job.path}: {type(exc).__name__}: {one_line(exc)}"
        out.time_detect = time.perf_counter() - start
        return out

    def write(self, task: WriteTask) -> WriteOutcome:
        """Write one face's files; failures are returned, not raised (except KeyboardInterrupt)."""
        start = time.perf_counter()
        try:
            photo = self.load_photo(task.job.path)
            paths = OutputPaths.for_options(task.folder, self.outputs, task.stem)
            written = save_outputs(task.result, 0, photo, paths, color=self.color, space=self.outputs.space,
                                   extras=self.extras, texture_size=self.outputs.texture_size,
                                   params_extra=task.params_extra)
            files = [p.relative_to(task.folder).as_posix() for p in written]
            return WriteOutcome(files=files, seconds=time.perf_counter() - start)
        except Exception as exc:
            for leftover in task.folder.glob(f"{task.stem}[._]*"):  # what this face got to write
                with suppress(OSError):
                    leftover.unlink()
            return WriteOutcome(error=f"writing the outputs failed: {type(exc).__name__}: {one_line(exc)}",
                                seconds=time.perf_counter() - start)


def _with_path(path: Path, exc: BaseException) -> str:
    """The one-line message of ``exc`` (which starts with the file name) starting with the full path."""
    message = one_line(exc)
    if message.startswith(f"{path.name}:"):
        return f"{path}{message[len(path.name):]}"
    return f"{path}: {message}"


# The worker of a worker process, built once by the pool initializer (each process has its own detector).
_PROCESS_WORKER: PhotoWorker | None = None


def init_process(observe: ObserveOptions, outputs: OutputOptions, color: str, extras: MeshExtras,
                 detector_factory: Callable[[], LandmarkDetector]) -> None:
    """Pool initializer: one :class:`PhotoWorker` per worker process, one torch and OpenCV thread."""
    global _PROCESS_WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the main process
    torch.set_num_threads(1)
    with suppress(Exception):
        import cv2

        cv2.setNumThreads(1)
    _PROCESS_WORKER = PhotoWorker(observe, outputs, color, extras, detector_factory)


def prepare_in_process(job: PhotoJob) -> bytes:
    # plain pickle: tensors travel as bytes, not as shared-memory handles
    return pickle.dumps(_PROCESS_WORKER.prepare(job))


def write_in_process(task: bytes) -> WriteOutcome:
    return _PROCESS_WORKER.write(pickle.loads(task))


class Executor(Protocol):
    """What runs the workers' tasks: a process pool, or :class:`InlineExecutor`."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...


class InlineExecutor:
    """Runs each task at submission, in this process (``jobs = 0``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future
