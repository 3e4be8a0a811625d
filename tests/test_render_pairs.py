"""The (pixel, triangle) pair enumeration against a brute-force box test over all pixels."""

import math

import pytest
import torch

from fit3dmm.render.pairs import pixel_triangle_pairs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def brute_pairs(points2d, triangles, h, w, margin, keep):
    """Set of (b, t, y, x) with the pixel centre inside the triangle's box expanded by ``margin``."""
    out = set()
    for b in range(points2d.shape[0]):
        for t, tri in enumerate(triangles.tolist()):
            if not keep[b, t]:
                continue
            c = points2d[b, tri]
            x0, y0 = (c.amin(0) - margin).tolist()
            x1, y1 = (c.amax(0) + margin).tolist()
            for y in range(max(0, math.ceil(y0)), min(h - 1, math.floor(y1)) + 1):
                for x in range(max(0, math.ceil(x0)), min(w - 1, math.floor(x1)) + 1):
                    out.add((b, t, y, x))
    return out


def as_set(chunks, nt, h, w):
    out = []
    for c in chunks:
        b, t = c.face // nt, c.face % nt
        assert torch.equal(c.pixel, b * h * w + c.y * w + c.x)
        out += list(zip(b.tolist(), t.tolist(), c.y.tolist(), c.x.tolist(), strict=True))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("margin", [0.0, 1.7])
def test_pairs_match_brute_force_and_chunking(device, margin):
    g = torch.Generator().manual_seed(0)
    h, w = 13, 17
    points = (torch.rand(2, 30, 2, generator=g) * torch.tensor([w + 8.0, h + 8.0]) - 4.0).to(device)
    triangles = torch.randint(0, 30, (25, 3), generator=g).to(device)
    depth = (torch.rand(2, 30, generator=g) * 4 + 1).to(device)
    depth[0, 3] = -1.0  # every triangle using vertex 3 in item 0 is behind the camera
    mask = torch.rand(2, 25, generator=g).to(device) > 0.2
    keep = mask & (depth[:, triangles] > 0).all(-1)
    expected = brute_pairs(points.cpu(), triangles.cpu(), h, w, margin, keep.cpu())
    assert len(expected) > 100
    for max_pairs in (1 << 20, 7, 1):
        got = as_set(pixel_triangle_pairs(points, triangles, (h, w), margin, depth, triangle_mask=mask,
                                          max_pairs=max_pairs), 25, h, w)
        assert len(got) == len(set(got))  # no pair twice, even when a chunk splits a triangle's box
        assert set(got) == expected


def test_pairs_skip_off_image_non_finite_and_huge():
    points = torch.tensor([[[-50.0, -50.0], [-40.0, -50.0], [-45.0, -40.0],  # entirely off-image
                            [1.0, 1.0], [float("nan"), 2.0], [2.0, 3.0],  # non-finite corner
                            [-1e30, -1e30], [1e30, 0.5], [0.5, 1e30]]])  # huge: covers everything
    triangles = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    got = as_set(pixel_triangle_pairs(points, triangles, (4, 5)), 3, 4, 5)
    assert sorted(got) == sorted((0, 2, y, x) for y in range(4) for x in range(5))


def test_pairs_validation():
    with pytest.raises(ValueError, match="triangles must be"):
        next(pixel_triangle_pairs(torch.zeros(1, 3, 2), torch.zeros(1, 3, dtype=torch.int32), (4, 4)))
    with pytest.raises(ValueError, match="triangle indices"):
        next(pixel_triangle_pairs(torch.zeros(1, 3, 2), torch.tensor([[0, 1, 3]]), (4, 4)))
    with pytest.raises(ValueError, match="margin"):
        next(pixel_triangle_pairs(torch.zeros(1, 3, 2), torch.tensor([[0, 1, 2]]), (4, 4), -1.0))


def test_pairs_leave_grad_mode_alone():
    points = torch.rand(1, 3, 2, requires_grad=True) * 4
    for _ in pixel_triangle_pairs(points, torch.tensor([[0, 1, 2]]), (4, 4), 1.0):
        assert torch.is_grad_enabled()
