"""Soft silhouettes (Liu et al. 2019, "Soft Rasterizer", eq. 1 and the silhouette aggregation), per label.

For pixel i and triangle j with projected corners (a, b, c):

    D_ij = sigmoid(δ_ij · d²(i, j) / σ),    S_i = 1 − Π_j (1 − D_ij)

with d(i, j) the 2D distance from the pixel centre to the triangle's edges, δ_ij = +1 inside, −1 outside,
σ in pixels².  The product runs over the triangles of one label, giving one silhouette per label.  It is
accumulated in log space, ``log(1 − D) = logsigmoid(−δ d²/σ)`` (exact and finite for every argument, so no
clamping is needed), and ``S = −expm1(Σ_j log(1 − D_ij))``.

Only pairs whose pixel centre lies in the triangle's bounding box expanded by ``r = sqrt(σ · ln((1 − ε)/ε))``
are evaluated (:func:`~fit3dmm.render.pairs.pixel_triangle_pairs` with margin r): every skipped pair has
d > r, so D_ij < ε and it would change −log(1 − S_i) by less than ε/(1 − ε).

The per-pair terms are evaluated by a fused autograd function with the analytic gradient: for the nearest
edge (u, v), with t ∈ [0, 1] the parameter of the nearest point and r = p − u − t(v − u),
``∂d²/∂u = −2(1 − t) r`` and ``∂d²/∂v = −2 t r`` (the derivative through t vanishes: t is either optimal
or clamped).  Only the pair indices are kept for the backward pass, which recomputes the geometry, so memory
stays at a few integers per pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from fit3dmm.render.pairs import DEFAULT_MAX_PAIRS, check_mesh_inputs, pixel_triangle_pairs


def ndc_sigma_to_pixels(sigma_ndc: float, image_size: tuple[int, int]) -> float:
    """SoftRas's σ (a squared distance in NDC, the shorter image side spanning [−1, 1]) → pixels².

    One pixel is ``2 / min(H, W)`` NDC units, so ``σ_px = σ_ndc · min(H, W)² / 4``; e.g. 1e-4 → 1.25 px² at
    224 px.
    """
    if sigma_ndc <= 0:
        raise ValueError(f"sigma must be positive, got {sigma_ndc}")
    return sigma_ndc * min(image_size) ** 2 / 4.0


def _edge_terms(ux: Tensor, uy: Tensor, vx: Tensor, vy: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
    """Segment u→v and points (x, y), all (N,) → (d², t, r_x, r_y, (p − u) × (v − u)), each (N,)."""
    ex, ey = vx - ux, vy - uy
    px, py = x - ux, y - uy
    ee = ex * ex + ey * ey
    t = ((px * ex + py * ey) / torch.where(ee > 0, ee, torch.ones_like(ee))).clamp(0.0, 1.0)
    rx, ry = px - t * ex, py - t * ey
    return rx * rx + ry * ry, t, rx, ry, px * ey - py * ex


def _edges(corners: Tensor, x: Tensor, y: Tensor) -> list[tuple[Tensor, ...]]:
    """Corners (N, 6) = (a_x, a_y, b_x, b_y, c_x, c_y) and points (N,) → :func:`_edge_terms` of the edges
    (a, b), (b, c), (c, a)."""
    ax, ay, bx, by, cx, cy = corners.unbind(1)
    return [_edge_terms(ax, ay, bx, by, x, y), _edge_terms(bx, by, cx, cy, x, y), _edge_terms(cx, cy, ax, ay, x, y)]


def _signed_distance2(edges: list[tuple[Tensor, ...]]) -> Tensor:
    """δ · d² (N,): d² the smallest edge distance², δ = +1 inside or on the triangle (the three cross
    products of one sign), −1 outside."""
    c0, c1, c2 = (e[4] for e in edges)
    inside = ((c0 >= 0) & (c1 >= 0) & (c2 >= 0)) | ((c0 <= 0) & (c1 <= 0) & (c2 <= 0))
    d2 = torch.minimum(torch.minimum(edges[0][0], edges[1][0]), edges[2][0])
    return torch.where(inside, d2, -d2)


def _distance2_grad(edges: list[tuple[Tensor, ...]], weight: Tensor) -> Tensor:
    """weight (N,) · ∂d²/∂corners → (N, 6), for the nearest edge (the first of equals).

    On edge (u, v) with nearest-point parameter t and r = p − u − t(v − u): ∂d²/∂u = −2(1 − t) r and
    ∂d²/∂v = −2 t r; corner j is the u of edge j and the v of edge j − 1.
    """
    d0, d1, d2 = (e[0] for e in edges)
    m0 = (d0 <= d1) & (d0 <= d2)
    m1 = ~m0 & (d1 <= d2)
    masks = (m0, m1, ~(m0 | m1))
    gu, gv = [], []
    for (_, t, rx, ry, _), m in zip(edges, masks, strict=True):
        s = -2.0 * weight * m.to(weight.dtype)
        a, b = s * (1.0 - t), s * t
        gu.append((a * rx, a * ry))
        gv.append((b * rx, b * ry))
    cols = [gu[j][k] + gv[j - 1][k] for j in range(3) for k in range(2)]
    return torch.stack(cols, dim=1)


class _SoftPairs(torch.autograd.Function):
    """Σ over pairs of logsigmoid(−δ d²/σ), scattered into ``size`` output cells; gradient to the corners."""

    @staticmethod
    def forward(ctx: FunctionCtx, corners: Tensor, face: Tensor, x: Tensor, y: Tensor, cell: Tensor,
                size: int, sigma: float) -> Tensor:
        sd2 = _signed_distance2(_edges(corners[face], x.to(corners.dtype), y.to(corners.dtype)))
        ctx.save_for_backward(corners, face, x, y, cell)
        ctx.sigma = sigma
        return corners.new_zeros(size).index_add_(0, cell, F.logsigmoid(-sd2 / sigma))

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        corners, face, x, y, cell = ctx.saved_tensors
        edges = _edges(corners[face], x.to(corners.dtype), y.to(corners.dtype))
        sd2 = _signed_distance2(edges)
        # d/d(sd2) logsigmoid(−sd2/σ) = −sigmoid(sd2/σ)/σ and sd2 = δ·d² with δ = sign(sd2) where d² > 0
        weight = grad_out[cell] * torch.sigmoid(sd2 / ctx.sigma) * (-torch.sign(sd2) / ctx.sigma)
        g = torch.zeros_like(corners).index_add_(0, face, _distance2_grad(edges, weight))
        return g, None, None, None, None, None, None


def soft_silhouettes(
    points2d: Tensor,
    triangles: Tensor,
    triangle_labels: Tensor,
    num_labels: int,
    image_size: tuple[int, int],
    sigma: float,
    visible_tri: Tensor | None = None,
    eps: float = 1e-4,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> Tensor:
    """Soft silhouettes of the triangles of each label, (B, num_labels, H, W) in [0, 1].

    Args:
        points2d: (B, V, 2) projected vertices in pixels; gradients flow to it (first order).
        triangles: (T, 3) int64.
        triangle_labels: (T,) int64 in [−1, num_labels); −1 triangles are not drawn.
        num_labels: number of output silhouettes L.
        image_size: (H, W).
        sigma: σ in pixels² (see :func:`ndc_sigma_to_pixels`).
        visible_tri: (B, T) bool, the triangles to draw per item; None = all.
        eps: pairs with D_ij < eps may be skipped (sets the search margin), in (0, 0.5).
        max_pairs: candidate pairs evaluated at once (bounds memory).
    """
    h, w = check_mesh_inputs(points2d, triangles, image_size)
    bsz, nt = points2d.shape[0], triangles.shape[0]
    if triangle_labels.shape != (nt,) or triangle_labels.dtype != torch.long:
        raise ValueError(f"triangle_labels must be int64 ({nt},), got {triangle_labels.dtype} "
                         f"{tuple(triangle_labels.shape)}")
    if num_labels <= 0 or (nt and int(triangle_labels.max()) >= num_labels):
        raise ValueError(f"triangle_labels must lie in [-1, num_labels) with num_labels > 0, got "
                         f"num_labels = {num_labels}")
    if sigma <= 0 or not 0 < eps < 0.5:
        raise ValueError(f"sigma must be > 0 and eps in (0, 0.5), got {sigma} and {eps}")
    labels = triangle_labels.to(points2d.device)
    draw = (labels >= 0).expand(bsz, nt)
    if visible_tri is not None:
        if visible_tri.shape != (bsz, nt):
            raise ValueError(f"visible_tri must be ({bsz}, {nt}), got {tuple(visible_tri.shape)}")
        draw = draw & visible_tri.to(device=points2d.device, dtype=torch.bool)
    margin = math.sqrt(sigma * math.log((1.0 - eps) / eps))
    corners = points2d[:, triangles].reshape(bsz * nt, 6)
    # output cell of a (pixel, triangle) pair: ((b · L + label) · H + y) · W + x
    batch = torch.arange(bsz, device=points2d.device)[:, None]
    label_base = ((batch * num_labels + labels) * (h * w)).flatten()
    size = bsz * num_labels * h * w
    log_empty = points2d.new_zeros(size)
    for pairs in pixel_triangle_pairs(points2d, triangles, (h, w), margin, triangle_mask=draw,
                                      max_pairs=max_pairs):
        cell = label_base[pairs.face] + pairs.y * w + pairs.x
        log_empty = log_empty + _SoftPairs.apply(corners, pairs.face, pairs.x, pairs.y, cell, size, sigma)
    return -torch.expm1(log_empty).view(bsz, num_labels, h, w)
