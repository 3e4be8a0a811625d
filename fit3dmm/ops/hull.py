"""Which points of a 2D set can be vertices of its convex hull (Akl–Toussaint throw-away), batched, no grad.

The farthest point of a set from any position is a vertex of the set's convex hull, so the points strictly
inside the hull never need to be looked at.  A full hull (monotone chain) is sequential; instead take the
extreme point of the set in D directions θ_d = 2πd/D: these are hull vertices, met in order around the hull,
so they span a convex polygon Q inside the hull, and a point strictly inside Q is strictly inside the hull.
Only the points on or outside Q are kept: all hull vertices plus a thin sliver of others.  Pure torch, so it
runs on any device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fit3dmm.ops.checks import check_point_sets


def hull_candidates(points: Tensor, valid: Tensor | None = None, directions: int = 64) -> Tensor:
    """(B, N) bool: True for every valid point that may be a convex-hull vertex.

    A valid point is dropped only if it lies strictly inside the polygon Q of the extreme points in
    ``directions`` directions (by more than a rounding tolerance); degenerate polygons (collinear sets, fewer
    than three distinct extremes) drop nothing.  Every hull vertex is kept.

    Args:
        points: (B, N, 2).
        valid: (B, N) bool, or None for all valid.
        directions: D ≥ 3 probe directions; more gives a tighter Q at O(B·N·D) cost.
    """
    valid = check_point_sets(points, valid)
    if directions < 3:
        raise ValueError(f"directions must be >= 3, got {directions}")
    if points.shape[1] == 0:
        return valid.clone()
    with torch.no_grad():
        step = 2.0 * math.pi / directions
        theta = torch.arange(directions, dtype=points.dtype, device=points.device) * step
        u = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)  # (D, 2)
        proj = (points @ u.T).masked_fill(~valid[..., None], -torch.inf)  # (B, N, D)
        ext = proj.argmax(1)  # (B, D)
        corner = torch.gather(points, 1, ext[..., None].expand(-1, -1, 2))  # (B, D, 2) around the hull
        edge = corner.roll(-1, dims=1) - corner  # (B, D, 2)
        rel = points[:, :, None, :] - corner[:, None, :, :]  # (B, N, D, 2)
        cross = edge[:, None, :, 0] * rel[..., 1] - edge[:, None, :, 1] * rel[..., 0]
        tol = 16.0 * torch.finfo(points.dtype).eps * (
            torch.linalg.vector_norm(edge, dim=-1)[:, None, :] * torch.linalg.vector_norm(rel, dim=-1) + 1e-30
        )
        degenerate = (edge == 0).all(-1)[:, None, :]  # repeated extreme point: no edge
        inside_edge = (cross > tol) | degenerate
        # a polygon with < 3 distinct corners has an edge and its reverse: nothing passes both
        strictly_inside = inside_edge.all(-1) & ~degenerate.all(-1)
        return valid & ~strictly_inside
