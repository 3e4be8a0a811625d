"""Candidate (pixel, triangle) pairs: the shared engine of the hard and the soft rasterizer.

A pair (pixel, triangle j) is enumerated when the pixel centre, at integer coordinates (x, y) = (column, row)
as in :mod:`fit3dmm.render.camera`, lies in the 2D bounding box of triangle j expanded by ``margin`` pixels:

    ⌈min_k x_jk − margin⌉ ≤ x ≤ ⌊max_k x_jk + margin⌋   (the same for y), clipped to the image.

Every pixel centre within distance ``margin`` of a triangle is therefore enumerated (the margin-neighbourhood
of a triangle lies inside its expanded box).  Pairs are generated from per-triangle box sizes with a
cumulative sum and ``searchsorted`` (no Python loop over triangles), in chunks of at most ``max_pairs``, so
that memory stays bounded whatever the size of the triangles or of the image.  Triangles entirely off the
image, with a non-finite corner or depth, with a corner behind the camera (depth ≤ 0) or masked out yield
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_MAX_PAIRS = 1 << 18


@dataclass
class PixelTrianglePairs:
    """One chunk of N candidate pairs, all (N,) int64.

    ``face``: batch-flat triangle index b·T + t; ``pixel``: batch-flat pixel index b·H·W + y·W + x;
    ``x``, ``y``: the pixel's column and row.
    """

    face: Tensor
    pixel: Tensor
    x: Tensor
    y: Tensor


def check_mesh_inputs(points2d: Tensor, triangles: Tensor, image_size: tuple[int, int]) -> tuple[int, int]:
    """Validate (B, V, 2) points, (T, 3) int64 triangles and (H, W); return (H, W) as ints."""
    if points2d.ndim != 3 or points2d.shape[-1] != 2 or not points2d.is_floating_point():
        raise ValueError(f"points2d must be float (B, V, 2), got {points2d.dtype} {tuple(points2d.shape)}")
    if triangles.ndim != 2 or triangles.shape[-1] != 3 or triangles.dtype != torch.long:
        raise ValueError(f"triangles must be (T, 3) int64, got {triangles.dtype} {tuple(triangles.shape)}")
    if triangles.numel() and (int(triangles.min()) < 0 or int(triangles.max()) >= points2d.shape[1]):
        raise ValueError(f"triangle indices must lie in [0, {points2d.shape[1]}), got "
                         f"[{int(triangles.min())}, {int(triangles.max())}]")
    if len(image_size) != 2 or min(int(s) for s in image_size) < 1:
        raise ValueError(f"image_size must be (H, W) with H, W ≥ 1, got {image_size}")
    return int(image_size[0]), int(image_size[1])


def pixel_triangle_pairs(
    points2d: Tensor,
    triangles: Tensor,
    image_size: tuple[int, int],
    margin: float = 0.0,
    depth: Tensor | None = None,
    *,
    triangle_mask: Tensor | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> Iterator[PixelTrianglePairs]:
    """Yield the (pixel, triangle) pairs whose pixel centre lies in the triangle's box expanded by ``margin``.

    Args:
        points2d: (B, V, 2) projected vertices in pixels (the enumeration takes no gradient).
        triangles: (T, 3) int64 vertex indices.
        image_size: (H, W).
        margin: box expansion in pixels, ≥ 0.
        depth: (B, V) view depths or None; triangles with a corner at depth ≤ 0 are skipped.
        triangle_mask: (B, T) bool, the triangles to consider; None = all.
        max_pairs: the largest chunk; a chunk may split a triangle's box.
    Yields:
        :class:`PixelTrianglePairs`, ordered by (batch, triangle), then row-major inside each box.
    """
    h, w = check_mesh_inputs(points2d, triangles, image_size)
    bsz, nt = points2d.shape[0], triangles.shape[0]
    if margin < 0 or max_pairs < 1:
        raise ValueError(f"margin must be ≥ 0 and max_pairs ≥ 1, got {margin} and {max_pairs}")
    if depth is not None and depth.shape != points2d.shape[:2]:
        raise ValueError(f"depth must be {tuple(points2d.shape[:2])}, got {tuple(depth.shape)}")
    if triangle_mask is not None and triangle_mask.shape != (bsz, nt):
        raise ValueError(f"triangle_mask must be ({bsz}, {nt}), got {tuple(triangle_mask.shape)}")
    with torch.no_grad():
        corners = points2d.detach()[:, triangles]  # (B, T, 3, 2)
        keep = torch.isfinite(corners).all(-1).all(-1)
        if depth is not None:
            dz = depth.detach()[:, triangles]
            keep &= ((dz > 0) & torch.isfinite(dz)).all(-1)
        if triangle_mask is not None:
            keep &= triangle_mask.to(device=keep.device, dtype=torch.bool)
        corners = torch.where(keep[..., None, None], corners, torch.zeros_like(corners))
        # clip to [-1, size] before rounding: huge coordinates cannot overflow the integer conversion
        size = corners.new_tensor([w, h])
        lo = (corners.amin(2) - margin).clamp_min(-1.0).minimum(size).ceil().long().clamp_min(0)
        hi = (corners.amax(2) + margin).clamp_min(-1.0).minimum(size - 1).floor().long()
        extent = (hi - lo + 1).clamp_min(0)  # (B, T, 2): box width and height in pixels
        counts = (extent[..., 0] * extent[..., 1] * keep).flatten()
        faces = counts.nonzero().squeeze(1)
        if faces.numel() == 0:
            return
        counts = counts[faces]
        ends = counts.cumsum(0)
        starts = ends - counts
        total = int(ends[-1])
        x0, y0 = lo.flatten(0, 1)[faces].unbind(-1)
        width = extent.flatten(0, 1)[faces, 0]
        base = (faces // nt) * (h * w) + y0 * w + x0  # flat index of each box's first pixel
    # yield outside no_grad: a generator suspended inside the block would leave grad disabled for the caller
    for first in range(0, total, max_pairs):
        g = torch.arange(first, min(total, first + max_pairs), device=points2d.device)
        owner = torch.searchsorted(ends, g, right=True)
        local = g - starts[owner]
        wo = width[owner]
        row = local // wo
        col = local - row * wo
        yield PixelTrianglePairs(faces[owner], base[owner] + row * w + col, x0[owner] + col, y0[owner] + row)
