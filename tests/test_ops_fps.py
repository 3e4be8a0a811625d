"""farthest_point_sampling against a textbook numpy implementation (ties, padding, starts, exhaustion)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from fit3dmm.ops.fps import farthest_point_sampling


def _reference(points: np.ndarray, valid: np.ndarray, k: int, start: int | None = None) -> list[int]:
    """Textbook FPS of one set: O(N) scan per pick over the unchosen valid points, lowest index on ties."""
    candidates = [i for i in range(len(points)) if valid[i]]
    if not candidates:
        return [-1] * k
    chosen = [candidates[0] if start is None else start]
    while len(chosen) < min(k, len(candidates)):
        best, best_d = -1, -1.0
        for i in candidates:
            if i in chosen:
                continue
            d = min(_sq(points[i], points[s]) for s in chosen)
            if d > best_d:  # strict: the first (lowest) index wins a tie
                best, best_d = i, d
        chosen.append(best)
    return (chosen + [-1] * k)[:k]


def _sq(p: np.ndarray, q: np.ndarray) -> float:
    """Squared distance summed coordinate by coordinate in the array dtype (as the torch code does)."""
    d = (p[0] - q[0]) * (p[0] - q[0])
    for axis in range(1, len(p)):
        d = d + (p[axis] - q[axis]) * (p[axis] - q[axis])
    return float(d)


@pytest.mark.parametrize("dim", [2, 3])
def test_matches_reference_on_random_padded_batches(dim: int) -> None:
    rng = np.random.default_rng(dim)
    b, n, k = 4, 60, 25
    points = rng.normal(size=(b, n, dim))
    valid = np.ones((b, n), bool)
    valid[1, 40:] = False  # padding at the end
    valid[2, rng.choice(n, 20, replace=False)] = False  # holes anywhere, including possibly index 0
    valid[3, :] = False
    valid[3, [5, 17, 33]] = True  # fewer valid points than k: exhaustion
    got = farthest_point_sampling(torch.from_numpy(points), torch.from_numpy(valid), k)
    assert got.shape == (b, k) and got.dtype == torch.long
    for i in range(b):
        assert got[i].tolist() == _reference(points[i], valid[i], k), f"item {i}"
    assert sorted(got[3, :3].tolist()) == [5, 17, 33]
    assert (got[3, 3:] == -1).all()


def test_ties_on_an_integer_grid_go_to_the_lowest_index() -> None:
    # pixel-like points with many equal distances, and duplicated points
    ys, xs = np.meshgrid(np.arange(6), np.arange(7), indexing="ij")
    grid = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)
    points = np.concatenate([grid, grid[:5]])  # 5 exact duplicates at the end
    valid = np.ones(len(points), bool)
    k = len(points)  # all points, so the duplicates (distance 0) must come last, lowest index first
    got = farthest_point_sampling(torch.from_numpy(points)[None], None, k)[0].tolist()
    assert got == _reference(points, valid, k)
    assert sorted(got) == list(range(len(points)))
    assert got[-5:] == sorted(got[-5:])
    # the second pick from corner (0, 0) is the opposite corner (6, 5), index 41
    assert got[:2] == [0, 41]


def test_start_index_and_seed() -> None:
    rng = np.random.default_rng(7)
    points = rng.integers(0, 50, size=(3, 40, 2)).astype(np.float64)
    valid = rng.random((3, 40)) > 0.3
    valid[:, 9] = True
    t_points, t_valid = torch.from_numpy(points), torch.from_numpy(valid)
    got = farthest_point_sampling(t_points, t_valid, 10, start_index=9)
    for i in range(3):
        assert got[i].tolist() == _reference(points[i], valid[i], 10, start=9)
    per_item = torch.tensor([9, int(np.flatnonzero(valid[1])[-1]), 9])
    got = farthest_point_sampling(t_points, t_valid, 10, start_index=per_item)
    assert got[1].tolist() == _reference(points[1], valid[1], 10, start=int(per_item[1]))
    a = farthest_point_sampling(t_points, t_valid, 10, seed=3)
    b = farthest_point_sampling(t_points, t_valid, 10, seed=3)
    assert torch.equal(a, b)
    assert t_valid.gather(1, a).all()
    for i in range(3):  # a random start, then the textbook algorithm
        assert a[i].tolist() == _reference(points[i], valid[i], 10, start=int(a[i, 0]))
    starts = {int(farthest_point_sampling(t_points, t_valid, 1, seed=s)[0, 0]) for s in range(30)}
    assert len(starts) > 5 and all(valid[0, s] for s in starts)


def test_edge_cases_and_errors() -> None:
    points = torch.rand(2, 5, 2)
    assert farthest_point_sampling(points, None, 0).shape == (2, 0)
    assert (farthest_point_sampling(torch.rand(2, 0, 2), None, 3) == -1).all()
    none_valid = torch.zeros(2, 5, dtype=torch.bool)
    assert (farthest_point_sampling(points, none_valid, 3) == -1).all()
    with pytest.raises(ValueError, match="points must be"):
        farthest_point_sampling(torch.rand(5, 2), None, 2)
    with pytest.raises(ValueError, match="floating"):
        farthest_point_sampling(torch.zeros(1, 5, 2, dtype=torch.long), None, 2)
    with pytest.raises(ValueError, match="valid must be"):
        farthest_point_sampling(points, torch.ones(2, 4, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="not both"):
        farthest_point_sampling(points, None, 2, start_index=0, seed=1)
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[1, 2] = False
    with pytest.raises(ValueError, match="padding"):
        farthest_point_sampling(points, valid, 2, start_index=2)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        farthest_point_sampling(points, None, 2, start_index=5)
    with pytest.raises(ValueError, match="k must be"):
        farthest_point_sampling(points, None, -1)


def test_3000_of_15000_pixels_is_fast() -> None:
    gen = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(130), torch.arange(120), indexing="ij")
    pixels = torch.stack([xs.flatten(), ys.flatten()], -1).float()
    keep = torch.randperm(len(pixels), generator=gen)[:15000]
    points = pixels[keep][None]
    t0 = time.process_time()  # CPU time: the machine may be shared
    idx = farthest_point_sampling(points, None, 3000)
    elapsed = time.process_time() - t0
    assert idx.unique().numel() == 3000 and (idx >= 0).all()
    assert elapsed < 1.0, f"FPS of 3000 out of 15000 points took {elapsed:.2f} s"
