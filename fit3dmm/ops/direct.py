"""Brute-force reductions of query-to-point distances: the exact reference (and a fallback) for the fast ops.

Distances are formed from direct coordinate differences in float64,
``‖q − p‖ = sqrt((qx − px)² + (qy − py)²)``, never through ``‖q‖² + ‖p‖² − 2 q·p`` (torch.cdist's matmul
path), which in float32 loses ~0.1 px at short range and gives gradients wrong by orders of magnitude near
coincident points.  The gradient of ‖·‖ at 0 is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from fit3dmm.ops.checks import check_point_sets, check_queries

REDUCTIONS = ("min", "max", "sum")


def direct_distance_reduce(
    queries: Tensor,
    points: Tensor,
    valid: Tensor | None,
    reductions: Sequence[str],
    *,
    chunk_pairs: int = 1 << 21,
) -> Tensor:
    """Min, max and/or sum over the valid points of the distance from each query, by brute force.

    ``out[b, m, r] = reduce_r { ‖queries[b, m] − points[b, n]‖ : valid[b, n] }`` with ``reduce_r`` one of
    ``"min"``, ``"max"``, ``"sum"``; min and max of an empty set are 0.  Computed in float64 over chunks of
    queries (each checkpointed when a gradient is needed, so memory stays O(chunk_pairs)), returned in the
    dtype of ``points``.

    Args:
        queries: (M, 2) shared by the batch, or (B, M, 2).
        points: (B, N, 2).
        valid: (B, N) bool, or None for all valid.
        reductions: names from ``("min", "max", "sum")``.
        chunk_pairs: at most this many query-point pairs per chunk.

    Returns:
        (B, M, len(reductions)).
    """
    valid = check_point_sets(points, valid)
    queries = check_queries(queries, points.shape[0])
    b, n = points.shape[:2]
    unknown = [r for r in reductions if r not in REDUCTIONS]
    if unknown or not reductions:
        raise ValueError(f"reductions must be a non-empty subset of {REDUCTIONS}, got {tuple(reductions)}")

    q64 = queries.to(torch.float64)
    p64 = points.to(torch.float64)
    nonempty = valid.any(-1)[:, None]
    step = max(1, chunk_pairs // max(n, 1))
    grad = torch.is_grad_enabled() and (q64.requires_grad or p64.requires_grad)

    def block(q: Tensor, p: Tensor) -> Tensor:
        d = torch.linalg.vector_norm(q[:, :, None, :] - p[:, None, :, :], dim=-1)  # (B, m, N)
        mask = valid[:, None, :]
        cols = []
        for r in reductions:
            if r == "sum":
                cols.append(torch.where(mask, d, 0.0).sum(-1))
            else:
                fill = torch.inf if r == "min" else -torch.inf
                red = d.masked_fill(~mask, fill)
                red = red.min(-1).values if r == "min" else red.max(-1).values
                cols.append(torch.where(nonempty, red, 0.0))
        return torch.stack(cols, dim=-1)

    outs = []
    for start in range(0, q64.shape[1], step):
        q = q64[:, start : start + step]
        outs.append(checkpoint(block, q, p64, use_reentrant=False) if grad else block(q, p64))
    if not outs:
        return points.new_zeros((b, 0, len(reductions)))
    return torch.cat(outs, dim=1).to(points.dtype)
