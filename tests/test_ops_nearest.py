"""Exact nearest/farthest search (tile pruning, grid tiles, hull filter) against brute force."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial import ConvexHull

from fit3dmm.ops.grid import AnchorGrid
from fit3dmm.ops.hull import hull_candidates
from fit3dmm.ops.nearest import farthest_index, indexed_distance, nearest_distance, nearest_index


def blob(n: int, centre: tuple[float, float], axes: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    r = torch.rand(n, generator=gen, dtype=torch.float64).sqrt()
    t = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    return torch.stack([centre[0] + axes[0] * r * torch.cos(t), centre[1] + axes[1] * r * torch.sin(t)], -1)


def brute(queries: torch.Tensor, points: torch.Tensor, valid: torch.Tensor, largest: bool) -> torch.Tensor:
    """First index of the min (max) squared distance, by an explicit double loop over the batch."""
    out = torch.zeros(queries.shape[:2], dtype=torch.long)
    for b in range(points.shape[0]):
        d2 = ((queries[b, :, None, :] - points[b, None, :, :]) ** 2).sum(-1)
        d2[:, ~valid[b]] = -math.inf if largest else math.inf
        best = d2.max(-1, keepdim=True).values if largest else d2.min(-1, keepdim=True).values
        hit = d2 == best
        out[b] = torch.where(hit, torch.arange(points.shape[1]), points.shape[1]).min(-1).values
    return out


@pytest.fixture
def sets() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    a = blob(400, (40.0, 45.0), (25.0, 30.0), gen)
    b = torch.cat([blob(150, (30.0, 30.0), (6.0, 3.0), gen), torch.full((250, 2), 7.0, dtype=torch.float64)])
    valid = torch.ones(2, 400, dtype=torch.bool)
    valid[1, 150:] = False  # padding (at a position that would win if it counted)
    return torch.stack([a, b]), valid


@pytest.mark.parametrize("largest", [False, True])
def test_tiles_match_brute_for_point_queries(sets: tuple[torch.Tensor, torch.Tensor], largest: bool) -> None:
    points, valid = sets
    gen = torch.Generator().manual_seed(2)
    queries = torch.rand(2, 900, 2, generator=gen, dtype=torch.float64) * 100.0 - 10.0
    query_valid = torch.rand(2, 900, generator=gen) > 0.2
    got = nearest_index(queries, points, valid, query_valid=query_valid, largest=largest, method="tiles")
    want = brute(queries, points, valid, largest)
    assert torch.equal(got[query_valid], want[query_valid])
    assert (got[~query_valid] == 0).all()


@pytest.mark.parametrize("largest", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grid_tiles_match_brute(sets: tuple[torch.Tensor, torch.Tensor], largest: bool, dtype: torch.dtype) -> None:
    points, valid = sets
    points = points.to(dtype)
    grid = AnchorGrid(37, 45, stride=2.5, origin=(-3.0, 1.5))  # not a multiple of the tile size
    got = nearest_index(grid, points, valid, largest=largest, method="tiles")
    want = brute(grid.points(dtype)[None].expand(2, -1, -1), points, valid, largest)
    assert got.shape == (2, grid.num_anchors)
    assert torch.equal(got, want)
    if largest:
        assert torch.equal(farthest_index(grid, points, valid), want)


def test_ties_go_to_the_lowest_index() -> None:
    # integer points with duplicates: many exact ties between anchors and points
    gen = torch.Generator().manual_seed(3)
    pts = torch.randint(0, 20, (1, 300, 2), generator=gen).to(torch.float64)
    grid = AnchorGrid.full(24)
    for largest in (False, True):
        want = brute(grid.points(torch.float64)[None], pts, torch.ones(1, 300, dtype=torch.bool), largest)
        assert torch.equal(nearest_index(grid, pts, largest=largest, method="tiles"), want)
        assert torch.equal(nearest_index(grid.points(torch.float64), pts, largest=largest, method="tiles"), want)
    assert torch.equal(farthest_index(grid, pts), want)


def test_farthest_uses_only_hull_points_but_agrees_with_brute(sets: tuple[torch.Tensor, torch.Tensor]) -> None:
    points, valid = sets
    gen = torch.Generator().manual_seed(4)
    queries = torch.rand(2, 500, 2, generator=gen, dtype=torch.float64) * 200.0 - 50.0
    assert torch.equal(farthest_index(queries, points, valid), brute(queries, points, valid, True))


def test_hull_candidates_keep_every_hull_vertex_and_drop_the_interior() -> None:
    gen = torch.Generator().manual_seed(5)
    pts = blob(2000, (0.0, 0.0), (50.0, 20.0), gen)[None]
    keep = hull_candidates(pts)[0]
    hull = ConvexHull(pts[0].numpy()).vertices
    assert keep[torch.as_tensor(hull)].all()
    assert keep.sum() < 200  # the interior is gone
    # points on a line: no polygon, nothing dropped; invalid points never kept
    line = torch.stack([torch.linspace(0, 1, 50), torch.linspace(0, 2, 50)], -1)[None].double()
    valid = torch.ones(1, 50, dtype=torch.bool)
    valid[0, 10] = False
    kept = hull_candidates(line, valid)
    assert kept.sum() == 49 and not kept[0, 10]


def test_nearest_distance_value_and_gradient_match_brute_force_min(sets: tuple[torch.Tensor, torch.Tensor]) -> None:
    points, valid = sets
    gen = torch.Generator().manual_seed(6)
    q0 = torch.rand(2, 300, 2, generator=gen, dtype=torch.float64) * 80.0
    p0 = points.clone()
    q, p = q0.clone().requires_grad_(), p0.clone().requires_grad_()
    d, idx = nearest_distance(q, p, valid)
    w = torch.rand(d.shape, generator=gen, dtype=torch.float64)
    (d * w).sum().backward()
    qr, pr = q0.clone().requires_grad_(), p0.clone().requires_grad_()
    full = torch.linalg.vector_norm(qr[:, :, None] - pr[:, None], dim=-1).masked_fill(~valid[:, None], math.inf)
    ref = full.min(-1).values
    (ref * w).sum().backward()
    torch.testing.assert_close(d, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(q.grad, qr.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(p.grad, pr.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(indexed_distance(q0, p0, idx), ref, rtol=0, atol=1e-12)


def test_empty_sets_and_bad_shapes() -> None:
    pts = torch.zeros(2, 5, 2)
    valid = torch.zeros(2, 5, dtype=torch.bool)
    valid[0, 3] = True
    pts[0, 3] = torch.tensor([4.0, 4.0])
    grid = AnchorGrid.full(8)
    idx = nearest_index(grid, pts, valid, method="tiles")
    assert (idx[0] == 3).all() and (idx[1] == 0).all()
    d, _ = nearest_distance(grid.points()[None].expand(2, -1, -1), pts, valid)
    assert (d[1] == 0).all() and d[0, 0] == pytest.approx(math.sqrt(32.0))
    assert nearest_index(grid, torch.zeros(1, 0, 2)).shape == (1, 64)
    with pytest.raises(ValueError, match="points must be"):
        nearest_index(grid, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="queries must be"):
        nearest_index(torch.zeros(3, 3), pts)
    with pytest.raises(ValueError, match="method"):
        nearest_index(grid, pts, method="octree")
    with pytest.raises(ValueError, match="query_valid"):
        nearest_index(grid, pts, query_valid=torch.ones(2, 64, dtype=torch.bool))


def test_kdtree_path_gives_the_brute_force_distances():
    from fit3dmm.ops.grid import AnchorGrid
    from fit3dmm.ops.nearest import indexed_distance

    gen = torch.Generator().manual_seed(3)
    points = torch.rand(2, 900, 2, generator=gen, dtype=torch.float64) * 60  # > KDTREE_MIN_POINTS
    valid = torch.rand(2, 900, generator=gen) > 0.2
    grid = AnchorGrid.full(64)
    anchors = grid.points(torch.float64, "cpu")
    auto = nearest_index(grid, points, valid)  # large CPU search: the k-d tree
    brute = nearest_index(grid, points, valid, method="brute")
    tree = nearest_index(anchors, points, valid, method="kdtree")
    d_auto = indexed_distance(anchors.expand(2, -1, -1), points, auto)
    d_brute = indexed_distance(anchors.expand(2, -1, -1), points, brute)
    torch.testing.assert_close(d_auto, d_brute, rtol=0, atol=1e-12)
    torch.testing.assert_close(tree, auto)
    assert valid.gather(1, auto).all()
    with pytest.raises(ValueError, match="kdtree"):
        nearest_index(anchors, points, valid, method="kdtree", largest=True)
