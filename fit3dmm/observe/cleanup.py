"""Clean-up of part masks as in the PRDL paper: no ears, no islands, no forehead, no hair as skin.

Masks are numpy bool arrays in pixels of one image (x = column, y = row, pixel centres at integers).

The forehead is removed *dynamically* with the line over both eyebrows: the upper common tangent of the two
brow regions, i.e. the line through a pixel centre of each brow such that every pixel centre of both brows
lies on it or below it.  It is returned as (a, b, c) with a² + b² = 1, oriented so that

    a·x + b·y + c < 0   ⇔   (x, y) lies above the brows (removed),

the convention of :attr:`fit3dmm.types.observation.Observation.forehead_line`.  Points on the line (within
:data:`LINE_TOLERANCE` px) are kept, so the brows themselves survive.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from fit3dmm.types.parts import NUM_PARTS, PART_INDEX

LINE_TOLERANCE = 1e-3
"""Pixels/points with a·x + b·y + c ≥ −LINE_TOLERANCE count as on or below the forehead line (kept);
large enough for a line stored in float32 in crops of a few thousand pixels."""


def upper_common_tangent(points_a: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """The line touching two point sets from above (image y down), as (a, b, c) oriented as in the module doc.

    It is the edge of the upper convex hull of A ∪ B that joins a point of A to a point of B.  If the hulls
    interleave so that several such edges exist, the one nearest (in x) to the midpoint of the two centroids
    is taken; if none exists (one set lies entirely under the other's hull), the upper-hull edge above that
    midpoint is taken; a hull of a single point gives the horizontal line through it.

    Args:
        points_a: (N, 2) x, y, N ≥ 1.
        points_b: (M, 2) x, y, M ≥ 1.
    """
    a = np.asarray(points_a, np.float64).reshape(-1, 2)
    b = np.asarray(points_b, np.float64).reshape(-1, 2)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"both point sets must be non-empty, got {len(a)} and {len(b)} points")
    points = np.concatenate([a, b])
    owner = np.concatenate([np.zeros(len(a), int), np.ones(len(b), int)])
    hull = _upper_hull(points)
    if len(hull) == 1:
        return _line_through(points[hull[0]], points[hull[0]] + np.array([1.0, 0.0]))
    mid_x = 0.5 * (a[:, 0].mean() + b[:, 0].mean())
    edges = list(itertools.pairwise(hull))
    bridges = [(i, j) for i, j in edges if owner[i] != owner[j]]
    if bridges:
        i, j = min(bridges, key=lambda e: abs(0.5 * (points[e[0], 0] + points[e[1], 0]) - mid_x))
    else:
        i, j = min(edges, key=lambda e: _x_gap(points[e[0], 0], points[e[1], 0], mid_x))
    return _line_through(points[i], points[j])


def _x_gap(x0: float, x1: float, x: float) -> float:
    """Distance from x to the interval [x0, x1] (0 inside)."""
    return max(x0 - x, 0.0, x - x1)


def _upper_hull(points: np.ndarray) -> list[int]:
    """Indices of the upper convex hull (smallest y) from left to right, collinear points dropped.

    Andrew's monotone chain; with y pointing down a left-to-right upper chain turns clockwise on screen,
    i.e. the cross product (a − o) × (b − o) must stay positive.
    """
    order = np.lexsort((points[:, 1], points[:, 0]))  # by x, then y (top first)
    chain: list[int] = []
    for k in order:
        if chain and points[chain[-1], 0] == points[k, 0]:
            continue  # same column: the first one is the topmost
        while len(chain) >= 2:
            o, p = points[chain[-2]], points[chain[-1]]
            cross = (p[0] - o[0]) * (points[k, 1] - o[1]) - (p[1] - o[1]) * (points[k, 0] - o[0])
            if cross > 0:
                break
            chain.pop()
        chain.append(int(k))
    return chain


def _line_through(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The line through p and q (q to the right of p), normal pointing down: (a, b, c), a² + b² = 1."""
    d = q - p
    normal = np.array([-d[1], d[0]]) / np.hypot(d[0], d[1])
    return np.array([normal[0], normal[1], -normal @ p])


def _column_tops(mask: np.ndarray) -> np.ndarray:
    """(K, 2) pixel centres (x, y) of the topmost pixel of every non-empty column of a (H, W) mask."""
    cols = np.flatnonzero(mask.any(0))
    return np.stack([cols, mask[:, cols].argmax(0)], axis=-1).astype(np.float64)


def brow_tangent_line(left_brow: np.ndarray, right_brow: np.ndarray) -> np.ndarray | None:
    """The forehead line over two eyebrow masks (H, W) bool, see the module doc.

    Only the topmost pixel of each column can touch a line from above, so the tangent is computed on those.
    With one brow empty (e.g. hidden in a profile), the horizontal line through the other brow's top pixel
    is returned; with both empty, None (nothing can be removed).
    """
    left_brow, right_brow = _check_mask(left_brow, "left_brow"), _check_mask(right_brow, "right_brow")
    if left_brow.shape != right_brow.shape:
        raise ValueError(f"brow masks differ in size: {left_brow.shape} and {right_brow.shape}")
    tops = [_column_tops(m) for m in (left_brow, right_brow) if m.any()]
    if not tops:
        return None
    if len(tops) == 1:
        top = tops[0][tops[0][:, 1].argmin()]
        return _line_through(top, top + np.array([1.0, 0.0]))
    return upper_common_tangent(tops[0], tops[1])


def transform_line(line: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Express a line in another frame: ``matrix`` (3, 3) affine maps the new frame's points into the frame
    of ``line``; e.g. ``transform_line(photo_line, crop_to_photo)`` gives the line in crop pixels.

    For a point p of the new frame, ℓ·(M p) = (ℓ M)·p, so ℓ' = ℓ M, rescaled to a² + b² = 1 (a positive
    scale, so the side that is "above" is kept as long as M does not mirror the image).
    """
    line = np.asarray(line, np.float64)
    matrix = np.asarray(matrix, np.float64)
    if line.shape != (3,) or matrix.shape != (3, 3):
        raise ValueError(f"need a (3,) line and a (3, 3) matrix, got {line.shape} and {matrix.shape}")
    out = line @ matrix
    return out / np.hypot(out[0], out[1])


def remove_above_line(mask: np.ndarray, line: np.ndarray | None) -> np.ndarray:
    """``mask`` (..., H, W) bool without the pixels above ``line`` (a·x + b·y + c < −LINE_TOLERANCE);
    None returns a copy."""
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim < 2:
        raise ValueError(f"mask must be bool (..., H, W), got {mask.dtype} {mask.shape}")
    if line is None:
        return mask.copy()
    a, b, c = np.asarray(line, np.float64)
    h, w = mask.shape[-2:]
    below = (a * np.arange(w)[None, :] + b * np.arange(h)[:, None] + c) >= -LINE_TOLERANCE
    return mask & below


def remove_small_components(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """``mask`` (H, W) bool without the 8-connected components smaller than ``min_fraction`` of its area."""
    mask = _check_mask(mask, "mask")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must lie in [0, 1], got {min_fraction}")
    total = int(mask.sum())
    if total == 0 or min_fraction == 0.0:
        return mask.copy()
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_fraction * total
    keep[0] = False  # background
    return keep[labels]


def drop_ears(skin: np.ndarray, face: np.ndarray, margin: int = 0) -> np.ndarray:
    """Skin (H, W) bool kept only inside the face region ``face`` (the face oval) grown by ``margin`` px.

    This removes ears, and with them everything else a parser calls skin outside the face outline (neck,
    skin seen past the hair line at the sides), none of which the face model covers.
    """
    skin, face = _check_mask(skin, "skin"), _check_mask(face, "face")
    if skin.shape != face.shape:
        raise ValueError(f"skin {skin.shape} and face {face.shape} differ in size")
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        face = cv2.dilate(face.astype(np.uint8), kernel).astype(bool)
    return skin & face


def clean_part_masks(
    masks: np.ndarray,
    *,
    hair: np.ndarray | None = None,
    face: np.ndarray | None = None,
    forehead_line: np.ndarray | None = None,
    min_fraction: float = 0.05,
    face_margin: int = 0,
) -> np.ndarray:
    """The paper's clean-up of (P, H, W) bool part masks in :data:`~fit3dmm.types.parts.PART_NAMES` order.

    In this order: hair is taken out of the skin (hair never counts as skin); skin outside ``face`` (grown
    by ``face_margin``) is dropped (:func:`drop_ears`); every part loses what lies above ``forehead_line``;
    every part loses its components smaller than ``min_fraction`` of its remaining area.  None skips a step.

    Returns:
        New (P, H, W) bool masks.
    """
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 3 or masks.shape[0] != NUM_PARTS:
        raise ValueError(f"masks must be bool ({NUM_PARTS}, H, W), got {masks.dtype} {masks.shape}")
    out = masks.copy()
    skin = PART_INDEX["skin"]
    if hair is not None:
        out[skin] &= ~_check_mask(hair, "hair")
    if face is not None:
        out[skin] = drop_ears(out[skin], face, face_margin)
    out = remove_above_line(out, forehead_line)
    for p in range(NUM_PARTS):
        out[p] = remove_small_components(out[p], min_fraction)
    return out


def _check_mask(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim != 2:
        raise ValueError(f"{name} must be a bool (H, W) mask, got {mask.dtype} {mask.shape}")
    return mask
