"""Face detection and landmarks behind a small backend interface.

The default backend is mediapipe FaceMesh (478 points with ``refine_landmarks``), which ships its models
inside the wheel and so works offline.  Other backends (face-alignment, dlib) only need to return
:class:`Detection` objects; the rest of fit3dmm never calls a detector library directly.

FaceMesh finds a face only when it spans about a fifth of the image's longer side (its detector sees the
image shrunk to 128 px).  :func:`detect_small_faces` is the fallback for smaller faces: a
:class:`FaceLocator` (mediapipe's full-range face detector) looks at the whole image and then at ever
smaller overlapping tiles, and FaceMesh runs on an upscaled crop of each face box taken from the
full-resolution photo.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from fit3dmm.observe.crop import apply_affine, crop_matrix, warp_to_crop
from fit3dmm.observe.image import points_to_full_resolution

# mediapipe FaceMesh index of each iBUG-68 landmark (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
# mouth 48-67), subject's right first as in iBUG.  A common fixed correspondence; the jaw points of
# FaceMesh lie on the face outline like the iBUG contour.
MEDIAPIPE_TO_68 = np.array(
    [162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
     71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
     168, 197, 5, 4, 75, 97, 2, 326, 305,
     33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
     61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87],
    dtype=np.int64,
)

# mediapipe FaceMesh's face outline (FACEMESH_FACE_OVAL): points that slide along the silhouette with the pose
MEDIAPIPE_FACE_OVAL = np.array(
    [10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284, 288, 297,
     323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454],
    dtype=np.int64,
)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 (mediapipe's TFLite/absl start-up warnings,
    which Python's logging cannot reach); Python's own stderr is flushed first and restored after."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class NoFaceError(ValueError):
    """No face was found in an image."""


@dataclass
class Detection:
    """One detected face in photo pixels (x right, y down, pixel centres at integers).

    ``landmarks`` (L, 2) dense landmarks (mediapipe: 478); ``landmarks68`` (68, 2) in iBUG order;
    ``box`` (4,) x0, y0, x1, y1 of the landmarks; ``score`` a confidence in [0, 1].
    """

    landmarks: np.ndarray
    landmarks68: np.ndarray
    box: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """Face size in pixels: the larger side of the landmark box."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class LandmarkDetector(Protocol):
    """What a detection backend provides."""

    name: str
    num_landmarks: int

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces in an (H, W, 3) uint8 RGB image, largest first."""
        ...


@runtime_checkable
class FaceLocator(Protocol):
    """A face detector without landmarks, for :func:`detect_small_faces`."""

    def locate(self, image: np.ndarray) -> np.ndarray:
        """(N, 5) face boxes x0, y0, x1, y1 (image pixels) and score of an (H, W, 3) uint8 RGB image."""
        ...


class MediaPipeDetector:
    """mediapipe FaceMesh (0.10.21, ``mediapipe.solutions``), 478 landmarks, offline; also a
    :class:`FaceLocator` through mediapipe's full-range face detector, built on first use.

    Args:
        max_faces: most faces returned per image.
        min_confidence: FaceMesh's min_detection_confidence, and the full-range detector's.
        video: mediapipe's tracking mode for the frames of one video, in order: landmarks are followed from
            the previous frame and the face is detected again only when it is lost.
    """

    name = "mediapipe"
    num_landmarks = 478

    def __init__(self, max_faces: int = 5, min_confidence: float = 0.5, video: bool = False) -> None:
        self._min_confidence = min_confidence
        self._full_range: Any = None  # mediapipe's FaceDetection(model_selection=1), built on first use
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:  # pragma: no cover - mediapipe is a hard dependency
            raise ImportError("mediapipe==0.10.21 is required for the default landmark detector") from exc
        with _native_stderr_silenced():
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=not video,
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
            )
            # the first frame starts the graph, which prints the rest of the native warnings
            self._mesh.process(np.zeros((64, 64, 3), dtype=np.uint8))

    def detect(self, image: np.ndarray) -> list[Detection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        with _native_stderr_silenced():  # mediapipe warns natively on the first frames with a face
            result = self._mesh.process(np.ascontiguousarray(image))
        faces = []
        for face in result.multi_face_landmarks or []:
            xy = np.array([[p.x, p.y] for p in face.landmark], dtype=np.float64)
            # normalised coordinates have 0 at the image's left edge; pixel centres sit at integers
            xy = xy * np.array([width, height]) - 0.5
            faces.append(_make_detection(xy, score=1.0))
        faces.sort(key=lambda d: -d.size)
        return faces

    def locate(self, image: np.ndarray) -> np.ndarray:
        """Face boxes from mediapipe's full-range detector (faces up to 5 m; it sees the image at 192 px)."""
        if self._full_range is None:
            from mediapipe.python.solutions import face_detection

            with _native_stderr_silenced():
                self._full_range = face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=self._min_confidence)
        height, width = image.shape[:2]
        with _native_stderr_silenced():
            result = self._full_range.process(np.ascontiguousarray(image))
        boxes = []
        for found in result.detections or []:
            rel = found.location_data.relative_bounding_box
            x0, y0 = rel.xmin * width - 0.5, rel.ymin * height - 0.5
            boxes.append([x0, y0, x0 + rel.width * width, y0 + rel.height * height, found.score[0]])
        return np.array(boxes, dtype=np.float64).reshape(-1, 5)

    def close(self) -> None:
        self._mesh.close()
        if self._full_range is not None:
            self._full_range.close()

    def __enter__(self) -> MediaPipeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_detection(landmarks: np.ndarray, score: float) -> Detection:
    box = np.concatenate([landmarks.min(0), landmarks.max(0)])
    return Detection(landmarks=landmarks, landmarks68=landmarks[MEDIAPIPE_TO_68], box=box, score=score)


# the small-face fallback (detect_small_faces): the tile sides go down to the full-range detector's input side;
# each face box is cut from the photo with a margin and resized for FaceMesh
SMALLEST_TILE = 192
FACE_WINDOW_MARGIN = 2.0
FACE_WINDOW_SIZE = 256


def tile_windows(width: int, height: int, tile: int) -> np.ndarray:
    """(N, 4) windows x0, y0, x1, y1 (pixel edges) of ``tile`` × ``tile`` tiles covering a width × height
    image, overlapping by a third so that a face up to a third of a tile lies wholly inside one; the last
    row and column end at the image's edge."""
    stride = max(1, (2 * tile) // 3)

    def starts(extent: int) -> np.ndarray:
        if extent <= tile:
            return np.zeros(1, dtype=np.int64)
        return np.unique(np.minimum(np.arange(0, extent - tile + stride, stride), extent - tile))

    ys, xs = np.meshgrid(starts(height), starts(width), indexing="ij")
    x0, y0 = xs.ravel(), ys.ravel()
    return np.stack([x0, y0, np.minimum(x0 + tile, width), np.minimum(y0 + tile, height)], axis=1)


def face_window(box: np.ndarray, margin: float = FACE_WINDOW_MARGIN,
                size: int = FACE_WINDOW_SIZE) -> np.ndarray:
    """(3, 3) :func:`~fit3dmm.observe.crop.crop_matrix` of the size × size crop around a face box: a square
    ``margin`` × the box's larger side, centred on it (FaceMesh's own detector needs the face to fill
    much of its image)."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    side = margin * max(x1 - x0, y1 - y0, 1.0)
    # crop_matrix takes the window's top-left edge, which lies half a pixel beyond pixel-centre coordinates
    return crop_matrix((x0 + x1 - side + 1) / 2, (y0 + y1 - side + 1) / 2, side, size)


def detect_in_window(detector: LandmarkDetector, photo: np.ndarray, crop_to_photo: np.ndarray,
                     size: int = FACE_WINDOW_SIZE, score: float | None = None) -> list[Detection]:
    """Run the landmark detector on a size × size crop of the photo (:func:`face_window`) and map what it
    finds back to photo pixels; ``score`` replaces the detector's own."""
    crop = warp_to_crop(photo, crop_to_photo, size)
    return [_make_detection(apply_affine(crop_to_photo, found.landmarks),
                            found.score if score is None else score)
            for found in detector.detect(crop)]


def detect_small_faces(detector: LandmarkDetector, locator: FaceLocator, photo: np.ndarray,
                       small: np.ndarray | None = None, scale: float = 1.0,
                       every_level: bool = False) -> list[Detection]:
    """Faces too small for the landmark detector on the whole photo, in photo pixels, largest first.

    The locator looks at ``small`` (the photo shrunk by ``scale`` for detection, or the photo itself),
    first whole, then in overlapping tiles of 192·2^k px down to 192 (each a 192-px look for the
    full-range detector), coarse to fine; every box it finds is cut from the full-resolution photo
    (:func:`face_window`, so that the shrinking cannot lose the face) and given to the landmark detector,
    and a box it does not confirm is a false alarm.  The search stops at the first level with a face
    unless ``every_level`` (to find every face, of every size).
    """
    small = photo if small is None else small
    height, width = small.shape[:2]
    levels, tile = [max(width, height)], SMALLEST_TILE
    while tile < levels[0]:
        levels.insert(1, tile)
        tile *= 2
    faces: list[Detection] = []
    for tile in levels:
        found = []
        for x0, y0, x1, y1 in tile_windows(width, height, tile):
            boxes = locator.locate(small[y0:y1, x0:x1])
            boxes[:, :4] += [x0, y0, x0, y0]
            found.append(boxes)
        boxes = np.concatenate(found)
        boxes = boxes[_suppress_overlaps(boxes)]
        boxes[:, :4] = points_to_full_resolution(boxes[:, :4].reshape(-1, 2, 2), scale).reshape(-1, 4)
        faces += [face for box in boxes
                  for face in detect_in_window(detector, photo, face_window(box), score=float(box[4]))]
        if faces and not every_level:
            break
    kept = _suppress_overlaps(np.array([[*face.box, face.score] for face in faces]).reshape(-1, 5))
    return sorted((faces[i] for i in kept), key=lambda d: -d.size)


def _suppress_overlaps(boxes: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """Indices of the (N, 5) boxes with scores that non-maximum suppression keeps, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in boxes[:, :4]]
    return np.asarray(cv2.dnn.NMSBoxes(xywh, boxes[:, 4].tolist(), 0.0, threshold), dtype=np.int64).reshape(-1)


def get_detector(name: str = "mediapipe", **options: object) -> LandmarkDetector:
    """A landmark detector by backend name (``"mediapipe"``)."""
    if name == "mediapipe":
        return MediaPipeDetector(**options)  # type: ignore[arg-type]
    raise ValueError(f"unknown landmark detector {name!r}; available: mediapipe")
