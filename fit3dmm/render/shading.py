"""Vertex normals, spherical-harmonics lighting and a shaded render on the hard rasterizer.

Spherical harmonics follow Deep3DFaceRecon (Deng et al. 2019): per colour channel, 9 coefficients γ of the
first three SH bands, irradiance ``E(n) = Σ_k γ_k · Y_k(n)`` with

    Y = [a0 c0,  −a1 c1 n_y,  a1 c1 n_z,  −a1 c1 n_x,  a2 c2 n_x n_y,  −a2 c2 n_y n_z,
         a2 c2 (3 n_z² − 1) / (2√3),  −a2 c2 n_x n_z,  a2 c2 (n_x² − n_y²) / 2],
    a = (π, 2π/√3, 2π/√8),   c = (1/√(4π), √3/√(4π), 3√5/√(12π)),

and the coefficients are offsets from an ambient light: γ_0 += 0.8 on every channel, so all-zero
coefficients give the uniform irradiance 0.8 · a0 c0 ≈ 0.709.  Normals are in camera space (+z towards the
viewer), as Deep3DFaceRecon rotates them before lighting.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fit3dmm.render.pairs import check_mesh_inputs
from fit3dmm.render.rasterize import interpolate, rasterize

SH_AMBIENT_INIT = 0.8
SH_NUM_COEFFS = 27  # 3 channels × 9 coefficients, channel-major: (B, 27) = (B, 3, 9) flattened
DEFAULT_GREY = 0.75
HEADLIGHT_AMBIENT = 0.3

_A = (math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0))
_C = (1.0 / math.sqrt(4.0 * math.pi), math.sqrt(3.0) / math.sqrt(4.0 * math.pi),
      3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi))


def vertex_normals(vertices: Tensor, triangles: Tensor) -> Tensor:
    """Area-weighted unit vertex normals, (B, V, 3) vertices and (T, 3) triangles → (B, V, 3).

    ``n_v ∝ Σ_{t ∋ v} (b − a) × (c − a)``: the unnormalised cross product has twice the triangle's area as
    its length, so the sum weights each face by its area.  Counter-clockwise triangles seen from outside
    give outward normals.  Vertices in no triangle (or only degenerate ones) get 0.
    """
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    if triangles.ndim != 2 or triangles.shape[-1] != 3:
        raise ValueError(f"triangles must be (T, 3), got {tuple(triangles.shape)}")
    a, b, c = vertices[:, triangles].unbind(2)
    face = torch.linalg.cross(b - a, c - a, dim=-1)  # (B, T, 3)
    normals = torch.zeros_like(vertices)
    normals = normals.index_add(1, triangles.reshape(-1), face.repeat_interleave(3, dim=1))
    return F.normalize(normals, dim=-1)


def sh_basis(normals: Tensor) -> Tensor:
    """The 9 SH basis values Y(n) (module docstring) of unit normals (..., 3) → (..., 9)."""
    x, y, z = normals.unbind(-1)
    a0c0, a1c1, a2c2 = _A[0] * _C[0], _A[1] * _C[1], _A[2] * _C[2]
    return torch.stack([
        torch.full_like(x, a0c0), -a1c1 * y, a1c1 * z, -a1c1 * x,
        a2c2 * x * y, -a2c2 * y * z, 0.5 * a2c2 / math.sqrt(3.0) * (3.0 * z * z - 1.0),
        -a2c2 * x * z, 0.5 * a2c2 * (x * x - y * y),
    ], dim=-1)


def sh_shading(normals: Tensor, sh_coeffs: Tensor | None = None) -> Tensor:
    """Per-vertex RGB irradiance (B, V, 3) from camera-space unit normals (B, V, 3) and SH coefficients.

    ``sh_coeffs`` (B, 27) are Deep3DFaceRecon's γ, channel-major ((B, 3, 9) flattened) and relative to the
    ambient initialisation (0.8 added to each channel's first coefficient); None means all zeros.
    Multiply by the albedo to get colours.
    """
    if normals.ndim != 3 or normals.shape[-1] != 3:
        raise ValueError(f"normals must be (B, V, 3), got {tuple(normals.shape)}")
    bsz = normals.shape[0]
    if sh_coeffs is None:
        sh_coeffs = normals.new_zeros((bsz, SH_NUM_COEFFS))
    if sh_coeffs.shape != (bsz, SH_NUM_COEFFS):
        raise ValueError(f"sh_coeffs must be ({bsz}, {SH_NUM_COEFFS}), got {tuple(sh_coeffs.shape)}")
    gamma = sh_coeffs.reshape(bsz, 3, 9).to(normals.dtype)
    gamma = gamma + torch.cat([gamma.new_full((1, 1, 1), SH_AMBIENT_INIT), gamma.new_zeros((1, 1, 8))], -1)
    return sh_basis(normals) @ gamma.transpose(1, 2)  # (B, V, 9) @ (B, 9, 3)


def headlight_shading(normals: Tensor, ambient: float = HEADLIGHT_AMBIENT) -> Tensor:
    """Lambertian headlight: (B, V, 3) normals → (B, V, 1) ``ambient + (1 − ambient)·max(n_z, 0)``."""
    return ambient + (1.0 - ambient) * normals[..., 2:].clamp_min(0.0)


def render_shaded(
    points2d: Tensor,
    depth: Tensor,
    triangles: Tensor,
    normals: Tensor,
    image_size: tuple[int, int],
    albedo: Tensor | None = None,
    light: Tensor | str | None = "headlight",
) -> tuple[Tensor, Tensor]:
    """Render per-vertex colours with the z-buffer: → (image (B, 3, H, W), mask (B, 1, H, W)).

    Vertex colours are ``albedo · shading``: ``albedo`` (B, V, 3) in [0, 1] or None for uniform grey;
    ``light`` a (B, 27) SH tensor (:func:`sh_shading`), ``"headlight"`` (:func:`headlight_shading`, the
    default grey look that a face detector sees as a face) or None for no lighting (``albedo`` are already
    the final colours).  Colours are interpolated perspective-correctly; background is 0, ``mask`` 1 where
    a triangle covers the pixel.  Differentiable in albedo, light and normals, and in points2d/depth
    through the barycentrics inside triangles (not at silhouettes).
    """
    check_mesh_inputs(points2d, triangles, image_size)
    bsz, v = points2d.shape[:2]
    if normals.shape != (bsz, v, 3):
        raise ValueError(f"normals must be ({bsz}, {v}, 3), got {tuple(normals.shape)}")
    if albedo is None:
        albedo = points2d.new_full((bsz, v, 3), DEFAULT_GREY)
    elif albedo.shape != (bsz, v, 3):
        raise ValueError(f"albedo must be ({bsz}, {v}, 3), got {tuple(albedo.shape)}")
    if isinstance(light, str):
        if light != "headlight":
            raise ValueError(f"light must be a (B, 27) tensor, 'headlight' or None, got {light!r}")
        colors = albedo * headlight_shading(normals)
    elif light is not None:
        colors = albedo * sh_shading(normals, light)
    else:
        colors = albedo
    fragments = rasterize(points2d, depth, triangles, image_size)
    image = interpolate(fragments, triangles, colors).permute(0, 3, 1, 2)
    return image, fragments.mask.unsqueeze(1).to(image.dtype)
