"""Vertex normals, Deep3DFaceRecon's spherical-harmonics lighting and the shaded render."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fit3dmm.render.shading import render_shaded, sh_shading, vertex_normals


def _octahedron() -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                     dtype=torch.float64)
    # counter-clockwise seen from outside
    f = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


def test_normals_of_a_closed_mesh_point_outwards_along_the_axes() -> None:
    v, f = _octahedron()
    n = vertex_normals((v * 3.0 + 1.0).unsqueeze(0), f)[0]  # scaled and shifted: same normals
    torch.testing.assert_close(n, v)


def test_normals_are_area_weighted() -> None:
    # vertex 0 is shared by a triangle in the plane z = 0 (area 2, normal +z) and one in the plane x = 0
    # (area 0.5, normal +x): n ∝ 2·(0, 0, 1) + 0.5·(1, 0, 0)
    v = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 1, 0], [0, 0, 1]]])
    f = torch.tensor([[0, 1, 2], [0, 3, 4]])
    n = vertex_normals(v, f)[0, 0]
    expect = torch.tensor([0.5, 0.0, 2.0]) / math.hypot(0.5, 2.0)
    torch.testing.assert_close(n, expect)


def _deep3d_sh(normal: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon's ParametricFaceModel.compute_color without the texture, written out in numpy."""
    a0, a1, a2 = np.pi, 2 * np.pi / np.sqrt(3.0), 2 * np.pi / np.sqrt(8.0)
    c0, c1 = 1 / np.sqrt(4 * np.pi), np.sqrt(3.0) / np.sqrt(4 * np.pi)
    c2 = 3 * np.sqrt(5.0) / np.sqrt(12 * np.pi)
    g = gamma.reshape(-1, 3, 9) + np.array([0.8, 0, 0, 0, 0, 0, 0, 0, 0]).reshape(1, 1, -1)
    g = g.transpose(0, 2, 1)
    x, y, z = normal[..., :1], normal[..., 1:2], normal[..., 2:]
    basis = np.concatenate([
        a0 * c0 * np.ones_like(x), -a1 * c1 * y, a1 * c1 * z, -a1 * c1 * x, a2 * c2 * x * y, -a2 * c2 * y * z,
        0.5 * a2 * c2 / np.sqrt(3.0) * (3 * z**2 - 1), -a2 * c2 * x * z, 0.5 * a2 * c2 * (x**2 - y**2),
    ], axis=-1)
    return basis @ g


def test_sh_matches_deep3dfacerecon() -> None:
    gen = torch.Generator().manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(2, 50, 3, generator=gen, dtype=torch.float64), dim=-1)
    gamma = torch.randn(2, 27, generator=gen, dtype=torch.float64) * 0.3
    np.testing.assert_allclose(sh_shading(n, gamma).numpy(), _deep3d_sh(n.numpy(), gamma.numpy()), atol=1e-12)


def test_default_light_is_the_uniform_ambient() -> None:
    n = torch.nn.functional.normalize(torch.randn(1, 20, 3), dim=-1)
    out = sh_shading(n)
    torch.testing.assert_close(out, torch.full_like(out, 0.8 * math.pi / math.sqrt(4 * math.pi)))


def _quad(size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A square facing the camera covering pixel centres 4..11 in x and y (edges at 3.5 and 11.5)."""
    pts = torch.tensor([[[3.5, 3.5], [11.5, 3.5], [11.5, 11.5], [3.5, 11.5]]])
    depth = torch.full((1, 4), 10.0)
    # counter-clockwise seen from the viewer (+z, y up) = clockwise in pixel coordinates (y down)
    tri = torch.tensor([[0, 3, 2], [0, 2, 1]])
    normals = torch.tensor([[[0.0, 0.0, 1.0]] * 4])
    return pts, depth, tri, normals


def test_headlight_render_of_a_square() -> None:
    pts, depth, tri, normals = _quad()
    image, mask = render_shaded(pts, depth, tri, normals, (16, 16))
    assert image.shape == (1, 3, 16, 16) and mask.shape == (1, 1, 16, 16)
    expect_mask = torch.zeros(16, 16)
    expect_mask[4:12, 4:12] = 1.0
    torch.testing.assert_close(mask[0, 0], expect_mask)
    # facing the headlight: grey 0.75 × (0.3 + 0.7 · 1)
    torch.testing.assert_close(image[0], 0.75 * expect_mask.expand(3, -1, -1))


def test_sh_render_and_its_gradients() -> None:
    pts, depth, tri, normals = _quad()
    albedo = torch.tensor([[[0.2, 0.4, 0.6]] * 4], requires_grad=True)
    light = torch.zeros(1, 27, requires_grad=True)
    image, _ = render_shaded(pts, depth, tri, normals, (16, 16), albedo=albedo, light=light)
    irradiance = sh_shading(normals, light.detach())[0, 0]
    torch.testing.assert_close(image[0, :, 8, 8], albedo.detach()[0, 0] * irradiance)
    image.sum().backward()
    # d image / d albedo_c summed over the covered pixels = 64 pixels × irradiance (barycentrics sum to 1)
    torch.testing.assert_close(albedo.grad.sum(1)[0], 64 * irradiance)
    # first SH coefficient of the red channel: Y_0 = π / √(4π) at each covered pixel, times red albedo 0.2
    assert light.grad[0, 0].item() == pytest.approx(64 * 0.2 * math.pi / math.sqrt(4 * math.pi), rel=1e-5)


def test_unlit_render_interpolates_the_given_colours() -> None:
    pts, depth, tri, normals = _quad()
    ramp = torch.tensor([[[0.0] * 3, [1.0] * 3, [1.0] * 3, [0.0] * 3]])  # 0 at x = 3.5, 1 at x = 11.5
    image, _ = render_shaded(pts, depth, tri, normals, (16, 16), albedo=ramp, light=None)
    cols = torch.arange(4, 12, dtype=torch.float32)
    torch.testing.assert_close(image[0, 0, 6, 4:12], (cols - 3.5) / 8.0)


def test_validation() -> None:
    pts, depth, tri, normals = _quad()
    with pytest.raises(ValueError, match="normals"):
        render_shaded(pts, depth, tri, normals[:, :3], (16, 16))
    with pytest.raises(ValueError, match="light"):
        render_shaded(pts, depth, tri, normals, (16, 16), light="sun")
    with pytest.raises(ValueError, match="sh_coeffs"):
        sh_shading(normals, torch.zeros(1, 9))
