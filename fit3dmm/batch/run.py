"""The run loop of a batch: prepare photos in order, fit them B at a time, write, commit, report.

Resume: a photo whose ``OUT/<name>/done.json`` exists is skipped (its report rows are copied from it, with
``resumed = 1``) unless ``overwrite``; when it was made with other options the summary says so.  Photos
that failed have no folder and are tried again.  A folder ``OUT/<name>`` without ``done.json`` was not
written by fit3dmm: the photo is reported as an error unless ``overwrite`` (then the folder is replaced).

Several faces (``faces = "all"``): faces below ``min_face_size`` are skipped (the photo fails as
``face_too_small`` only when all are); the photo is written when at least one face was fitted, its failed
faces are in ``done.json`` and the report (and, being failures, keep the exit code at 1 on reruns until
``overwrite``).

Results are reproducible for the same inputs and options (the fit is seeded); the batch a face is fitted
in changes its numbers only by float rounding (~1e-7), so use ``batch_size = 1`` for results independent
of the other photos.
"""

from __future__ import annotations

import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fit3dmm import __version__
from fit3dmm.api import FaceFit, FaceTooSmallError, Pipeline
from fit3dmm.batch.folder import MARKER_NAME, MARKER_SCHEMA, REPORT_NAME, OutputFolder
from fit3dmm.batch.options import BatchOptions, LabelMap, PhotoJob, check_model_outputs, plan_jobs
from fit3dmm.batch.report import BatchProgress, BatchSummary, PhotoOutcome, face_row, write_report
from fit3dmm.batch.workers import (
    Executor,
    InlineExecutor,
    PhotoWorker,
    Prepared,
    WriteOutcome,
    WriteTask,
    init_process,
    prepare_in_process,
    write_in_process,
)
from fit3dmm.defaults import STATUS_ERROR, STATUS_LOAD_ERROR, STATUS_NO_FACE, STATUS_OK, STATUS_TOO_SMALL
from fit3dmm.fitting.engine import one_line
from fit3dmm.fitting.problem import Progress
from fit3dmm.io.outputs import MeshExtras, OutputOptions, OutputPaths, save_outputs
from fit3dmm.observe.detect import NoFaceError
from fit3dmm.observe.image import ImageLoadError
from fit3dmm.types.observation import Observation

REPORT_FLUSH_SECONDS = 30.0
"""The report is rewritten at least this often during a run (and at its end, also after Ctrl-C)."""


@dataclass
class _Photo:
    """Book-keeping of one photo in flight."""

    prepared: Prepared
    temp: Path
    rows: list[dict[str, Any]]
    pending: int
    files: list[str] = field(default_factory=list)


def _base_row(job: PhotoJob, prepared: Prepared | None) -> dict[str, Any]:
    row: dict[str, Any] = {"input": str(job.path), "resumed": 0, "retried": 0}
    if prepared is not None:
        row.update(status=prepared.status, error=prepared.error, width=prepared.width or "",
                   height=prepared.height or "", time_load_s=round(prepared.time_load, 4),
                   time_detect_s=round(prepared.time_detect, 4))
    return row


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises KeyboardInterrupt, so that ``kill`` cleans up too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _writer_setup(pipeline: Pipeline, outputs: OutputOptions) -> tuple[str, MeshExtras]:
    """The colour mode to write and the model data the writers need."""
    color = check_model_outputs(pipeline.model, outputs)
    return color, MeshExtras.from_model(pipeline.model, outputs.texture_size if color == "texture" else None)


def output_fingerprint(pipeline: Pipeline, outputs: OutputOptions, color: str) -> dict[str, Any]:
    """The settings that decide a photo's files (stored in ``done.json``; compared on resume)."""
    return pipeline.fingerprint(format=outputs.mesh_format, color=color, space=outputs.space,
                                overlay=outputs.overlay, npz=outputs.npz, depth=outputs.depth, parts=outputs.parts,
                                texture_size=outputs.texture_size)


def run_batch(paths: Sequence[str | Path], out_dir: str | Path, pipeline: Pipeline,
              options: BatchOptions | None = None, *, labels: LabelMap | None = None,
              progress: BatchProgress | None = None) -> BatchSummary:
    """Fit every photo of ``paths`` with ``pipeline`` and write ``out_dir`` (see :mod:`fit3dmm.batch`).

    Args:
        paths: photo files (see :func:`fit3dmm.observe.image.find_images`).
        options: batch size, worker processes, overwrite, outputs.
        labels: the label map of the single photo (``--seg``).
        progress: receives per-photo progress.
    Returns:
        A :class:`BatchSummary`; ``out_dir/report.csv`` holds one row per face or failed photo.  On
        KeyboardInterrupt (and SIGTERM under :func:`terminate_as_interrupt`) the temporary folders are
        removed, the report is written with what is finished, and the interrupt is re-raised.
    """
    started = time.perf_counter()
    options = options or BatchOptions()
    color, extras = _writer_setup(pipeline, options.outputs)
    fingerprint = output_fingerprint(pipeline, options.outputs, color)
    jobs = plan_jobs(paths, labels)
    out_root = Path(out_dir)
    rows_by_job: dict[int, list[dict[str, Any]]] = {}
    summary = BatchSummary(photos=len(jobs), report=out_root / REPORT_NAME)

    with OutputFolder(out_root) as folder:
        todo: list[PhotoJob] = []
        for job in jobs:
            marker = None if options.overwrite else folder.marker(job.name)
            if marker is not None:
                rows_by_job[job.index] = [{**row, "input": str(job.path), "resumed": 1} for row in marker["rows"]]
                summary.resumed += 1
                summary.stale += int(marker.get("options") != fingerprint)
            elif folder.exists(job.name) and not options.overwrite:
                rows_by_job[job.index] = [{**_base_row(job, None), "status": STATUS_ERROR, "error": (
                    f"{out_root / job.name} exists but was not written by fit3dmm (no {MARKER_NAME}); remove it "
                    "or pass --overwrite")}]
            else:
                todo.append(job)
        if progress is not None:
            progress.start(len(todo), summary.resumed)

        def flush() -> None:
            write_report(out_root / REPORT_NAME, [row for index in sorted(rows_by_job) for row in rows_by_job[index]])

        in_flight: dict[int, _Photo] = {}
        pool: ProcessPoolExecutor | None = None
        local: PhotoWorker | None = None
        worker_args = (pipeline.observe_options, options.outputs, color, extras, pipeline.detector_factory)
        try:
            if options.jobs > 0:
                import multiprocessing

                pool = ProcessPoolExecutor(max_workers=options.jobs, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=init_process, initargs=worker_args)
                executor: Executor = pool
                prepare_fn: Callable[[PhotoJob], Any] = prepare_in_process
                write_fn: Callable[[Any], WriteOutcome] = write_in_process
            else:
                local = PhotoWorker(*worker_args)
                executor = InlineExecutor()
                prepare_fn, write_fn = local.prepare, local.write
            loop = _Loop(pipeline, options, executor, prepare_fn, write_fn, pool is not None, folder, fingerprint,
                         in_flight, rows_by_job, summary, progress, flush)
            loop.run(todo)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            if local is not None:
                local.close()
            for photo in in_flight.values():
                folder.discard(photo.temp)
            flush()
    for rows in rows_by_job.values():
        summary.statuses.update(row["status"] for row in rows)
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class _Loop:
    """The main loop of :func:`run_batch`: prepare in order, fit in batches, write, commit."""

    pipeline: Pipeline
    options: BatchOptions
    executor: Executor
    prepare_fn: Callable[[PhotoJob], Any]
    write_fn: Callable[[Any], WriteOutcome]
    pickled: bool
    folder: OutputFolder
    fingerprint: dict[str, Any]
    in_flight: dict[int, _Photo]
    rows_by_job: dict[int, list[dict[str, Any]]]
    summary: BatchSummary
    progress: BatchProgress | None
    flush: Callable[[], None]
    writes: deque[tuple[_Photo, int, Future]] = field(default_factory=deque)
    waiting: list[tuple[_Photo, int, Observation]] = field(default_factory=list)

    def run(self, todo: list[PhotoJob]) -> None:
        options = self.options
        prepares: deque[tuple[PhotoJob, Future]] = deque()
        upcoming = iter(todo)
        max_prepares = max(2 * options.jobs, 1) + options.batch_size
        last_flush = time.monotonic()
        while True:
            while len(prepares) < max_prepares and (job := next(upcoming, None)) is not None:
                prepares.append((job, self.executor.submit(self.prepare_fn, job)))
            if not prepares:
                break
            job, future = prepares.popleft()
            result = future.result()
            self.take(job, pickle.loads(result) if self.pickled else result)
            while len(self.waiting) >= options.batch_size:
                self.fit_waiting(options.batch_size)
            self.collect_writes(block=False)
            if time.monotonic() - last_flush > REPORT_FLUSH_SECONDS:
                self.flush()
                last_flush = time.monotonic()
        if self.waiting:
            self.fit_waiting(len(self.waiting))
        self.collect_writes(block=True)

    def take(self, job: PhotoJob, prepared: Prepared) -> None:
        """A prepared photo: a failure is reported at once, the faces of a good one wait for their batch."""
        if prepared.status != STATUS_OK:
            rows = [_base_row(job, prepared)]
            self.rows_by_job[job.index] = rows
            self.summary.failed += 1
            if self.progress is not None:
                self.progress.photo_done(PhotoOutcome(job, rows, False))
            return
        rows = [{**_base_row(job, prepared), "face": face, "face_size_px": round(size, 2)}
                for face, size in enumerate(prepared.face_sizes)]
        photo = _Photo(prepared, self.folder.new_temp(job.name), rows, len(prepared.faces))
        self.in_flight[job.index] = photo
        self.waiting.extend((photo, face, obs) for face, obs in enumerate(prepared.faces))
        prepared.faces = []

    def fit_waiting(self, count: int) -> None:
        group, self.waiting[:] = self.waiting[:count], self.waiting[count:]
        fits = self.pipeline.fit_faces([obs for _, _, obs in group])
        for (photo, face, _), fit in zip(group, fits, strict=True):
            row = photo.rows[face]
            row.update(face_row(fit))
            if fit.result is None:
                photo.pending -= 1
                if photo.pending == 0:
                    self.finish(photo)
                continue
            outputs = self.options.outputs
            stem = "face" if self.pipeline.observe_options.faces == "largest" else f"face{face}"
            row["output"] = f"{photo.prepared.job.name}/{stem}{outputs.mesh_format}"
            extra = {"photo": photo.prepared.job.path.name, "face_index": face, "options": self.fingerprint}
            task = WriteTask(photo.prepared.job, face, stem, photo.temp, fit.result, extra)
            self.writes.append((photo, face, self.executor.submit(self.write_fn,
                                                                  pickle.dumps(task) if self.pickled else task)))

    def collect_writes(self, block: bool) -> None:
        while self.writes and (block or self.writes[0][2].done()):
            photo, face, future = self.writes.popleft()
            outcome: WriteOutcome = future.result()
            row = photo.rows[face]
            row["time_write_s"] = round(outcome.seconds, 4)
            if outcome.error:
                row.update(status=STATUS_ERROR, error=outcome.error, output="")
            else:
                photo.files += outcome.files
            photo.pending -= 1
            if photo.pending == 0:
                self.finish(photo)

    def finish(self, photo: _Photo) -> None:
        """Commit a photo whose faces are all fitted and written (or discard it when none succeeded)."""
        job = photo.prepared.job
        del self.in_flight[job.index]
        committed = any(row["status"] == STATUS_OK for row in photo.rows)
        if committed:
            marker = {"schema": MARKER_SCHEMA, "fit3dmm_version": __version__, "input": str(job.path),
                      "options": self.fingerprint, "rows": photo.rows, "files": sorted(photo.files)}
            try:
                self.folder.commit(photo.temp, job.name, marker)
            except OSError as exc:  # e.g. the disk is full: this photo fails, the run goes on
                committed = False
                for row in photo.rows:
                    if row["status"] == STATUS_OK:
                        row.update(status=STATUS_ERROR, output="",
                                   error=f"writing the outputs failed: {type(exc).__name__}: {one_line(exc)}")
        summary = self.summary
        if committed:
            summary.fitted += 1
            summary.faces += sum(row["status"] == STATUS_OK for row in photo.rows)
            summary.landmark_errors.extend(float(row["landmark_error_px"]) for row in photo.rows
                                           if row["status"] == STATUS_OK and row.get("landmark_error_px") != "")
        else:
            self.folder.discard(photo.temp)
            summary.failed += 1
        self.rows_by_job[job.index] = photo.rows
        if self.progress is not None:
            self.progress.photo_done(PhotoOutcome(job, photo.rows, committed))


def fit_to_mesh_path(path: str | Path, target: str | Path, pipeline: Pipeline, outputs: OutputOptions, *,
                     labels: LabelMap | None = None, progress: Progress | None = None) -> tuple[list[Path], FaceFit]:
    """Fit the largest face of one photo and write the mesh ``target`` (.obj/.ply/.glb) and its siblings.

    Args:
        outputs: which files to write (the mesh format is ``target``'s).
        labels: the photo's label map (``--seg``).
        progress: called as ``progress(step, total_steps, loss)`` during the fit.
    Returns:
        The paths written and the fit.
    Raises (one-line messages naming the file):
        ImageLoadError, NoFaceError, FaceTooSmallError: as :func:`fit3dmm.observe.observe.observe_photo`;
        ValueError: the fit failed (diverged, also after the retry).
    """
    target = Path(target)
    outputs = replace(outputs, mesh_format=target.suffix)
    color, extras = _writer_setup(pipeline, outputs)
    worker = PhotoWorker(replace(pipeline.observe_options, faces="largest"), outputs, color, extras,
                         pipeline.detector_factory)
    try:
        job = PhotoJob(0, Path(path), target.stem, labels)
        prepared = worker.prepare(job)
        errors = {STATUS_LOAD_ERROR: ImageLoadError, STATUS_NO_FACE: NoFaceError, STATUS_TOO_SMALL: FaceTooSmallError}
        if prepared.status != STATUS_OK:
            raise errors.get(prepared.status, ValueError)(prepared.error)
        fit = pipeline.fit_faces(prepared.faces, progress)[0]
        if fit.result is None:
            raise ValueError(f"{job.path}: {fit.error}")
        paths = OutputPaths.for_options(target, outputs)
        extra = {"photo": job.path.name, "face_index": 0}
        written = save_outputs(fit.result, 0, worker.load_photo(job.path), paths, color=color, space=outputs.space,
                               extras=extras, texture_size=outputs.texture_size, params_extra=extra)
        return written, fit
    finally:
        worker.close()
