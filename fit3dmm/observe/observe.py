"""Photo → :class:`~fit3dmm.types.observation.Observation`s: the one observe path of every entry point.

:func:`observe_photo` detects the faces of a photo (on a copy shrunk to ``detect_max_side``; when none is found
there, in tiles, see :func:`~fit3dmm.observe.detect.detect_small_faces`), refuses faces below
``min_face_size``, cuts each face's aligned crop from the full-resolution photo (:func:`observe_face`)
and, when asked, adds its part segmentation and target point sets (the built-in segmenter, or an imported
label map of the photo).  The CLI, the Python API, batch runs, compare, training and the benchmarks all
observe photos through it with one :class:`ObserveOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fit3dmm.defaults import CROP_SIZE, DETECT_MAX_SIDE, MIN_FACE_SIZE
from fit3dmm.observe.crop import apply_affine, crop_box, crop_matrix, warp_to_crop
from fit3dmm.observe.detect import Detection, FaceLocator, LandmarkDetector, NoFaceError, detect_small_faces
from fit3dmm.observe.image import downscale_for_detection, points_to_full_resolution
from fit3dmm.observe.labelmaps import LabelMapParts
from fit3dmm.observe.points import DEFAULT_COUNTS
from fit3dmm.observe.segment import segment_observation
from fit3dmm.types.observation import Observation

FACES = ("largest", "all")


class FaceTooSmallError(ValueError):
    """Faces were found, but all are smaller than the minimum size; the message names the file and sizes."""


@dataclass(frozen=True)
class ObserveOptions:
    """How photos are observed.

    Attributes:
        size: side of the square working crop in pixels.
        faces: ``"largest"`` (one face per photo) or ``"all"``.
        min_face_size: faces whose landmark box (larger side, photo pixels) is smaller are refused.
        detect_max_side: the detector sees a copy shrunk so that its longer side is at most this many pixels
            (the crop is cut from the full-resolution photo); None detects on the photo itself.  The search
            for small faces tiles the same copy, so this also sets the smallest face found in a large photo
            (about 40 px wide in the copy) and what a photo without a face costs (0.7 s at 2048 px).
        segment: add part masks, hair, forehead line and target point sets (for losses that use parts).
        skin_points: the skin's target set is reduced to this many points by farthest point sampling (the
            paper's 3000; tracking takes fewer, the sampling being a third of a frame's cost).
    """

    size: int = CROP_SIZE
    faces: str = "largest"
    min_face_size: float = MIN_FACE_SIZE
    detect_max_side: int | None = DETECT_MAX_SIDE
    segment: bool = False
    skin_points: int = DEFAULT_COUNTS["skin"]

    def __post_init__(self) -> None:
        if self.faces not in FACES:
            raise ValueError(f"--faces must be 'largest' or 'all', got {self.faces!r}")
        if not isinstance(self.size, int) or not 64 <= self.size <= 1024:
            raise ValueError(f"--size must be an integer in 64..1024, got {self.size!r}")
        if not (isinstance(self.min_face_size, int | float) and 0 <= self.min_face_size < 1e6):
            raise ValueError(f"--min-face-size must be a number ≥ 0, got {self.min_face_size!r}")
        if not isinstance(self.skin_points, int) or self.skin_points < 1:
            raise ValueError(f"skin_points must be an integer ≥ 1, got {self.skin_points!r}")
        if self.detect_max_side is not None and (
                not isinstance(self.detect_max_side, int) or not 64 <= self.detect_max_side <= 16384):
            raise ValueError(f"--detect-max-side must be an integer in 64..16384, got {self.detect_max_side!r}")


def observe_photo(
    photo: np.ndarray,
    detector: LandmarkDetector,
    options: ObserveOptions,
    *,
    name: str = "image",
    labels: LabelMapParts | None = None,
) -> list[Observation]:
    """Detect the faces of one photo and build one Observation (B = 1) per face.

    When the detector finds no face and is also a :class:`~fit3dmm.observe.detect.FaceLocator` (mediapipe),
    :func:`~fit3dmm.observe.detect.detect_small_faces` looks for small faces in tiles of the shrunk copy (of
    every size with ``faces="all"``, else down to the first size with a face) and takes their landmarks on
    crops of the full-resolution photo; a photo with a face found directly pays nothing for it.

    Args:
        photo: (H, W, 3) uint8 RGB.
        detector: the landmark backend.
        options: crop size, faces, minimum face size, detection size, segmentation.
        name: identifier of the photo in messages and ``Observation.names`` (``<name>#<face>``).
        labels: part masks of an imported label map of the photo, used instead of the built-in segmenter
            (with ``options.segment``).
    Raises:
        NoFaceError: no face in the photo (the message names the file).
        FaceTooSmallError: faces were found but all are below ``options.min_face_size``.
    """
    max_side = options.detect_max_side
    small, scale = (photo, 1.0) if max_side is None else downscale_for_detection(photo, max_side)
    found = detector.detect(small)
    if scale != 1.0:
        found = [_detection_to_full_resolution(det, scale) for det in found]
    if not found and isinstance(detector, FaceLocator):
        found = detect_small_faces(detector, detector, photo, small, scale, every_level=options.faces == "all")
    if not found:
        raise NoFaceError(f"{name}: no face found")
    big_enough = [det for det in found if det.size >= options.min_face_size]
    if not big_enough:
        sizes = ", ".join(f"{det.size:.0f}" for det in found)
        raise FaceTooSmallError(f"{name}: face too small ({sizes} px landmark box, minimum "
                                f"{options.min_face_size:g} px)")
    chosen = big_enough[:1] if options.faces == "largest" else big_enough
    out = []
    for index, det in enumerate(chosen):
        obs = observe_face(photo, det, size=options.size, name=f"{name}#{index}")
        if options.segment:
            obs = segment_observation(obs, labels, {**DEFAULT_COUNTS, "skin": options.skin_points})
        out.append(obs)
    return out


def face_size(observation: Observation) -> float:
    """Larger side of the detected landmark box in photo pixels (dense landmarks when present)."""
    points = observation.landmarks if observation.landmarks is not None else observation.landmarks68
    photo = observation.crop_points_to_photo(points.double())[0]
    extent = photo.max(0).values - photo.min(0).values
    return float(extent.max())


def _detection_to_full_resolution(detection: Detection, scale: float) -> Detection:
    """A detection made on a :func:`downscale_for_detection` copy (factor ``scale``), in photo pixels."""
    box = points_to_full_resolution(detection.box.reshape(2, 2), scale).reshape(4)
    return Detection(landmarks=points_to_full_resolution(detection.landmarks, scale),
                     landmarks68=points_to_full_resolution(detection.landmarks68, scale),
                     box=box, score=detection.score)


def observe_face(
    photo: np.ndarray,
    detection: Detection,
    *,
    size: int = CROP_SIZE,
    name: str = "",
    crop_scale: float = 1.45,
) -> Observation:
    """An Observation (B = 1) of one detected face: the aligned crop and its landmarks.

    Args:
        photo: (H, W, 3) uint8 RGB.
        detection: the face's landmarks in photo pixels.
        size: side of the square working crop in pixels (224 as in the paper).
        name: identifier kept in ``Observation.names``.
        crop_scale: crop side / landmark box side.
    """
    if size < 32:
        raise ValueError(f"crop size must be ≥ 32 px, got {size}")
    left, top, side = crop_box(detection.landmarks, crop_scale)
    to_photo = crop_matrix(left, top, side, size)
    to_crop = np.linalg.inv(to_photo)
    crop = warp_to_crop(photo, to_photo, size)
    image = torch.from_numpy(crop).permute(2, 0, 1).float().div(255.0)[None]
    lmk = apply_affine(to_crop, detection.landmarks)
    lmk68 = apply_affine(to_crop, detection.landmarks68)
    height, width = photo.shape[:2]
    return Observation(
        image=image,
        crop_to_photo=torch.as_tensor(to_photo, dtype=torch.float64)[None],
        photo_size=torch.tensor([[width, height]], dtype=torch.float32),
        landmarks=torch.as_tensor(lmk, dtype=torch.float32)[None],
        landmarks68=torch.as_tensor(lmk68, dtype=torch.float32)[None],
        names=[name],
    )
