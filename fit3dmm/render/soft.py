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


def _signed_distance2(corners: Tensor, x: Tensor, y: Tensor, with_grad: bool) -> tuple[Tensor, Tensor | None]:
    """Corners (N, 6) = (a_x, a_y, b_x, b_y, c_x, c_y), points (N,) → (δ·d², ∂d²/∂corners (N, 6) or None).

    Edges (a, b), (b, c), (c, a); per edge ``t = clamp((p − u)·e / |e|², 0, 1)``, ``r = p − u − t e``; d² is
    the smallest |r|² (a degenerate edge, e = 0, gives t = 0: the distance to its end point).  δ = +1 when
    the point is inside or on the triangle (the three cross products of one sign), −1 outside.
    """
    ax, ay, bx, by, cx, cy = corners.unbind(1)
    edges = [_edge_terms(ax, ay, bx, by, x, y), _edge_terms(bx, by, cx, cy, x, y),
             _edge_terms(cx, cy, ax, ay, x, y)]
    c0, c1, c2 = (e[4] for e in edges)
    inside = ((c0 >= 0) & (c1 >= 0) & (c2 >= 0)) | ((c0 <= 0) & (c1 <= 0) & (c2 <= 0))
    sign = torch.where(inside, 1.0, -1.0).to(corners.dtype)
    first_is_01 = edges[0][0] <= edges[1][0]
    best = [torch.where(first_is_01, a, b) for a, b in zip(edges[0][:4], edges[1][:4], strict=True)]
    pick2 = edges[2][0] < best[0]
    d2, t, rx, ry = (torch.where(pick2, c, b) for b, c in zip(best, edges[2][:4], strict=True))
    if not with_grad:
        return sign * d2, None
    # ∂d²/∂u = −2(1 − t) r, ∂d²/∂v = −2 t r on the nearest edge (u, v); corner j starts edge j, ends j − 1
    gu = torch.stack([rx * (1.0 - t), ry * (1.0 - t)], dim=-1) * -2.0
    gv = torch.stack([rx * t, ry * t], dim=-1) * -2.0
    zero = torch.zeros_like(gu)
    on01 = (~pick2 & first_is_01).unsqueeze(-1)
    on12 = (~pick2 & ~first_is_01).unsqueeze(-1)
    on20 = pick2.unsqueeze(-1)
    grad_a = torch.where(on01, gu, torch.where(on20, gv, zero))
    grad_b = torch.where(on12, gu, torch.where(on01, gv, zero))
    grad_c = torch.where(on20, gu, torch.where(on12, gv, zero))
    return sign * d2, torch.cat([grad_a, grad_b, grad_c], dim=-1)


class _SoftPairs(torch.autograd.Function):
    """Σ over pairs of logsigmoid(−δ d²/σ), scattered into ``size`` output cells; gradient to the corners."""

    @staticmethod
    def forward(ctx: FunctionCtx, corners: Tensor, face: Tensor, x: Tensor, y: Tensor, cell: Tensor,
                size: int, sigma: float) -> Tensor:
        sd2, _ = _signed_distance2(corners[face], x.to(corners.dtype), y.to(corners.dtype), with_grad=False)
        ctx.save_for_backward(corners, face, x, y, cell)
        ctx.sigma = sigma
        return corners.new_zeros(size).index_add_(0, cell, F.logsigmoid(-sd2 / sigma))

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        corners, face, x, y, cell = ctx.saved_tensors
        sd2, grad = _signed_distance2(corners[face], x.to(corners.dtype), y.to(corners.dtype), with_grad=True)
        # d/d(sd2) logsigmoid(−sd2/σ) = −sigmoid(sd2/σ)/σ, and sd2 = δ·d², δ = sign(sd2) where d² > 0
        scale = grad_out[cell] * torch.sigmoid(sd2 / ctx.sigma) * (-torch.sign(sd2) / ctx.sigma)
        g = torch.zeros_like(corners).index_add_(0, face, grad * scale[:, None])
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
