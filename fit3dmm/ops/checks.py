"""Input validation shared by the 2D point-set ops and the losses built on them (one wording per mistake)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_point_sets(points: Tensor, valid: Tensor | None = None) -> Tensor:
    """Validate B point sets ``points`` (B, N, 2) and their mask ``valid`` (B, N) bool.

    Returns:
        The mask, all True when ``valid`` is None.
    Raises:
        ValueError: a shape is wrong.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, N, 2), got {tuple(points.shape)}")
    if valid is None:
        return torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
    if valid.shape != points.shape[:2]:
        raise ValueError(f"valid must be {tuple(points.shape[:2])}, got {tuple(valid.shape)}")
    return valid


def check_queries(queries: Tensor, batch: int) -> Tensor:
    """(M, 2) queries shared by a batch of ``batch`` sets, or (B, M, 2) → (B, M, 2) (expanded, not copied)."""
    if queries.ndim == 2:
        queries = queries.unsqueeze(0).expand(batch, -1, -1)
    if queries.ndim != 3 or queries.shape[-1] != 2 or queries.shape[0] != batch:
        raise ValueError(f"queries must be (M, 2) or ({batch}, M, 2), got {tuple(queries.shape)}")
    return queries
