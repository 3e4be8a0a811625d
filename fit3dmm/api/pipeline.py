"""The one problem setup: device, face model with its assets, losses, observe path, schedule and start.

Every entry point (the command line, :func:`fit3dmm.api.fit`, batch runs, compare, training, the benchmarks)
builds one :class:`Pipeline` with :meth:`Pipeline.create` and observes and fits photos through it, so that
they cannot disagree on how a photo is observed or fitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fit3dmm.annotate import ensure_annotations, is_annotated
from fit3dmm.defaults import (
    DEFAULT_LOSSES,
    DEFAULT_MODEL,
    DEVICES,
    STATUS_DIVERGED,
    STATUS_ERROR,
    STATUS_OK,
    check_device,
)
from fit3dmm.fitting.engine import Start, fit_observation, one_line
from fit3dmm.fitting.problem import Progress
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.losses.registry import loss_class, parse_losses
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.regressor import regressor_start
from fit3dmm.models.store import load_model
from fit3dmm.observe.detect import LandmarkDetector, get_detector
from fit3dmm.observe.labelmaps import LabelMapParts
from fit3dmm.observe.observe import ObserveOptions, observe_photo
from fit3dmm.types.observation import Observation
from fit3dmm.types.result import FitResult


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as given.

    Raises:
        ValueError: an unknown device name, or CUDA asked for where torch sees none (one line each).
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(check_device(device) if isinstance(device, str) else device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: unknown device; use {DEVICES}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def default_losses(model: FaceModel) -> str:
    """The paper's loss set: PRDL + landmarks + regulariser, plus the photometric term with an albedo."""
    return DEFAULT_LOSSES + (",pho" if model.has_albedo else "")


def needs_parts(weights: Mapping[str, float]) -> bool:
    """Whether any selected loss needs part masks or point sets (and so part annotations on the model)."""
    return any({"masks", "points"} & set(loss_class(name).needs) for name in weights)


def default_detector() -> LandmarkDetector:
    """The default landmark backend (mediapipe); a module-level function, so it can be sent to workers."""
    return get_detector("mediapipe")


@dataclass
class FaceFit:
    """The fit of one face: a B = 1 CPU FitResult (None when it failed), status, error, retried, seconds."""

    result: FitResult | None
    status: str
    error: str = ""
    retried: bool = False
    seconds: float = 0.0


@dataclass
class Pipeline:
    """What every photo of a run is observed and fitted with.

    Attributes:
        model: the face model, on the device to fit on (annotated when a loss needs parts).
        weights: the selected losses ({name: λ}).
        schedule: the solver schedule.
        observe_options: how photos are observed (``segment`` is set when a loss needs parts).
        start: starting coefficients for each fit (e.g. a regressor's, ``--init``); None: the PnP pose and
            the mean face.
        detector_factory: builds a landmark detector (in each worker process of a batch run; it must then be
            picklable, e.g. a module-level function).
    """

    model: FaceModel
    weights: dict[str, float]
    schedule: Schedule = field(default_factory=Schedule)
    observe_options: ObserveOptions = field(default_factory=ObserveOptions)
    start: Start | None = None
    detector_factory: Callable[[], LandmarkDetector] = default_detector

    @classmethod
    def create(
        cls,
        *,
        model: str | Path | FaceModel = DEFAULT_MODEL,
        losses: str | Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
        schedule: Schedule | None = None,
        observe: ObserveOptions | None = None,
        device: str | torch.device | None = "auto",
        init: str | Path | Start | None = None,
        detector_factory: Callable[[], LandmarkDetector] = default_detector,
        on_annotate: Callable[[str], None] | None = None,
        annotate: bool = True,
    ) -> Pipeline:
        """Check the options, load the model (by name, path, or as given), select the losses, annotate the
        model when they use parts or landmarks (Algorithm 1, once, cached; ``on_annotate`` is told first;
        ``annotate=False`` keeps the model as it is) and move it to ``device``.

        Args:
            losses: e.g. ``"prdl,lmk,reg"``; default :func:`default_losses`.
            weights: overrides of the losses' default weights.
            init: a regressor from ``fit3dmm train`` (``run/model.pt``) or a :data:`Start`.
        Raises:
            ValueError, FileNotFoundError: bad options, a missing model or regressor (one line).
        """
        if losses:
            parse_losses(losses, weights)  # names and weights, before the model is loaded
        dev = resolve_device(device)
        face_model = model if isinstance(model, FaceModel) else load_model(model)
        selected = parse_losses(losses or default_losses(face_model), weights)
        start = regressor_start(init, face_model) if isinstance(init, str | Path) else init
        segment = needs_parts(selected)
        if annotate and (segment or "lmk" in selected) and not is_annotated(face_model):
            if on_annotate is not None:
                on_annotate(f"annotating {face_model.name} with Algorithm 1 (once; cached for later runs)...")
            ensure_annotations(face_model)
        return cls(face_model.to(dev), selected, schedule or Schedule(),
                   replace(observe or ObserveOptions(), segment=segment), start, detector_factory)

    @property
    def device(self) -> torch.device:
        return self.model.mean.device

    def check_labels(self, what: str) -> None:
        """Refuse a label map (``what`` names it) that no selected loss would use."""
        if not self.observe_options.segment:
            raise ValueError(f"{what}: a label map is given but none of the losses {', '.join(self.weights)} uses "
                             "segmentation")

    def observe(self, photo: np.ndarray, detector: LandmarkDetector, *, name: str = "image",
                labels: LabelMapParts | None = None) -> list[Observation]:
        """One Observation per face of ``photo`` (:func:`~fit3dmm.observe.observe.observe_photo`)."""
        if labels is not None:
            self.check_labels(name)
        return observe_photo(photo, detector, self.observe_options, name=name, labels=labels)

    def fit(self, observation: Observation, progress: Progress | None = None) -> FitResult:
        """Fit the B faces of ``observation`` (one retry on a safer schedule for diverged faces)."""
        return fit_observation(self.model, observation, self.weights, self.schedule, progress=progress,
                               init=self.start)

    def fit_faces(self, observations: Sequence[Observation], progress: Progress | None = None) -> list[FaceFit]:
        """Fit B faces together, each reported on its own: a face whose fit raises or diverges fails alone.

        Returns:
            One :class:`FaceFit` per observation, in order; when the batched fit raises, each face is fitted
            alone so that one bad face does not take the others down.
        """
        if not observations:
            return []
        start = time.perf_counter()
        try:
            result = self.fit(Observation.stack(list(observations)), progress)
        except Exception as exc:
            if len(observations) > 1:
                return [self.fit_faces([o])[0] for o in observations]
            return [FaceFit(None, STATUS_ERROR, f"fitting failed: {type(exc).__name__}: {one_line(exc)}",
                            seconds=time.perf_counter() - start)]
        seconds = (time.perf_counter() - start) / len(observations)
        fits = []
        for i, (status, retried) in enumerate(zip(result.status, result.retried, strict=True)):
            if status == STATUS_OK:
                fits.append(FaceFit(result.select(i), STATUS_OK, retried=retried, seconds=seconds))
            else:
                fits.append(FaceFit(None, STATUS_DIVERGED, "the loss became non-finite (NaN or inf); retried once "
                                    "with halved learning rates, still diverged", retried=retried, seconds=seconds))
        return fits

    def fingerprint(self, **outputs: Any) -> dict[str, Any]:
        """The settings that decide a face's files (stored with batch outputs; compared on resume), with the
        output settings ``outputs``."""
        o = self.observe_options
        return {"model": self.model.name, "model_checksum": self.model.checksum, "losses": dict(self.weights),
                **self.schedule.fingerprint(), "size": o.size, "faces": o.faces,
                "min_face_size": float(o.min_face_size), "detect_max_side": o.detect_max_side, **outputs,
                "init": getattr(self.start, "fingerprint", None)}
