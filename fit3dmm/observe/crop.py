"""Square, axis-aligned face crops and their exact pixel transforms.

The crop is a scale and a translation of the photo (no rotation), so a perspective camera of the crop is
a perspective camera of the photo with a scaled focal length and a shifted principal point: every fitted
quantity maps back to photo pixels exactly (the OBJ, landmarks and overlay line up with the photo).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def crop_box(landmarks: np.ndarray, scale: float = 1.45) -> tuple[float, float, float]:
    """A square box around (L, 2) photo-pixel landmarks: (left, top, side) in continuous pixel units.

    The centre is the landmark box centre, shifted 10 % of the box height up (the dense landmarks stop at
    mid-forehead); the side is ``scale`` × the larger side of the landmark box.
    """
    lo, hi = landmarks.min(0), landmarks.max(0)
    side = float(scale * max(hi[0] - lo[0], hi[1] - lo[1]))
    cx = float(lo[0] + hi[0]) / 2.0
    cy = float(lo[1] + hi[1]) / 2.0 - 0.1 * float(hi[1] - lo[1])
    # continuous coordinates: pixel c covers [c − 0.5, c + 0.5]
    return cx - side / 2.0, cy - side / 2.0, side


def crop_matrix(left: float, top: float, side: float, size: int) -> np.ndarray:
    """(3, 3) affine map from crop pixel centres to photo pixel centres for a box cropped to ``size`` px.

    Crop pixel x covers [x − 0.5, x + 0.5] and maps to photo ``left + (x + 0.5) · side / size − 0.5``.
    """
    k = side / size
    return np.array([[k, 0.0, left + 0.5 * k - 0.5], [0.0, k, top + 0.5 * k - 0.5], [0.0, 0.0, 1.0]])


def warp_to_crop(photo: np.ndarray, crop_to_photo: np.ndarray, size: int,
                 interpolation: int = cv2.INTER_LINEAR, border_value: int | tuple = 0) -> np.ndarray:
    """Resample ``photo`` (H, W[, C]) into the crop given by a :func:`crop_matrix` (size × size).

    When the crop shrinks the photo, the photo is low-pass filtered first (Gaussian, σ ≈ 0.4 per
    shrink factor) so that the crop is not aliased; label maps should use ``cv2.INTER_NEAREST``.
    """
    k = float(crop_to_photo[0, 0])
    matrix = crop_to_photo[:2].astype(np.float64)
    src = photo
    if k > 1.5 and interpolation != cv2.INTER_NEAREST:
        # blur only the part of the photo the crop reads (plus the kernel's reach): same pixels, less work
        sigma = 0.4 * k
        reach = math.ceil(4 * sigma) + 2
        corners = apply_affine(crop_to_photo, np.array([[-1.0, -1.0], [size, size]]))
        h, w = photo.shape[:2]
        x0, y0 = (max(0, math.floor(v) - reach) for v in corners.min(0))
        x1 = min(w, math.ceil(corners[:, 0].max()) + reach + 1)
        y1 = min(h, math.ceil(corners[:, 1].max()) + reach + 1)
        if x0 < x1 and y0 < y1:
            src = cv2.GaussianBlur(photo[y0:y1, x0:x1], (0, 0), sigmaX=sigma)
            matrix = matrix - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]])
    return cv2.warpAffine(
        src, matrix, (size, size),
        flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=border_value,
    )


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (3, 3) affine matrix to (N, 2) points."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]
