"""Photo(s) in, :class:`~fit3dmm.types.result.FitResult` out: the functions users call, over one
:class:`~fit3dmm.api.pipeline.Pipeline`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from fit3dmm.api.pipeline import Pipeline, default_detector
from fit3dmm.defaults import DEFAULT_MODEL
from fit3dmm.fitting.engine import Start
from fit3dmm.fitting.problem import Progress
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.detect import LandmarkDetector
from fit3dmm.observe.image import load_image
from fit3dmm.observe.labelmaps import LabelMapParts, load_label_map
from fit3dmm.observe.observe import ObserveOptions, observe_photo
from fit3dmm.types.observation import Observation
from fit3dmm.types.result import FitResult

Image = str | Path | np.ndarray


def _label_map(seg: str | Path | None, seg_format: str | None, photo: np.ndarray) -> LabelMapParts | None:
    """The imported label map of ``photo`` (None without one); its notes (a resized map) become warnings."""
    if seg is None:
        return None
    labels = load_label_map(seg, seg_format, photo.shape[:2])
    for note in labels.notes:
        warnings.warn(note, stacklevel=3)
    return labels


def observe_faces(
    image: Image,
    *,
    options: ObserveOptions | None = None,
    detector: LandmarkDetector | None = None,
    name: str | None = None,
    seg: str | Path | None = None,
    seg_format: str | None = None,
) -> list[Observation]:
    """Detect the faces of one photo and build one Observation (B = 1) per face.

    Args:
        image: a path or an (H, W, 3) uint8 RGB array.
        options: crop size, faces, minimum face size, detection size, whether to add the part segmentation
            (default :class:`~fit3dmm.observe.observe.ObserveOptions`: landmarks only).
        detector: a landmark backend (default mediapipe, opened and closed here).
        name: identifier in messages (default the path).
        seg, seg_format: a label map of the photo from another face parser, used for the part segmentation.
    Raises:
        ImageLoadError, NoFaceError, FaceTooSmallError, LabelMapError: one line naming the file.
    """
    if (seg is None) != (seg_format is None):
        raise ValueError("--seg and --seg-format go together")
    label = name or (str(image) if not isinstance(image, np.ndarray) else "image")
    photo = image if isinstance(image, np.ndarray) else load_image(image)
    labels = _label_map(seg, seg_format, photo)
    with ExitStack() as stack:
        if detector is None:
            detector = default_detector()
            stack.callback(detector.close)
        return observe_photo(photo, detector, options or ObserveOptions(), name=label, labels=labels)


def fit(
    images: Image | Sequence[Image] | Observation,
    *,
    model: str | Path | FaceModel = DEFAULT_MODEL,
    losses: str | Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    schedule: Schedule | None = None,
    observe: ObserveOptions | None = None,
    device: str | torch.device | None = "auto",
    detector: LandmarkDetector | None = None,
    seg: str | Path | None = None,
    seg_format: str | None = None,
    progress: Progress | None = None,
    init: str | Path | Start | None = None,
    on_annotate: Callable[[str], None] | None = None,
    annotate: bool = True,
) -> FitResult:
    """Reconstruct the largest face of each image (batched: B images fitted together), exactly as
    ``fit3dmm fit`` does.

    Args:
        images: one or several photos (paths or RGB arrays), or a ready Observation.
        model: a model name/path for :func:`~fit3dmm.models.store.load_model`, or a FaceModel.
        losses: e.g. ``"prdl,lmk,reg"``; default the paper's set (:func:`~fit3dmm.api.pipeline.default_losses`).
        weights: overrides of the default loss weights.
        schedule: iteration counts and step sizes.
        observe: crop size, minimum face size, detection size (the part segmentation follows the losses).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seg, seg_format: a label map of the (single) photo used for the part segmentation.
        init: a regressor from ``fit3dmm train`` (``run/model.pt``) whose prediction starts the fit.
        annotate: annotate the model (Algorithm 1, once, cached) when the losses use parts or landmarks.
    """
    pipeline = Pipeline.create(model=model, losses=losses, weights=weights, schedule=schedule, observe=observe,
                               device=device, init=init, on_annotate=on_annotate, annotate=annotate)
    if isinstance(images, Observation):
        return pipeline.fit(images, progress)
    items = [images] if isinstance(images, str | Path | np.ndarray) else list(images)
    if not items:
        raise ValueError("no image given")
    if seg is not None and len(items) > 1:
        raise ValueError(f"{seg}: a label map applies to one photo, got {len(items)}")
    if (seg is None) != (seg_format is None):
        raise ValueError("--seg and --seg-format go together")
    with ExitStack() as stack:
        if detector is None:
            detector = pipeline.detector_factory()
            stack.callback(detector.close)
        observations = []
        for item in items:
            photo = item if isinstance(item, np.ndarray) else load_image(item)
            name = "image" if isinstance(item, np.ndarray) else str(item)
            labels = _label_map(seg, seg_format, photo)
            observations.append(pipeline.observe(photo, detector, name=name, labels=labels)[0])
    return pipeline.fit(Observation.stack(observations), progress)


def landmark_error(result: FitResult, index: int = 0) -> float:
    """Mean distance in photo pixels between the fitted model's projected 68 landmarks and the detected ones."""
    obs = result.observation
    if obs.landmarks68 is None:
        raise ValueError("the observation has no detected landmarks")
    detected = obs.crop_points_to_photo(obs.landmarks68.to(result.landmarks68_photo.dtype))
    return float((result.landmarks68_photo[index] - detected[index]).norm(dim=-1).mean())
