"""Batch fitting: many photos in, one output folder per photo and a report out; interruptible and resumable.

Layout of an output folder ``OUT``::

    OUT/report.csv            one row per fitted face or failed photo (columns: REPORT_COLUMNS + loss_*),
                              rewritten atomically every 30 s and at the end (also after Ctrl-C)
    OUT/<name>/face.obj ...   the files of :mod:`fit3dmm.io.outputs` (``--faces all``: face0.*, face1.*, ...)
    OUT/<name>/done.json      written last: input, options, report rows and files of the photo

``<name>`` is the photo's file stem; photos sharing a stem (case-insensitively), or whose stem is a reserved
or hidden name, get ``<stem>-<8 hex digits of the sha1 of the absolute path>`` (:func:`output_names`), so a
photo's name does not depend on the order of the inputs.

Complete or absent: a photo's files are written into a hidden temporary folder ``OUT/.fit3dmm-tmp-*`` and
the folder is renamed to ``OUT/<name>`` once everything, ``done.json`` last, is on disk.  An interrupted
run (Ctrl-C, SIGTERM, a crash, SIGKILL) therefore never leaves a half-written ``OUT/<name>``; the temporary
folders are removed on Ctrl-C/SIGTERM, or at the start of the next run.  One run at a time may write into
``OUT`` (a lock on ``OUT/.fit3dmm.lock``).

Resume: a photo whose ``OUT/<name>/done.json`` exists is skipped (its report rows are copied from it, with
``resumed = 1``) unless ``overwrite``; when it was made with other options the summary says so.  Photos
that failed have no folder and are tried again.  A folder ``OUT/<name>`` without ``done.json`` was not
written by fit3dmm: the photo is reported as an error unless ``overwrite`` (then the folder is replaced).

Several faces (``faces = "all"``): faces below ``min_face_size`` are skipped (the photo fails as
``face_too_small`` only when all are); the photo is written when at least one face was fitted, its failed
faces are in ``done.json`` and the report (and, being failures, keep the exit code at 1 on reruns until
``overwrite``).

Statuses (the ``status`` column): ``ok``; ``load_error`` (missing, unreadable, empty, truncated or not an
image); ``no_face``; ``face_too_small`` (landmark box below ``min_face_size``); ``diverged`` (the loss
became non-finite, also after one retry with halved learning rates); ``error`` (anything else, with the
exception's type and message).  Failed photos get a row with an empty ``face``.

Throughput: detection and file writing run in ``jobs`` worker processes (spawned, each with its own
detector; 0 = in this process); the fitting runs here, ``batch_size`` faces at once, in input order.
Results are reproducible for the same inputs and options (the fit is seeded); the batch a face is fitted
in changes its numbers only by float rounding (~1e-7), so use ``batch_size = 1`` for results independent
of the other photos.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fit3dmm import __version__
from fit3dmm.fitting.engine import FitConfig, fit_observation
from fit3dmm.fitting.result import FitResult
from fit3dmm.io.atomic import atomic_write, fsync_directory
from fit3dmm.io.mesh import MESH_FORMATS
from fit3dmm.io.outputs import MeshExtras, OutputOptions, OutputPaths, save_outputs
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.detect import LandmarkDetector, NoFaceError, get_detector
from fit3dmm.observe.image import ImageLoadError, load_image
from fit3dmm.observe.observation import Observation, PointSet
from fit3dmm.render.camera import PerspectiveCamera

REPORT_NAME = "report.csv"
MARKER_NAME = "done.json"
LOCK_NAME = ".fit3dmm.lock"
TEMP_PREFIX = ".fit3dmm-tmp-"
TRASH_PREFIX = ".fit3dmm-old-"
MARKER_SCHEMA = "fit3dmm.done"

STATUS_OK = "ok"
STATUS_LOAD_ERROR = "load_error"
STATUS_NO_FACE = "no_face"
STATUS_TOO_SMALL = "face_too_small"
STATUS_DIVERGED = "diverged"
STATUS_ERROR = "error"
STATUSES = (STATUS_OK, STATUS_LOAD_ERROR, STATUS_NO_FACE, STATUS_TOO_SMALL, STATUS_DIVERGED, STATUS_ERROR)

REPORT_COLUMNS = (
    "input", "output", "face", "status", "error", "resumed", "retried", "width", "height", "face_size_px",
    "landmark_error_px", "iterations", "loss_total",
)
"""Fixed report columns; ``loss_<name>`` (final unweighted value of each loss) and the timings
``time_load_s``, ``time_detect_s``, ``time_fit_s`` (the batch's fitting time shared among its faces),
``time_write_s`` follow."""
TIME_COLUMNS = ("time_load_s", "time_detect_s", "time_fit_s", "time_write_s")
_RESERVED_NAMES = frozenset({REPORT_NAME.lower(), MARKER_NAME.lower(), LOCK_NAME.lower(), "", ".", ".."})
REPORT_FLUSH_SECONDS = 30.0


@dataclass(frozen=True)
class BatchOptions:
    """How a batch is run (fit schedule and losses are separate).

    Attributes:
        faces: ``"largest"`` (one face per photo) or ``"all"``.
        batch_size: faces fitted together (B ≥ 1).
        jobs: worker processes for detection and writing; 0 runs everything in this process.
        overwrite: redo photos that already have a complete output.
        size: working crop size in pixels.
        min_face_size: faces whose landmark box is smaller (photo pixels) are refused.
        detect_max_side: the detector sees photos shrunk to this longer side at most.
        outputs: which files to write per face.
    """

    faces: str = "largest"
    batch_size: int = 1
    jobs: int = 0
    overwrite: bool = False
    size: int = 224
    min_face_size: float = 40.0
    detect_max_side: int = 2048
    outputs: OutputOptions = field(default_factory=OutputOptions)

    def __post_init__(self) -> None:
        if self.faces not in ("largest", "all"):
            raise ValueError(f"--faces must be 'largest' or 'all', got {self.faces!r}")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 1024:
            raise ValueError(f"--batch-size must be an integer in 1..1024, got {self.batch_size!r}")
        if not isinstance(self.jobs, int) or not 0 <= self.jobs <= 256:
            raise ValueError(f"--jobs must be an integer in 0..256, got {self.jobs!r}")
        if not isinstance(self.size, int) or not 64 <= self.size <= 1024:
            raise ValueError(f"--size must be an integer in 64..1024, got {self.size!r}")
        if not (isinstance(self.min_face_size, (int, float)) and 0 <= self.min_face_size < 1e6):
            raise ValueError(f"--min-face-size must be a number ≥ 0, got {self.min_face_size!r}")
        if not isinstance(self.detect_max_side, int) or not 64 <= self.detect_max_side <= 16384:
            raise ValueError(f"--detect-max-side must be an integer in 64..16384, got {self.detect_max_side!r}")


@dataclass(frozen=True)
class PhotoJob:
    """One input photo: its position in the inputs, its path and its output folder name."""

    index: int
    path: Path
    name: str


# --------------------------------------------------------------------------------------------- planning
def output_names(paths: Sequence[str | Path]) -> list[str]:
    """Output folder names for photos (module docstring): the stem, or ``<stem>-<hash>`` when the stem is
    shared (case-insensitively), reserved or hidden (leading dots are dropped: ``.x.jpg`` → ``x-<hash>``).
    The name of a photo depends on the set of inputs, not on their order; names are unique."""
    paths = [Path(p) for p in paths]
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError("the same photo is listed twice")
    stems = [p.stem for p in paths]
    counts = Counter(s.lower() for s in stems)
    names = []
    for path, stem in zip(paths, stems, strict=True):
        unsafe = stem.lower() in _RESERVED_NAMES or stem.startswith(".") or counts[stem.lower()] > 1
        if unsafe:  # hidden names are for temporaries: drop leading dots
            digest = hashlib.sha1(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]
            stem = f"{stem.lstrip('.') or 'photo'}-{digest}"
        names.append(stem)
    return names


def plan_jobs(paths: Sequence[str | Path]) -> list[PhotoJob]:
    """One :class:`PhotoJob` per photo, in the given order, named by :func:`output_names`."""
    return [PhotoJob(i, Path(p), name) for i, (p, name) in enumerate(zip(paths, output_names(paths), strict=True))]


@dataclass
class FitRequest:
    """Checked inputs of a ``fit`` command: the photos and, for a single photo, the mesh path to write.

    ``single_outputs`` are the output options with the mesh path's format (when ``mesh_target`` is set).
    """

    paths: list[Path]
    mesh_target: Path | None
    single_outputs: OutputOptions


def check_request(images: Sequence[str | Path], out: str | Path, options: BatchOptions, *,
                  mesh_format: str | None = None, losses: str | None = None, weights: dict[str, float] | None = None,
                  seg: Path | None = None, seg_format: str | None = None, recursive: bool = False) -> FitRequest:
    """Every check that needs neither the model nor a fit, so that bad requests fail before any work.

    Checks: the losses and weights (when given), the inputs (:func:`~fit3dmm.observe.image.find_images`;
    files inside a folder ``out`` are left out, they are earlier outputs), a mesh path ``out`` (one photo
    that loads, the largest face, a format that agrees), ``--seg`` (with ``--seg-format``, one photo, a label
    map of the photo's size).

    Raises:
        ValueError (ImageLoadError, LabelMapError): with a one-line message.
    """
    from fit3dmm.losses.registry import parse_losses
    from fit3dmm.observe.image import find_images
    from fit3dmm.observe.labelmaps import load_label_map

    if losses:
        parse_losses(losses, weights)
    elif weights:
        parse_losses(list(weights), weights)  # names and values; membership is checked with the model
    if (seg is None) != (seg_format is None):
        raise ValueError("--seg and --seg-format go together")
    out = Path(out)
    mesh_target = out if out.suffix.lower() in MESH_FORMATS else None
    paths = find_images(list(images), recursive=recursive)
    single_outputs = options.outputs
    if mesh_target is None:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder (a mesh path must end in .obj, .ply or .glb)")
        root = out.resolve()
        paths = [p for p in paths if not p.resolve().is_relative_to(root)]
        if not paths:
            raise ValueError(f"all input images lie inside the output folder {out}")
    else:
        if len(paths) > 1:
            raise ValueError(f"{out}: a mesh path can only be given for one photo; pass a folder for {len(paths)} "
                             "photos")
        if options.faces == "all":
            raise ValueError(f"{out}: a mesh path holds one face; pass a folder with --faces all")
        if mesh_format is not None and "." + mesh_format.lower() != out.suffix.lower():
            raise ValueError(f"--format {mesh_format} disagrees with the mesh path {out}")
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; a mesh path must be a file")
        single_outputs = dataclasses.replace(options.outputs, mesh_format=out.suffix)
        load_image(paths[0])  # one photo: an unreadable file is refused now
    if seg is not None:
        if len(paths) > 1:
            raise ValueError(f"{seg}: --seg applies to one photo, got {len(paths)}")
        load_label_map(seg, seg_format, load_image(paths[0]).shape[:2])
    return FitRequest(paths, mesh_target, single_outputs)


def select_losses(model: FaceModel, losses: str | None, weights: dict[str, float] | None,
                  seg: Path | None = None) -> tuple[dict[str, float], bool]:
    """The losses to fit with ({name: weight}; default :func:`fit3dmm.api.default_losses`) and whether they
    need part targets; a label map ``seg`` that no loss uses is refused."""
    from fit3dmm.api import default_losses, needs_parts, parse_losses

    selected = parse_losses(losses or default_losses(model), weights)
    segment = needs_parts(selected)
    if seg is not None and not segment:
        raise ValueError(f"{seg}: --seg is given but none of the losses {', '.join(selected)} uses segmentation")
    return selected, segment


def check_model_outputs(model: FaceModel, outputs: OutputOptions) -> str:
    """Refuse outputs the model cannot give (a part map without annotations, a texture without UVs); returns
    the colour mode that will be written."""
    extras = MeshExtras.from_model(model)
    if outputs.parts and extras.part_labels is None:
        raise ValueError(f"--parts needs part annotations on the model {model.name}; build them once with "
                         "`fit3dmm models annotate`")
    return outputs.resolved_color(extras)


# ----------------------------------------------------------------------------------- detection (workers)
@dataclass(frozen=True)
class ObserveSettings:
    """What a worker needs to turn a photo into Observations (picklable).

    ``segment``: add part targets (for losses that need them); ``seg``/``seg_format``: a label map for them.
    """

    size: int = 224
    faces: str = "largest"
    min_face_size: float = 40.0
    detect_max_side: int = 2048
    segment: bool = False
    seg: Path | None = None
    seg_format: str | None = None


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


def default_detector() -> LandmarkDetector:
    """The default landmark backend (mediapipe); a top-level function so that it can be sent to workers."""
    return get_detector("mediapipe")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


class PhotoWorker:
    """Loads photos, detects faces and writes outputs; one per worker process (or one in this process).

    Args:
        settings: detection settings.
        outputs: which files to write; ``color`` the resolved colour mode.
        extras: the model's UVs and part labels for the writers.
        detector_factory: builds the landmark detector (called once, here).
    """

    def __init__(self, settings: ObserveSettings, outputs: OutputOptions, color: str, extras: MeshExtras,
                 detector_factory: Callable[[], LandmarkDetector] = default_detector) -> None:
        from fit3dmm.api import part_targets

        self.settings = settings
        self.outputs = outputs
        self.color = color
        self.extras = extras
        self.detector = detector_factory()
        self.segmentation = part_targets(settings.seg, settings.seg_format) if settings.segment else None
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
        """Load and detect; expected failures become a status and a one-line error, never an exception."""
        from fit3dmm.api import FaceTooSmallError, observe

        out = Prepared(job)
        start = time.perf_counter()
        try:
            photo = self.load_photo(job.path)
        except ImageLoadError as exc:
            out.status, out.error = STATUS_LOAD_ERROR, _one_line(exc)
        except Exception as exc:  # e.g. MemoryError on a huge photo
            out.status = STATUS_LOAD_ERROR
            out.error = f"cannot load image {job.path}: {type(exc).__name__}: {_one_line(exc)}"
        out.time_load = time.perf_counter() - start
        if out.status != STATUS_OK:
            return out
        out.height, out.width = photo.shape[:2]
        start = time.perf_counter()
        s = self.settings
        try:
            out.faces = observe(photo, detector=self.detector, size=s.size, faces=s.faces, name=job.path.name,
                                segmentation=self.segmentation, max_side=s.detect_max_side,
                                min_face_size=s.min_face_size)
            out.face_sizes = [_face_size(o) for o in out.faces]
        except NoFaceError as exc:
            out.status, out.error = STATUS_NO_FACE, _with_path(job.path, exc)
        except FaceTooSmallError as exc:
            out.status, out.error = STATUS_TOO_SMALL, _with_path(job.path, exc)
        except Exception as exc:
            out.status, out.error = STATUS_ERROR, f"{job.path}: {type(exc).__name__}: {_one_line(exc)}"
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
            return WriteOutcome(error=f"writing the outputs failed: {type(exc).__name__}: {_one_line(exc)}",
                                seconds=time.perf_counter() - start)


def _with_path(path: Path, exc: BaseException) -> str:
    """The one-line message of ``exc`` (which starts with the file name) starting with the full path."""
    message = _one_line(exc)
    if message.startswith(f"{path.name}:"):
        return f"{path}{message[len(path.name):]}"
    return f"{path}: {message}"


def _face_size(observation: Observation) -> float:
    """Larger side of the detected dense-landmark box in photo pixels."""
    points = observation.landmarks if observation.landmarks is not None else observation.landmarks68
    photo = observation.crop_points_to_photo(points.double())[0]
    extent = photo.max(0).values - photo.min(0).values
    return float(extent.max())


# The worker of a worker process, built once by the pool initializer (each process has its own detector).
_PROCESS_WORKER: PhotoWorker | None = None


def _init_process(settings: ObserveSettings, outputs: OutputOptions, color: str, extras: MeshExtras,
                  detector_factory: Callable[[], LandmarkDetector]) -> None:
    global _PROCESS_WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the main process
    torch.set_num_threads(1)
    with suppress(Exception):
        import cv2

        cv2.setNumThreads(1)
    _PROCESS_WORKER = PhotoWorker(settings, outputs, color, extras, detector_factory)


def _prepare_in_process(job: PhotoJob) -> bytes:
    # plain pickle: tensors travel as bytes, not as shared-memory handles
    return pickle.dumps(_PROCESS_WORKER.prepare(job))


def _write_in_process(task: bytes) -> WriteOutcome:
    return _PROCESS_WORKER.write(pickle.loads(task))


class _Executor(Protocol):
    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...


class _InlineExecutor:
    """Runs each task at submission, in this process (``jobs = 0``)."""

    def __init__(self, worker: PhotoWorker) -> None:
        self.worker = worker

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


# -------------------------------------------------------------------------------------------- fitting
@dataclass
class FaceFit:
    """The fit of one face: a B = 1 CPU FitResult (None when it failed), status, error, retried, seconds."""

    result: FitResult | None
    status: str
    error: str = ""
    retried: bool = False
    seconds: float = 0.0


def safer_config(config: FitConfig) -> FitConfig:
    """The retry schedule after a divergence: every learning rate halved."""
    return dataclasses.replace(config, lr=config.lr / 2, lr_rotation=config.lr_rotation / 2,
                               lr_translation=config.lr_translation / 2)


def select_face(result: FitResult, index: int) -> FitResult:
    """Face ``index`` of a batched FitResult as a B = 1 FitResult on the CPU (copies, safe to pickle)."""
    if not 0 <= index < result.batch_size:
        raise IndexError(f"face index {index} is outside the batch of {result.batch_size}")

    def take(t: torch.Tensor) -> torch.Tensor:
        return t[index: index + 1].detach().cpu().clone()

    obs = result.observation
    moved: dict[str, Any] = {}
    for f in dataclasses.fields(obs):
        value = getattr(obs, f.name)
        if isinstance(value, torch.Tensor):
            moved[f.name] = take(value)
        elif f.name == "points":
            moved[f.name] = {k: PointSet(take(v.points), take(v.valid)) for k, v in value.items()}
        elif f.name == "names":
            moved[f.name] = list(value[index: index + 1])
    return dataclasses.replace(
        result,
        coefficients={k: take(v) for k, v in result.coefficients.items()},
        vertices=take(result.vertices),
        triangles=result.triangles.detach().cpu(),
        face_triangles=result.face_triangles.detach().cpu(),
        vertices_cam=take(result.vertices_cam),
        vertices_photo=take(result.vertices_photo),
        rotation=take(result.rotation),
        pose_deg=take(result.pose_deg),
        camera=PerspectiveCamera(take(result.camera.focal), take(result.camera.principal)),
        observation=dataclasses.replace(obs, **moved),
        landmarks68_photo=take(result.landmarks68_photo),
        landmarks68_cam=take(result.landmarks68_cam),
        losses={k: take(v) for k, v in result.losses.items()},
        weights=dict(result.weights),
        history=None if result.history is None else result.history[:, index: index + 1].detach().cpu().clone(),
        timings=dict(result.timings),
        status=list(result.status[index: index + 1]),
    )


Fitter = Callable[[FaceModel, Observation, dict[str, float], FitConfig], FitResult]


def fit_faces(model: FaceModel, observations: Sequence[Observation], weights: dict[str, float],
              config: FitConfig, fitter: Fitter = fit_observation) -> list[FaceFit]:
    """Fit B faces together; a face whose fit diverges is retried once with :func:`safer_config`.

    Args:
        observations: B Observations of one face each (stacked here).
        fitter: the fitting function (:func:`~fit3dmm.fitting.engine.fit_observation`).
    Returns:
        One :class:`FaceFit` per observation, in order.  When the batched fit raises, each face is fitted
        alone so that one bad face does not take the others down.
    """
    if not observations:
        return []
    start = time.perf_counter()
    try:
        result = fitter(model, Observation.stack(list(observations)), weights, config)
    except Exception as exc:
        if len(observations) > 1:
            return [fit_faces(model, [o], weights, config, fitter)[0] for o in observations]
        return [FaceFit(None, STATUS_ERROR, f"fitting failed: {type(exc).__name__}: {_one_line(exc)}",
                        seconds=time.perf_counter() - start)]
    fits = [FaceFit(select_face(result, i), STATUS_OK) if result.status[i] == STATUS_OK
            else FaceFit(None, STATUS_DIVERGED) for i in range(len(observations))]
    again = [i for i, f in enumerate(fits) if f.status != STATUS_OK]
    if again:
        retry: FitResult | None = None
        reason = ""
        try:
            retry = fitter(model, Observation.stack([observations[i] for i in again]), weights,
                           safer_config(config))
        except Exception as exc:
            reason = f" ({type(exc).__name__}: {_one_line(exc)})"
        for j, i in enumerate(again):
            if retry is not None and retry.status[j] == STATUS_OK:
                fits[i] = FaceFit(select_face(retry, j), STATUS_OK, retried=True)
            else:
                fits[i] = FaceFit(None, STATUS_DIVERGED, "the loss became non-finite (NaN or inf); retried once "
                                  f"with halved learning rates, still diverged{reason}", retried=True)
    seconds = (time.perf_counter() - start) / len(observations)
    for f in fits:
        f.seconds = seconds
    return fits


def face_row(fit: FaceFit) -> dict[str, Any]:
    """Report fields of a fitted face: landmark error (px), iterations, losses."""
    from fit3dmm.api import landmark_error

    row: dict[str, Any] = {"status": fit.status, "error": fit.error, "retried": int(fit.retried),
                           "time_fit_s": round(fit.seconds, 4)}
    result = fit.result
    if result is None:
        return row
    losses = {name: float(value[0]) for name, value in result.losses.items()}
    row["landmark_error_px"] = _round(landmark_error(result, 0))
    row["iterations"] = 0 if result.history is None else int(result.history.shape[0])
    row["loss_total"] = _round(sum(result.weights[name] * v for name, v in losses.items()))
    row.update({f"loss_{name}": _round(v) for name, v in losses.items()})
    return row


def _round(value: float) -> float | str:
    return float(f"{value:.6g}") if np.isfinite(value) else str(value)


@dataclass
class FitSetup:
    """What every photo of a run is fitted with.

    Attributes:
        model: the face model, on the device to fit on (annotated when a loss needs parts).
        weights: the selected losses ({name: weight}, e.g. from :func:`select_losses`).
        config: the fitting schedule.
        options: batch and output options.
        segment: add part targets to the observations (for losses that need them); ``seg``/``seg_format``:
            a label map of the (single) photo for them.
        detector_factory: builds a landmark detector (in each worker process when ``options.jobs > 0``; it
            must then be picklable, e.g. a module-level function).
        fitter: the fitting function (:func:`~fit3dmm.fitting.engine.fit_observation`).
    """

    model: FaceModel
    weights: dict[str, float]
    config: FitConfig
    options: BatchOptions = field(default_factory=BatchOptions)
    segment: bool = False
    seg: Path | None = None
    seg_format: str | None = None
    detector_factory: Callable[[], LandmarkDetector] = default_detector
    fitter: Fitter = fit_observation

    def observe_settings(self, faces: str | None = None) -> ObserveSettings:
        """Detection settings for the workers (``faces`` overrides ``options.faces``)."""
        o = self.options
        return ObserveSettings(o.size, faces or o.faces, float(o.min_face_size), o.detect_max_side, self.segment,
                               self.seg, self.seg_format)

    def fingerprint(self, color: str) -> dict[str, Any]:
        """The settings that determine a photo's outputs (stored in ``done.json``; compared on resume)."""
        model, config, o, out = self.model, self.config, self.options, self.options.outputs
        return {
            "model": model.name, "model_checksum": model.checksum, "losses": dict(self.weights),
            "iterations": config.iterations, "rigid_iterations": config.rigid_iterations,
            "lr": [config.lr, config.lr_rotation, config.lr_translation], "seed": config.seed,
            "size": o.size, "faces": o.faces, "min_face_size": float(o.min_face_size),
            "detect_max_side": o.detect_max_side, "format": out.mesh_format, "color": color, "space": out.space,
            "overlay": out.overlay, "npz": out.npz, "depth": out.depth, "parts": out.parts,
            "texture_size": out.texture_size, "init": getattr(self.fitter, "fingerprint", None),
        }


# ------------------------------------------------------------------------------------- output folder
class OutputFolder:
    """The output folder of a batch run, locked for the run (context manager).

    Entering creates it, takes the lock (:class:`OSError` when another run holds it) and removes the
    temporary folders of interrupted runs.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock: Any = None

    def __enter__(self) -> OutputFolder:
        if self.root.exists() and not self.root.is_dir():
            raise OSError(f"{self.root} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK_NAME, "a+")  # held until __exit__
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            handle.close()
            raise OSError(f"{self.root}: another fit3dmm run is writing into this folder") from None
        self._lock = handle
        for stale in self.root.iterdir():
            if stale.name.startswith((TEMP_PREFIX, TRASH_PREFIX)) and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()
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


# -------------------------------------------------------------------------------------------- report
def report_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The report's columns for ``rows``: the fixed ones, ``loss_*`` in order of appearance, the timings."""
    losses = dict.fromkeys(k for row in rows for k in row if k.startswith("loss_") and k != "loss_total")
    return [*REPORT_COLUMNS, *losses, *TIME_COLUMNS]


def write_report(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Atomically write the report CSV (UTF-8, comma-separated, header row, empty cells for missing values)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=report_columns(rows), restval="", extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def read_report(path: str | Path) -> list[dict[str, str]]:
    """The rows of a report CSV as dicts of strings."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------------------------- runs
@dataclass
class PhotoOutcome:
    """A photo finished in this run: its report rows and whether its folder was written."""

    job: PhotoJob
    rows: list[dict[str, Any]]
    committed: bool


class BatchProgress(Protocol):
    """Receives the progress of :func:`run_batch` (the command line draws a bar from it)."""

    def start(self, total: int, resumed: int) -> None:
        """``total`` photos to process in this run; ``resumed`` skipped as complete."""

    def photo_done(self, outcome: PhotoOutcome) -> None:
        """One photo is finished (written or failed)."""


@dataclass
class BatchSummary:
    """What a batch run did.

    Attributes:
        photos: inputs.
        fitted: photos written in this run.
        resumed: photos skipped because they were complete.
        failed: photos with no output (see the report).
        faces: fitted faces written in this run.
        statuses: count of report rows by status (resumed rows included).
        stale: resumed photos that had been made with other options.
        seconds: wall time.
        report: path of the report CSV.
        landmark_errors: per fitted face, the mean distance (photo px) between the fitted model's projected
            68 landmarks and the detected ones.
    """

    photos: int = 0
    fitted: int = 0
    resumed: int = 0
    failed: int = 0
    faces: int = 0
    statuses: Counter = field(default_factory=Counter)
    stale: int = 0
    seconds: float = 0.0
    report: Path | None = None
    landmark_errors: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no report row failed."""
        return all(status == STATUS_OK for status in self.statuses.elements())

    def lines(self) -> list[str]:
        """A human-readable summary."""
        rate = self.fitted / self.seconds if self.seconds > 0 else 0.0
        out = [f"{self.photos} photos: {self.fitted} fitted ({self.faces} faces, {rate:.2f} photos/s), "
               f"{self.resumed} already done, {self.failed} failed"]
        if self.landmark_errors:
            errors = self.landmark_errors
            out.append(f"mean 68-landmark distance, fitted vs detected: {sum(errors) / len(errors):.2f} px"
                       + (f" (median over {len(errors)} faces: {sorted(errors)[len(errors) // 2]:.2f} px)"
                          if len(errors) > 1 else ""))
        failures = {k: v for k, v in sorted(self.statuses.items()) if k != STATUS_OK}
        if failures:
            out.append("failures by status: " + ", ".join(f"{k} {v}" for k, v in failures.items()))
        if self.stale:
            out.append(f"{self.stale} photos were skipped although they were made with other options; "
                       "use --overwrite to redo them")
        if self.report is not None:
            out.append(f"report: {self.report}")
        return out


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


def run_batch(paths: Sequence[str | Path], out_dir: str | Path, setup: FitSetup, *,
              progress: BatchProgress | None = None) -> BatchSummary:
    """Fit every photo of ``paths`` with ``setup`` and write ``out_dir`` as described in the module docstring.

    Args:
        paths: photo files (see :func:`fit3dmm.observe.image.find_images`).
        progress: receives per-photo progress.
    Returns:
        A :class:`BatchSummary`; ``out_dir/report.csv`` holds one row per face or failed photo.  On
        KeyboardInterrupt (and SIGTERM under :func:`terminate_as_interrupt`) the temporary folders are
        removed, the report is written with what is finished, and the interrupt is re-raised.
    """
    started = time.perf_counter()
    options = setup.options
    color = check_model_outputs(setup.model, options.outputs)
    extras = MeshExtras.from_model(setup.model, options.outputs.texture_size if color == "texture" else None)
    fingerprint = setup.fingerprint(color)
    settings = setup.observe_settings()
    factory = setup.detector_factory
    jobs = plan_jobs(paths)
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
            rows = [row for index in sorted(rows_by_job) for row in rows_by_job[index]]
            write_report(out_root / REPORT_NAME, rows)

        in_flight: dict[int, _Photo] = {}
        pool: ProcessPoolExecutor | None = None
        local: PhotoWorker | None = None
        try:
            if options.jobs > 0:
                import multiprocessing

                pool = ProcessPoolExecutor(
                    max_workers=options.jobs, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_process, initargs=(settings, options.outputs, color, extras, factory))
                executor: _Executor = pool
                prepare_fn: Callable[[PhotoJob], Any] = _prepare_in_process
                write_fn: Callable[[Any], WriteOutcome] = _write_in_process
            else:
                local = PhotoWorker(settings, options.outputs, color, extras, factory)
                executor = _InlineExecutor(local)
                prepare_fn, write_fn = local.prepare, local.write
            _pipeline(todo, executor, prepare_fn, write_fn, pool is not None, folder, setup, fingerprint, in_flight,
                      rows_by_job, summary, progress, flush)
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


def _pipeline(todo: list[PhotoJob], executor: _Executor, prepare_fn: Callable[[PhotoJob], Any],
              write_fn: Callable[[Any], WriteOutcome], pickled: bool, folder: OutputFolder, setup: FitSetup,
              fingerprint: dict[str, Any], in_flight: dict[int, _Photo],
              rows_by_job: dict[int, list[dict[str, Any]]], summary: BatchSummary, progress: BatchProgress | None,
              flush: Callable[[], None]) -> None:
    """The main loop of :func:`run_batch`: prepare in order, fit in batches, write, commit."""
    options = setup.options
    prepares: deque[tuple[PhotoJob, Future]] = deque()
    writes: deque[tuple[_Photo, int, Future]] = deque()
    waiting: list[tuple[_Photo, int, Observation]] = []
    upcoming = iter(todo)
    max_prepares = max(2 * options.jobs, 1) + options.batch_size
    last_flush = time.monotonic()

    def finish(photo: _Photo) -> None:
        job = photo.prepared.job
        del in_flight[job.index]
        committed = any(row["status"] == STATUS_OK for row in photo.rows)
        if committed:
            marker = {"schema": MARKER_SCHEMA, "fit3dmm_version": __version__, "input": str(job.path),
                      "options": fingerprint, "rows": photo.rows, "files": sorted(photo.files)}
            try:
                folder.commit(photo.temp, job.name, marker)
            except OSError as exc:  # e.g. the disk is full: this photo fails, the run goes on
                committed = False
                for row in photo.rows:
                    if row["status"] == STATUS_OK:
                        row.update(status=STATUS_ERROR, output="",
                                   error=f"writing the outputs failed: {type(exc).__name__}: {_one_line(exc)}")
        if committed:
            summary.fitted += 1
            summary.faces += sum(row["status"] == STATUS_OK for row in photo.rows)
            summary.landmark_errors.extend(float(row["landmark_error_px"]) for row in photo.rows
                                           if row["status"] == STATUS_OK and row.get("landmark_error_px") != "")
        else:
            folder.discard(photo.temp)
            summary.failed += 1
        rows_by_job[job.index] = photo.rows
        if progress is not None:
            progress.photo_done(PhotoOutcome(job, photo.rows, committed))

    def collect_writes(block: bool) -> None:
        while writes and (block or writes[0][2].done()):
            photo, face, future = writes.popleft()
            outcome: WriteOutcome = future.result()
            row = photo.rows[face]
            row["time_write_s"] = round(outcome.seconds, 4)
            if outcome.error:
                row.update(status=STATUS_ERROR, error=outcome.error, output="")
            else:
                photo.files += outcome.files
            photo.pending -= 1
            if photo.pending == 0:
                finish(photo)

    def fit_waiting(count: int) -> None:
        group, waiting[:] = waiting[:count], waiting[count:]
        fits = fit_faces(setup.model, [obs for _, _, obs in group], setup.weights, setup.config, setup.fitter)
        for (photo, face, _), fit in zip(group, fits, strict=True):
            row = photo.rows[face]
            row.update(face_row(fit))
            if fit.result is None:
                photo.pending -= 1
                if photo.pending == 0:
                    finish(photo)
                continue
            stem = "face" if options.faces == "largest" else f"face{face}"
            row["output"] = f"{photo.prepared.job.name}/{stem}{options.outputs.mesh_format}"
            extra = {"photo": photo.prepared.job.path.name, "face_index": face, "options": fingerprint}
            task = WriteTask(photo.prepared.job, face, stem, photo.temp, fit.result, extra)
            writes.append((photo, face, executor.submit(write_fn, pickle.dumps(task) if pickled else task)))

    while True:
        while len(prepares) < max_prepares and (job := next(upcoming, None)) is not None:
            prepares.append((job, executor.submit(prepare_fn, job)))
        if not prepares:
            break
        job, future = prepares.popleft()
        result = future.result()
        prepared: Prepared = pickle.loads(result) if pickled else result
        if prepared.status != STATUS_OK:
            rows = [_base_row(job, prepared)]
            rows_by_job[job.index] = rows
            summary.failed += 1
            if progress is not None:
                progress.photo_done(PhotoOutcome(job, rows, False))
        else:
            rows = []
            for face, size in enumerate(prepared.face_sizes):
                rows.append({**_base_row(job, prepared), "face": face, "face_size_px": round(size, 2)})
            photo = _Photo(prepared, folder.new_temp(job.name), rows, len(prepared.faces))
            in_flight[job.index] = photo
            waiting.extend((photo, face, obs) for face, obs in enumerate(prepared.faces))
            prepared.faces = []
        while len(waiting) >= options.batch_size:
            fit_waiting(options.batch_size)
        collect_writes(block=False)
        if time.monotonic() - last_flush > REPORT_FLUSH_SECONDS:
            flush()
            last_flush = time.monotonic()
    if waiting:
        fit_waiting(len(waiting))
    collect_writes(block=True)


def fit_to_mesh_path(path: str | Path, target: str | Path, setup: FitSetup, *,
                     progress: Callable[[int, int, float], None] | None = None) -> tuple[list[Path], FaceFit]:
    """Fit the largest face of one photo and write the mesh ``target`` (.obj/.ply/.glb) and its siblings.

    Args:
        progress: called as ``progress(step, total_steps, loss)`` during the fit.
    Returns:
        The paths written and the fit.
    Raises (one-line messages naming the file):
        ImageLoadError, NoFaceError, FaceTooSmallError: as :func:`fit3dmm.api.observe`;
        ValueError: the fit diverged, also after the retry.
    """
    from fit3dmm.api import FaceTooSmallError

    target = Path(target)
    outputs = dataclasses.replace(setup.options.outputs, mesh_format=target.suffix)
    color = check_model_outputs(setup.model, outputs)
    extras = MeshExtras.from_model(setup.model, outputs.texture_size if color == "texture" else None)
    worker = PhotoWorker(setup.observe_settings("largest"), outputs, color, extras, setup.detector_factory)
    try:
        job = PhotoJob(0, Path(path), target.stem)
        prepared = worker.prepare(job)
        errors = {STATUS_LOAD_ERROR: ImageLoadError, STATUS_NO_FACE: NoFaceError, STATUS_TOO_SMALL: FaceTooSmallError}
        if prepared.status != STATUS_OK:
            raise errors.get(prepared.status, ValueError)(prepared.error)
        fitter = setup.fitter

        def fit_with_progress(m: FaceModel, o: Observation, w: dict[str, float], c: FitConfig) -> FitResult:
            return fitter(m, o, w, c, progress=progress) if progress is not None else fitter(m, o, w, c)

        fit = fit_faces(setup.model, prepared.faces, setup.weights, setup.config, fit_with_progress)[0]
        if fit.result is None:
            raise ValueError(f"{job.path}: {fit.error}")
        paths = OutputPaths.for_options(target, outputs)
        extra = {"photo": job.path.name, "face_index": 0}
        written = save_outputs(fit.result, 0, worker.load_photo(job.path), paths, color=color, space=outputs.space,
                               extras=extras, texture_size=outputs.texture_size, params_extra=extra)
        return written, fit
    finally:
        worker.close()
