"""Photo → :class:`Observation`: crop, landmarks, part masks and target point sets for one face."""

from __future__ import annotations

import numpy as np
import torch

from fit3dmm.observe.crop import apply_affine, crop_box, crop_matrix, warp_to_crop
from fit3dmm.observe.detect import Detection
from fit3dmm.observe.observation import Observation


def observe_face(
    photo: np.ndarray,
    detection: Detection,
    *,
    size: int = 224,
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
