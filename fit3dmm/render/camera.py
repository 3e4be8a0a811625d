"""Rotations and the perspective camera.

Frames.  Model space: cm, +y up, +z out of the face.  Camera space: the same axes, camera at the origin
looking down −z (the face sits at z ≈ −distance), so ``X_cam = R · X + t``.  Image space: pixels of the
working crop (or photo), x right, y down, the centre of pixel (row r, column c) at (x, y) = (c, r).

Projection (pinhole, as in Deep3DFaceRecon): ``u = cx + f · X / (−Z)``, ``v = cy − f · Y / (−Z)``, depth = −Z.

Rotations are parameterised by an axis-angle vector (the so(3) exponential map), which has no gimbal lock
anywhere inside |θ| < π; Euler angles are only a way to report a pose.

Euler convention (head pose, degrees), chosen to match AFLW2000-3D: yaw > 0 when the face turns towards the
image's left, pitch > 0 chin up, roll > 0 clockwise in the image, and
``R = Rx(−pitch) · Ry(−yaw) · Rz(−roll)`` with the right-handed elementary rotations Rx, Ry, Rz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _skew(v: Tensor) -> Tensor:
    """(..., 3) → (..., 3, 3) cross-product matrices."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula, (B, 3) → (B, 3, 3), smooth through θ = 0 (Taylor terms below 1e-4 rad)."""
    if axis_angle.shape[-1] != 3:
        raise ValueError(f"axis-angle must be (..., 3), got {tuple(axis_angle.shape)}")
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True).unsqueeze(-1)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    k = _skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Inverse of :func:`axis_angle_to_matrix` for rotations with θ ∈ [0, π]: (B, 3, 3) → (B, 3)."""
    cos = ((matrix.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    theta = torch.acos(cos)
    vee = torch.stack(
        [matrix[..., 2, 1] - matrix[..., 1, 2], matrix[..., 0, 2] - matrix[..., 2, 0],
         matrix[..., 1, 0] - matrix[..., 0, 1]], dim=-1
    )
    sin = torch.sin(theta)
    scale = torch.where(sin.abs() > 1e-6, theta / (2.0 * sin.clamp_min(1e-12)), 0.5 + theta**2 / 12.0)
    out = vee * scale.unsqueeze(-1)
    near_pi = theta > math.pi - 1e-3
    if near_pi.any():
        # axis from the symmetric part: R + I ≈ 2 n nᵀ near θ = π; pick the largest column
        sym = (matrix[near_pi] + torch.eye(3, dtype=matrix.dtype, device=matrix.device)) / 2.0
        col = sym.diagonal(dim1=-2, dim2=-1).argmax(-1)
        axis = sym[torch.arange(sym.shape[0]), :, col]
        axis = axis / axis.norm(dim=-1, keepdim=True)
        sign = torch.sign((axis * vee[near_pi]).sum(-1, keepdim=True))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        out[near_pi] = axis * sign * theta[near_pi].unsqueeze(-1)
    return out


def _rot(axis: int, angle: Tensor) -> Tensor:
    """Elementary right-handed rotation about axis 0/1/2 by ``angle`` (radians), (B,) → (B, 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [one, zero, zero, zero, c, -s, zero, s, c]
    elif axis == 1:
        rows = [c, zero, s, zero, one, zero, -s, zero, c]
    else:
        rows = [c, -s, zero, s, c, zero, zero, zero, one]
    return torch.stack(rows, dim=-1).reshape(*angle.shape, 3, 3)


def euler_to_matrix(yaw_pitch_roll_deg: Tensor) -> Tensor:
    """Head pose (B, 3) = (yaw, pitch, roll) in degrees → rotation (B, 3, 3); convention in the module doc."""
    yaw, pitch, roll = torch.deg2rad(yaw_pitch_roll_deg).unbind(-1)
    return _rot(0, -pitch) @ _rot(1, -yaw) @ _rot(2, -roll)


def matrix_to_euler(matrix: Tensor) -> Tensor:
    """Rotation (B, 3, 3) → (yaw, pitch, roll) in degrees, inverse of :func:`euler_to_matrix`.

    With a = −pitch, b = −yaw, c = −roll: R = Rx(a) Ry(b) Rz(c) has R[0,2] = sin b, R[0,0] = cos b cos c,
    R[0,1] = −cos b sin c, R[1,2] = −sin a cos b, R[2,2] = cos a cos b.  Yaw is in [−90°, 90°].
    """
    b = torch.asin(matrix[..., 0, 2].clamp(-1.0, 1.0))
    c = torch.atan2(-matrix[..., 0, 1], matrix[..., 0, 0])
    a = torch.atan2(-matrix[..., 1, 2], matrix[..., 2, 2])
    return torch.rad2deg(torch.stack([-b, -a, -c], dim=-1))


@dataclass
class PerspectiveCamera:
    """Pinhole camera: ``focal`` (B,) and ``principal`` (B, 2) in pixels of the image it renders."""

    focal: Tensor
    principal: Tensor

    @staticmethod
    def for_crop(size: int, batch: int = 1, focal_per_pixel: float = 1015.0 / 224.0,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                 ) -> PerspectiveCamera:
        """The default camera of a square crop of ``size`` px: Deep3DFaceRecon's f = 1015 at 224 px (≈12.6°
        field of view), principal point at the crop centre ((size − 1) / 2 with pixel-centre coordinates)."""
        focal = torch.full((batch,), focal_per_pixel * size, device=device, dtype=dtype)
        principal = torch.full((batch, 2), (size - 1) / 2.0, device=device, dtype=dtype)
        return PerspectiveCamera(focal, principal)

    def project(self, points_cam: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, 3) camera-space points → (pixels (B, N, 2), depth (B, N)); depth = −Z > 0 in front."""
        depth = -points_cam[..., 2]
        inv = 1.0 / depth.clamp_min(1e-6)
        f = self.focal.view(-1, 1)
        u = self.principal[:, :1] + f * points_cam[..., 0] * inv
        v = self.principal[:, 1:] - f * points_cam[..., 1] * inv
        return torch.stack([u, v], dim=-1), depth

    def unproject(self, pixels: Tensor, depth: Tensor) -> Tensor:
        """Inverse of :meth:`project`: pixels (B, N, 2) and depth (B, N) → camera-space points (B, N, 3)."""
        f = self.focal.view(-1, 1)
        x = (pixels[..., 0] - self.principal[:, :1]) * depth / f
        y = -(pixels[..., 1] - self.principal[:, 1:]) * depth / f
        return torch.stack([x, y, -depth], dim=-1)

    def to(self, device: torch.device | str) -> PerspectiveCamera:
        return PerspectiveCamera(self.focal.to(device), self.principal.to(device))


def transform_points(points: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """Rigid motion ``R · X + t``: points (B, N, 3), rotation (B, 3, 3), translation (B, 3) → (B, N, 3)."""
    return points @ rotation.transpose(-1, -2) + translation.unsqueeze(-2)
