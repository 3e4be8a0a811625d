"""Face detection and landmarks behind a small backend interface.

The default backend is mediapipe FaceMesh (478 points with ``refine_landmarks``), which ships its models
inside the wheel and so works offline.  Other backends (face-alignment, dlib) only need to return
:class:`Detection` objects; the rest of fit3dmm never calls a detector library directly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

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


class MediaPipeDetector:
    """mediapipe FaceMesh (0.10.21, ``mediapipe.solutions``), 478 landmarks, offline.

    Args:
        max_faces: most faces returned per image.
        min_confidence: FaceMesh's min_detection_confidence.
    """

    name = "mediapipe"
    num_landmarks = 478

    def __init__(self, max_faces: int = 5, min_confidence: float = 0.5) -> None:
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:  # pragma: no cover - mediapipe is a hard dependency
            raise ImportError("mediapipe==0.10.21 is required for the default landmark detector") from exc
        with _native_stderr_silenced():
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=True,
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

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> MediaPipeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_detection(landmarks: np.ndarray, score: float) -> Detection:
    box = np.concatenate([landmarks.min(0), landmarks.max(0)])
    return Detection(landmarks=landmarks, landmarks68=landmarks[MEDIAPIPE_TO_68], box=box, score=score)


def get_detector(name: str = "mediapipe", **options: object) -> LandmarkDetector:
    """A landmark detector by backend name (``"mediapipe"``)."""
    if name == "mediapipe":
        return MediaPipeDetector(**options)  # type: ignore[arg-type]
    raise ValueError(f"unknown landmark detector {name!r}; available: mediapipe")
