"""The public Python API: photo(s) in, :class:`~fit3dmm.fitting.result.FitResult` out.

The command line calls exactly these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from fit3dmm.fitting.engine import FitConfig, fit_observation
from fit3dmm.fitting.result import FitResult
from fit3dmm.losses.registry import loss_class, parse_losses
from fit3dmm.models.annotate import ensure_annotations
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.store import load_model
from fit3dmm.observe.detect import Detection, LandmarkDetector, NoFaceError, get_detector
from fit3dmm.observe.image import downscale_for_detection, load_image, points_to_full_resolution
from fit3dmm.observe.labelmaps import load_label_map
from fit3dmm.observe.observation import Observation
from fit3dmm.observe.observe import observe_face
from fit3dmm.observe.points import DEFAULT_COUNTS
from fit3dmm.observe.segment import segment_observation

# the paper's loss set without the perceptual term (face-recognition weights cannot be shipped); the
# photometric term joins for models with an albedo
DEFAULT_LOSSES = "prdl,lmk,reg"
DETECT_MAX_SIDE = 2048
"""Photos whose longer side exceeds this are shrunk (a copy) for the landmark detector."""


class FaceTooSmallError(ValueError):
    """Faces were found, but all are smaller than the minimum size; the message names the file and sizes."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def default_losses(model: FaceModel) -> str:
    """The paper's loss set: PRDL + landmarks + regulariser, plus the photometric term with an albedo."""
    return DEFAULT_LOSSES + (",pho" if model.has_albedo else "")


def needs_parts(weights: dict[str, float]) -> bool:
    """Whether any selected loss needs part masks or point sets (and so part annotations on the model)."""
    return any({"masks", "points"} & set(loss_class(name).needs) for name in weights)


def part_targets(seg: str | Path | None = None, seg_format: str | None = None,
                 counts: dict[str, int] | None = None) -> Callable[[Observation, np.ndarray], Observation]:
    """A ``segmentation`` step for :func:`observe`/:func:`fit`: the built-in landmark segmenter, or the
    label map ``seg`` of the photo in convention ``seg_format`` (checked against the photo's size)."""
    if (seg is None) != (seg_format is None):
        raise ValueError("--seg and --seg-format go together")

    def add_targets(observation: Observation, photo: np.ndarray) -> Observation:
        parts = None if seg is None else load_label_map(seg, seg_format, photo.shape[:2])
        return segment_observation(observation, parts, counts or DEFAULT_COUNTS)

    return add_targets


def observe(
    image: str | Path | np.ndarray,
    *,
    detector: LandmarkDetector | None = None,
    size: int = 224,
    faces: str = "largest",
    name: str | None = None,
    segmentation: Callable[[Observation, np.ndarray], Observation] | None = None,
    max_side: int | None = DETECT_MAX_SIDE,
    min_face_size: float = 0.0,
) -> list[Observation]:
    """Detect the faces of one photo and build one Observation (B = 1) per face.

    Args:
        image: a path or an (H, W, 3) uint8 RGB array.
        detector: a landmark backend (default mediapipe).
        size: working crop size.
        faces: ``"largest"`` or ``"all"``.
        segmentation: adds part masks and point sets to an Observation given the photo (see
            :mod:`fit3dmm.observe.segment`); None keeps landmarks only.
        max_side: the detector sees a copy shrunk so that its longer side is at most this many pixels
            (:func:`~fit3dmm.observe.image.downscale_for_detection`); the landmarks are mapped back and the
            crop is cut from the full-resolution photo.  None: detect on the photo itself.
        min_face_size: faces whose landmark box (larger side, photo pixels) is smaller are dropped.
    Raises:
        NoFaceError: no face in the photo (the message names the file).
        FaceTooSmallError: faces were found but all are below ``min_face_size``.
    """
    if faces not in ("largest", "all"):
        raise ValueError(f"faces must be 'largest' or 'all', got {faces!r}")
    if max_side is not None and max_side < 64:
        raise ValueError(f"max_side must be ≥ 64 px or None, got {max_side}")
    if not min_face_size >= 0.0:
        raise ValueError(f"min_face_size must be ≥ 0, got {min_face_size}")
    label = name or (str(image) if not isinstance(image, np.ndarray) else "image")
    photo = load_image(image) if not isinstance(image, np.ndarray) else image
    small, scale = (photo, 1.0) if max_side is None else downscale_for_detection(photo, max_side)
    own = detector is None
    detector = detector or get_detector("mediapipe")
    try:
        found = detector.detect(small)
    finally:
        if own:
            detector.close()
    if scale != 1.0:
        found = [_detection_to_full_resolution(det, scale) for det in found]
    if not found:
        raise NoFaceError(f"{label}: no face found")
    big_enough = [det for det in found if det.size >= min_face_size]
    if not big_enough:
        sizes = ", ".join(f"{det.size:.0f}" for det in found)
        raise FaceTooSmallError(f"{label}: face too small ({sizes} px landmark box, minimum {min_face_size:g} px)")
    found = big_enough[:1] if faces == "largest" else big_enough
    out = []
    for index, det in enumerate(found):
        obs = observe_face(photo, det, size=size, name=f"{label}#{index}")
        if segmentation is not None:
            obs = segmentation(obs, photo)
        out.append(obs)
    return out


def _detection_to_full_resolution(detection: Detection, scale: float) -> Detection:
    """A detection made on a :func:`downscale_for_detection` copy (factor ``scale``), in photo pixels."""
    box = points_to_full_resolution(detection.box.reshape(2, 2), scale).reshape(4)
    return Detection(landmarks=points_to_full_resolution(detection.landmarks, scale),
                     landmarks68=points_to_full_resolution(detection.landmarks68, scale),
                     box=box, score=detection.score)


def fit(
    images: str | Path | np.ndarray | Sequence[str | Path | np.ndarray] | Observation,
    *,
    model: str | FaceModel = "ict",
    losses: str | Sequence[str] | None = None,
    weights: dict[str, float] | None = None,
    config: FitConfig | None = None,
    size: int = 224,
    device: str | torch.device | None = "auto",
    detector: LandmarkDetector | None = None,
    segmentation: Callable[[Observation, np.ndarray], Observation] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    init: str | Path | None = None,
) -> FitResult:
    """Reconstruct the largest face of each image (batched: B images fitted together).

    Args:
        images: one or several photos (paths or RGB arrays), or a ready Observation.
        model: a model name/path for :func:`fit3dmm.models.store.load_model`, or a FaceModel.
        losses: e.g. ``"prdl,lmk,reg"``; default: the paper's set when the model has part annotations.
        weights: overrides of the default loss weights.
        config: iterations and learning rates.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        init: a regressor from ``fit3dmm train`` (``run/model.pt``) whose prediction starts the fit
            (:func:`regressor_start`).
    """
    dev = resolve_device(device)
    face_model = load_model(model) if not isinstance(model, FaceModel) else model
    face_model = face_model.to(dev)
    selected = parse_losses(losses or default_losses(face_model), weights)
    if needs_parts(selected):
        ensure_annotations(face_model)
        segmentation = segmentation or part_targets()
    if isinstance(images, Observation):
        observation = images
    else:
        items = [images] if isinstance(images, str | Path | np.ndarray) else list(images)
        if not items:
            raise ValueError("no image given")
        own = detector is None
        detector = detector or get_detector("mediapipe")
        try:
            observations = [observe(i, detector=detector, size=size, segmentation=segmentation)[0]
                            for i in items]
        finally:
            if own:
                detector.close()
        observation = Observation.stack(observations)
    fitter = fit_observation if init is None else regressor_start(init, face_model)
    return fitter(face_model, observation, selected, config, progress=progress)


def regressor_start(path: str | Path, model: FaceModel) -> Callable[..., FitResult]:
    """A fitter with the signature of :func:`~fit3dmm.fitting.engine.fit_observation` that starts from the
    prediction of the regressor at ``path`` (``fit3dmm train``'s ``run/model.pt``, trained for ``model``).

    Raises:
        FileNotFoundError / ValueError: one line naming ``path``: missing, unreadable, or trained for
        another face model.
    """
    from fit3dmm.models.face_model import file_checksum
    from fit3dmm.train.regressor import RegressorStart, check_model, load_regressor

    regressor, meta = load_regressor(path)
    try:
        check_model(meta, model)
    except ValueError as exc:
        raise ValueError(f"regressor {path}: {exc}") from None
    return RegressorStart(regressor, fingerprint=file_checksum(str(path)))


def landmark_error(result: FitResult, index: int = 0) -> float:
    """Mean distance in photo pixels between the fitted model's projected 68 landmarks and the detected ones."""
    obs = result.observation
    if obs.landmarks68 is None:
        raise ValueError("the observation has no detected landmarks")
    detected = obs.crop_points_to_photo(obs.landmarks68.to(result.landmarks68_photo.dtype))
    return float((result.landmarks68_photo[index] - detected[index]).norm(dim=-1).mean())
