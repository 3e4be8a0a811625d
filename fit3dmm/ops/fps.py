"""Exact farthest point sampling (FPS), batched, pure torch.

The textbook greedy algorithm: start from one point s₀; then, for j = 1 … k−1, add the unchosen point

    s_j = argmax_{i ∉ S} min_{s ∈ S} ‖p_i − p_s‖²,      S = {s₀ … s_{j−1}},

with ties broken by the lowest index.  The distance of every point to the chosen set is kept and lowered
after each pick with the new point only (one O(N) vectorised update per pick), so the cost is O(N·k)
arithmetic in k small steps, for all B items at once.  Squared distances are summed coordinate by coordinate
in the input dtype, so the picks are exactly those of a straightforward implementation in that dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

_CHOSEN = -1.0  # distance marker of chosen points: below every real squared distance (≥ 0)
_INVALID = -2.0  # marker of padding: below the chosen points, so never picked


def farthest_point_sampling(
    points: Tensor,
    valid: Tensor | None,
    k: int,
    *,
    start_index: int | Tensor | None = None,
    seed: int | None = None,
) -> Tensor:
    """Indices of k farthest-point samples of each point set.

    Args:
        points: (B, N, D) float coordinates, D ≥ 1 (2 or 3 for point sets; more for feature vectors, e.g. the
            pose and expression of video frames when choosing keyframes).
        valid: (B, N) bool, False for padding (never picked); None = all points valid.
        k: number of samples, ≥ 0.
        start_index: the first pick, an int for every item or a (B,) long tensor; it must index a valid
            point.  Default (with ``seed`` None): the first valid point of each item (lowest index).
        seed: instead of ``start_index``, draw the first pick uniformly among the valid points of each item
            with a ``torch.Generator`` seeded with ``seed`` (reproducible, no global state touched).

    Returns:
        (B, k) long indices into N, in the order picked.  An item with n < k valid points gets its n points
        followed by −1 (so ``indices >= 0`` is its validity mask).

    Raises:
        ValueError: bad shapes, negative k, both ``start_index`` and ``seed``, or a start that is not a valid
            point.
    """
    if points.ndim != 3 or points.shape[-1] < 1:
        raise ValueError(f"points must be (B, N, D) with D ≥ 1, got {tuple(points.shape)}")
    if not points.dtype.is_floating_point:
        raise ValueError(f"points must be floating point, got {points.dtype}")
    b, n, _ = points.shape
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if valid is None:
        valid = torch.ones((b, n), dtype=torch.bool, device=points.device)
    if valid.shape != (b, n) or valid.dtype != torch.bool:
        raise ValueError(f"valid must be bool ({b}, {n}), got {valid.dtype} {tuple(valid.shape)}")
    if start_index is not None and seed is not None:
        raise ValueError("give start_index or seed, not both")
    out = torch.full((b, k), -1, dtype=torch.long, device=points.device)
    counts = valid.sum(1)
    if k == 0 or n == 0:
        return out
    last = _start(valid, counts, start_index, seed)[:, None]  # (B, 1)
    coords = [points[..., axis].contiguous() for axis in range(points.shape[-1])]
    dist = torch.where(valid, torch.inf, _INVALID).to(points.dtype)
    for j in range(min(k, n)):
        if j > 0:
            last = dist.argmax(1, keepdim=True)  # first maximum = lowest index among ties
        current = dist.gather(1, last)
        picked = current >= 0  # False once an item has only markers left
        out[:, j : j + 1] = torch.where(picked, last, -1)
        dist.scatter_(1, last, torch.where(picked, _CHOSEN, current))
        if j + 1 < k:
            d2 = (coords[0] - coords[0].gather(1, last)).square_()
            for c in coords[1:]:
                d2.add_((c - c.gather(1, last)).square_())
            torch.minimum(dist, d2, out=dist)  # markers (< 0) stay below every squared distance
    return out


def _start(valid: Tensor, counts: Tensor, start_index: int | Tensor | None, seed: int | None) -> Tensor:
    """(B,) first pick; items without valid points get 0 (never used)."""
    b, n = valid.shape
    if seed is not None:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        u = torch.rand(b, generator=generator, dtype=torch.float64).to(valid.device)
        rank = (u * counts.double()).floor().long().clamp_max((counts - 1).clamp_min(0))
        # the rank-th valid point: first index whose running count of valid points exceeds rank
        running = valid.long().cumsum(1)
        return (running <= rank[:, None]).sum(1).clamp_max(n - 1)
    if start_index is None:
        return valid.long().argmax(1)  # first True (0 where none)
    start = torch.as_tensor(start_index, dtype=torch.long, device=valid.device)
    if start.ndim > 1 or start.numel() not in (1, b):
        raise ValueError(f"start_index must be an int or a ({b},) tensor, got shape {tuple(start.shape)}")
    start = start.reshape(-1).expand(b).clone()
    if bool(((start < 0) | (start >= n)).any()):
        raise ValueError(f"start_index must lie in [0, {n - 1}], got {start.tolist()}")
    ok = valid[torch.arange(b, device=valid.device), start] | (counts == 0)
    if not bool(ok.all()):
        bad = (~ok).nonzero().flatten().tolist()
        raise ValueError(f"start_index must point at a valid point; items {bad} start on padding")
    return start
