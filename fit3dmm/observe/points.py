"""Target point sets C_p of PRDL: the pixels of each part mask, skin thinned by farthest point sampling.

C_p holds the pixel centres (x, y) = (c, r) of part p's mask in the crop (the convention of
:mod:`fit3dmm.render.camera`), in row-major order, without the pixels above the forehead line.  As in the
paper the skin, by far the largest part, is reduced to 3000 points by farthest point sampling (FPS, which
keeps the coverage of the whole region, its outline included); other parts keep all their pixels unless a
count is given for them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from fit3dmm.observe.cleanup import LINE_TOLERANCE
from fit3dmm.ops.fps import farthest_point_sampling
from fit3dmm.types.observation import PointSet
from fit3dmm.types.parts import NUM_PARTS, PART_NAMES

DEFAULT_COUNTS: Mapping[str, int] = {"skin": 3000}


def points_below_line(points: Tensor, line: Tensor | None) -> Tensor:
    """(B, N) bool: points (B, N, 2) on or below the forehead line (B, 3), i.e. a·x + b·y + c ≥ −tolerance
    (:data:`~fit3dmm.observe.cleanup.LINE_TOLERANCE`); all True for ``line`` None."""
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, N, 2), got {tuple(points.shape)}")
    if line is None:
        return torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
    if line.shape != (points.shape[0], 3):
        raise ValueError(f"line must be ({points.shape[0]}, 3), got {tuple(line.shape)}")
    line = line.to(device=points.device, dtype=torch.float64)
    value = points.double() @ line[:, :2, None] + line[:, None, 2:]
    return value[..., 0] >= -LINE_TOLERANCE


def mask_point_sets(
    masks: Tensor,
    counts: Mapping[str, int] = DEFAULT_COUNTS,
    forehead_line: Tensor | None = None,
) -> dict[str, PointSet]:
    """The target point set of every part from a batch of part masks.

    Args:
        masks: (B, P, S, S) bool in :data:`~fit3dmm.types.parts.PART_NAMES` order (any H × W works).
        counts: part name → number of points kept by FPS (parts with fewer pixels keep them all); parts not
            named keep every pixel.  Default ``{"skin": 3000}`` as in the paper.
        forehead_line: (B, 3) lines (a, b, c) of :attr:`Observation.forehead_line`; pixels above are
            dropped before sampling.  None keeps everything.

    Returns:
        Part name → :class:`PointSet` of float32 (x, y) pixel centres, padded over the batch; every part of
        PART_NAMES is present (with N = 0 when all masks are empty).  Without FPS the valid points are in
        row-major order; with FPS in the order picked, starting from the first (top-left) pixel.
    """
    if masks.ndim != 4 or masks.shape[1] != NUM_PARTS or masks.dtype != torch.bool:
        raise ValueError(f"masks must be bool (B, {NUM_PARTS}, H, W), got {masks.dtype} {tuple(masks.shape)}")
    unknown = set(counts) - set(PART_NAMES)
    if unknown:
        raise ValueError(f"counts names unknown parts {sorted(unknown)}; parts are {PART_NAMES}")
    if any(int(k) < 0 for k in counts.values()):
        raise ValueError(f"counts must be >= 0, got {dict(counts)}")
    b = masks.shape[0]
    if forehead_line is not None and forehead_line.shape != (b, 3):
        raise ValueError(f"forehead_line must be ({b}, 3), got {tuple(forehead_line.shape)}")
    out = {}
    for p, name in enumerate(PART_NAMES):
        pixels = _pixel_sets(masks[:, p], forehead_line)
        if name in counts and pixels.points.shape[1] > counts[name]:
            index = farthest_point_sampling(pixels.points, pixels.valid, int(counts[name]))
            valid = index >= 0
            points = torch.gather(pixels.points, 1, index.clamp_min(0)[..., None].expand(-1, -1, 2))
            pixels = PointSet(points * valid[..., None], valid)
        out[name] = pixels
    return out


def _pixel_sets(mask: Tensor, line: Tensor | None) -> PointSet:
    """(B, H, W) bool → PointSet of the (x, y) pixel centres on or below ``line``, row-major, padded."""
    b = mask.shape[0]
    rc = mask.nonzero()  # (K, 3) batch, row, col in row-major order
    xy = rc[:, [2, 1]].to(torch.float32)
    if line is not None:  # each pixel as a batch of one point, with its item's line
        inside = points_below_line(xy[:, None], line[rc[:, 0]])[:, 0]
        rc, xy = rc[inside], xy[inside]
    counts = torch.bincount(rc[:, 0], minlength=b)
    n = int(counts.max()) if b else 0
    slot = torch.arange(len(rc), device=mask.device) - (torch.cumsum(counts, 0) - counts)[rc[:, 0]]
    points = torch.zeros((b, n, 2), dtype=torch.float32, device=mask.device)
    valid = torch.zeros((b, n), dtype=torch.bool, device=mask.device)
    points[rc[:, 0], slot] = xy
    valid[rc[:, 0], slot] = True
    return PointSet(points, valid)
