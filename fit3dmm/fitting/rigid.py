"""Closed-form rigid initialisation: head pose from 2D landmarks by PnP."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from fit3dmm.render.camera import PerspectiveCamera, matrix_to_axis_angle

# landmarks that do not slide with the pose: brows, nose, eyes, mouth and the chin (the jaw contour is a
# silhouette and would bias PnP)
RIGID_LANDMARKS = np.array([8, *range(17, 68)], dtype=np.int64)

# our camera frame (+y up, looking down −z) vs OpenCV's (+y down, looking down +z)
_FLIP = np.diag([1.0, -1.0, -1.0])


def pose_from_landmarks(model_points: Tensor, image_points: Tensor, camera: PerspectiveCamera,
                        subset: np.ndarray = RIGID_LANDMARKS) -> tuple[Tensor, Tensor]:
    """Head pose that projects 3D model landmarks onto detected 2D landmarks.

    Args:
        model_points: (B, 68, 3) or (68, 3) landmark positions in model space (cm).
        image_points: (B, 68, 2) detected landmarks in the camera's pixels.
        camera: the pinhole camera (focal (B,), principal (B, 2)).
        subset: which of the 68 landmarks to use.
    Returns:
        rotation (B, 3) axis-angle and translation (B, 3) cm with ``X_cam = R X + t``.
    """
    batch = image_points.shape[0]
    if model_points.ndim == 2:
        model_points = model_points.expand(batch, -1, -1)
    if model_points.shape[:2] != image_points.shape[:2]:
        raise ValueError(f"model points {tuple(model_points.shape)} and image points "
                         f"{tuple(image_points.shape)} do not match")
    rots, trans = [], []
    for b in range(batch):
        obj = model_points[b, subset].detach().cpu().double().numpy()
        img = image_points[b, subset].detach().cpu().double().numpy()
        f = float(camera.focal[b])
        cx, cy = (float(v) for v in camera.principal[b])
        k = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
        # start in front of the camera, facing it, at the distance that matches the landmark spread
        spread_3d = np.linalg.norm(obj - obj.mean(0), axis=1).mean()
        spread_2d = np.linalg.norm(img - img.mean(0), axis=1).mean()
        distance = f * spread_3d / max(spread_2d, 1e-6)
        rvec = np.array([[np.pi], [0.0], [0.0]])  # facing the camera: R = I in our frame, _FLIP in OpenCV's
        tvec = np.array([[(img[:, 0].mean() - cx) * distance / f], [(img[:, 1].mean() - cy) * distance / f],
                         [distance]])
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
        r_cv = cv2.Rodrigues(rvec)[0]
        if not ok or tvec[2, 0] <= 0 or not np.isfinite(r_cv).all():
            r_cv, tvec = np.eye(3), np.array([[0.0], [0.0], [distance]])
        rots.append(_FLIP @ r_cv)
        trans.append((_FLIP @ tvec)[:, 0])
    rotation = torch.as_tensor(np.stack(rots), dtype=image_points.dtype, device=image_points.device)
    translation = torch.as_tensor(np.stack(trans), dtype=image_points.dtype, device=image_points.device)
    return matrix_to_axis_angle(rotation), translation
