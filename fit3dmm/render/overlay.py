"""Figures on the photo: the fitted mesh blended over it, and landmark dots (numpy uint8 in and out)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from fit3dmm.render.rasterize import interpolate, rasterize
from fit3dmm.render.shading import headlight_shading

DEFAULT_MESH_COLOR = (170, 200, 255)
_SUBPIXEL_BITS = 4


def _check_photo(photo: np.ndarray) -> None:
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {photo.dtype} {photo.shape}")


def overlay_mesh(
    photo: np.ndarray,
    vertices_photo: np.ndarray,
    depth: np.ndarray,
    triangles: np.ndarray,
    alpha: float = 0.6,
    color: tuple[int, int, int] = DEFAULT_MESH_COLOR,
    normals: np.ndarray | None = None,
) -> np.ndarray:
    """The mesh rendered at photo resolution and blended over the photo: → uint8 (H, W, 3).

    Covered pixels become ``(1 − alpha) · photo + alpha · color · shade``; the others are left untouched.
    With camera-space ``normals`` (V, 3) the shade is a headlight (:func:`headlight_shading`); without, it is
    a depth cue, ``0.35 + 0.65 · (d_max − d) / (d_max − d_min)``, nearer being brighter (pixel positions and
    depth alone do not determine the surface orientation without the camera's focal length).

    Args:
        photo: (H, W, 3) uint8 RGB.
        vertices_photo: (V, 2) vertex positions in photo pixels (pixel centres at integers).
        depth: (V,) view depths (> 0 in front of the camera).
        triangles: (T, 3) vertex indices.
        alpha: opacity of the mesh in [0, 1].
        color: RGB of the mesh.
        normals: (V, 3) camera-space vertex normals, optional.
    """
    _check_photo(photo)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    pts = torch.as_tensor(np.asarray(vertices_photo, dtype=np.float64)).unsqueeze(0)
    z = torch.as_tensor(np.asarray(depth, dtype=np.float64)).reshape(1, -1)
    tri = torch.as_tensor(np.asarray(triangles, dtype=np.int64))
    if pts.shape[1:] != (z.shape[1], 2):
        raise ValueError(f"vertices_photo must be (V, 2) and depth (V,), got {tuple(pts.shape[1:])} and "
                         f"{tuple(z.shape[1:])}")
    if normals is not None:
        shade = headlight_shading(torch.as_tensor(np.asarray(normals, dtype=np.float64)).unsqueeze(0))
    else:
        front = z[:, tri.unique()] if tri.numel() else z
        near, far = front.min(), front.max()
        shade = (0.35 + 0.65 * (far - z) / (far - near).clamp_min(1e-12)).unsqueeze(-1)
    colors = pts.new_tensor(color).div(255.0).view(1, 1, 3) * shade
    height, width = photo.shape[:2]
    fragments = rasterize(pts, z, tri, (height, width))
    render = interpolate(fragments, tri, colors)[0].numpy() * 255.0
    covered = fragments.mask[0].numpy()
    out = photo.copy()
    blended = (1.0 - alpha) * photo[covered].astype(np.float64) + alpha * render[covered]
    out[covered] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def draw_points(
    image: np.ndarray, points: np.ndarray, color: tuple[int, int, int] = (0, 255, 0), radius: int = 2
) -> np.ndarray:
    """Filled dots of ``radius`` px at (N, 2) sub-pixel positions (x, y) on a copy of a uint8 (H, W, 3) image.

    Non-finite points are skipped.  Uses ``cv2.circle`` with fractional-bit coordinates, so a dot is centred
    on its point to 1/16 px.
    """
    _check_photo(image)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.ascontiguousarray(image.copy())
    scale = 1 << _SUBPIXEL_BITS
    for x, y in pts[np.isfinite(pts).all(axis=1)]:
        centre = (round(float(x) * scale), round(float(y) * scale))
        cv2.circle(out, centre, int(radius) * scale, tuple(int(c) for c in color), thickness=-1,
                   lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
    return out
