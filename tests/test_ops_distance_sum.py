"""The FFT distance sum with exact near field against the float64 direct sum: values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from fit3dmm.ops.distance_sum import distance_sum_plan, grid_distance_sum
from fit3dmm.ops.grid import AnchorGrid


def reference(points: torch.Tensor, valid: torch.Tensor, grid: AnchorGrid, upstream: torch.Tensor):
    """Direct Σ_n ‖a − v_n‖ in float64 with explicit differences, and the gradient of <S, upstream>."""
    p = points.detach().double().requires_grad_()
    a = grid.points(torch.float64)
    d = torch.linalg.vector_norm(a[None, :, None, :] - p[:, None, :, :], dim=-1)  # gradient 0 at 0
    s = (d * valid[:, None, :]).sum(-1)
    (s * upstream.double()).sum().backward()
    return s.detach(), p.grad


def face_like(gen: torch.Generator, size: float) -> torch.Tensor:
    n = 400
    r = torch.rand(n, generator=gen, dtype=torch.float64).sqrt()
    t = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    pts = torch.stack([0.5 * size + 0.3 * size * r * torch.cos(t), 0.55 * size + 0.35 * size * r * torch.sin(t)], -1)
    # a few points outside the grid: just outside (FFT path) and far outside (direct path)
    extra = torch.tensor([[-3.3, 10.2], [size + 4.1, -2.7], [5 * size, 0.5 * size], [-2 * size, -size]],
                         dtype=torch.float64)
    return torch.cat([pts, extra])


@pytest.mark.parametrize(
    ("grid", "dtype", "rtol_value", "rtol_grad"),
    [
        (AnchorGrid.full(48), torch.float64, 1e-7, 1e-5),
        (AnchorGrid(30, 41, stride=1.7, origin=(-2.0, 3.5)), torch.float64, 1e-7, 1e-5),
        (AnchorGrid.full(48), torch.float32, 2e-6, 2e-4),
    ],
)
def test_matches_direct_sum(grid: AnchorGrid, dtype: torch.dtype, rtol_value: float, rtol_grad: float) -> None:
    gen = torch.Generator().manual_seed(0)
    extent = max(grid.height, grid.width) * grid.stride
    pts = torch.stack([face_like(gen, extent), face_like(gen, extent) * 0.8])
    valid = torch.rand(pts.shape[:2], generator=gen) > 0.1
    upstream = torch.randn(2, grid.num_anchors, generator=gen, dtype=torch.float64)
    want, want_grad = reference(pts, valid, grid, upstream)
    p = pts.to(dtype).requires_grad_()
    got = grid_distance_sum(p, valid, grid)
    (got * upstream.to(dtype)).sum().backward()
    assert got.dtype == dtype and got.shape == (2, grid.num_anchors)
    assert (got.double() - want).abs().max() <= rtol_value * want.abs().max()
    err = (p.grad.double() - want_grad).norm(dim=-1).max()
    assert err <= rtol_grad * want_grad.norm(dim=-1).max()
    assert (p.grad[~valid] == 0).all()


def test_wider_window_is_more_exact_and_plan_is_reusable() -> None:
    gen = torch.Generator().manual_seed(1)
    grid = AnchorGrid.full(40)
    pts = face_like(gen, 40.0)[None, :400]
    valid = torch.ones(1, 400, dtype=torch.bool)
    upstream = torch.randn(1, grid.num_anchors, generator=gen, dtype=torch.float64)
    _, want_grad = reference(pts, valid, grid, upstream)
    errors = []
    for window in (3, 8):
        plan = distance_sum_plan(grid, window=window, dtype=torch.float64)
        p = pts.clone().requires_grad_()
        (grid_distance_sum(p, valid, plan) * upstream).sum().backward()
        errors.append(float((p.grad - want_grad).norm()))
        again = grid_distance_sum(pts, valid, plan)  # the same plan serves another call
        assert torch.equal(again, grid_distance_sum(pts, valid, plan))
    assert errors[1] < errors[0] / 10


def test_coincident_point_and_anchor_has_the_subgradient_zero_like_the_reference() -> None:
    grid = AnchorGrid.full(16)
    pts = torch.tensor([[[5.0, 7.0], [9.25, 3.5]]], dtype=torch.float64)
    valid = torch.ones(1, 2, dtype=torch.bool)
    upstream = torch.ones(1, grid.num_anchors, dtype=torch.float64)
    want, want_grad = reference(pts, valid, grid, upstream)
    p = pts.clone().requires_grad_()
    got = grid_distance_sum(p, valid, grid)
    got.sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(p.grad, want_grad, rtol=1e-5, atol=1e-6)


def test_input_checks() -> None:
    grid = AnchorGrid.full(8)
    with pytest.raises(ValueError, match="points must be"):
        grid_distance_sum(torch.zeros(4, 2), None, grid)
    with pytest.raises(ValueError, match="valid must be"):
        grid_distance_sum(torch.zeros(1, 4, 2), torch.ones(1, 3, dtype=torch.bool), grid)
    with pytest.raises(ValueError, match="plan is for"):
        grid_distance_sum(torch.zeros(1, 4, 2), None, distance_sum_plan(grid, dtype=torch.float64))
    with pytest.raises(ValueError, match="window"):
        distance_sum_plan(grid, window=2)
