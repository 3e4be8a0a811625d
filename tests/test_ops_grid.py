"""AnchorGrid: positions, order and the full-crop constructor."""

from __future__ import annotations

import pytest
import torch

from fit3dmm.ops.grid import AnchorGrid


def test_points_are_row_major_pixel_centres() -> None:
    g = AnchorGrid(2, 3, stride=2.0, origin=(1.0, -1.0))
    want = torch.tensor([[1.0, -1.0], [3.0, -1.0], [5.0, -1.0], [1.0, 1.0], [3.0, 1.0], [5.0, 1.0]])
    assert torch.equal(g.points(), want)
    assert g.points(torch.float64).dtype == torch.float64
    assert g.num_anchors == 6


def test_full_grid_covers_the_crop() -> None:
    g = AnchorGrid.full(224)
    pts = g.points()
    assert g.num_anchors == 224 * 224
    assert torch.equal(pts[224 * 5 + 7], torch.tensor([7.0, 5.0]))  # pixel (row 5, col 7) at (x, y) = (7, 5)
    s = AnchorGrid.full(10, stride=3)
    assert (s.height, s.width, s.stride) == (4, 4, 3.0)
    assert s.points()[:, 0].max() == 9.0
    with pytest.raises(ValueError):
        AnchorGrid.full(0)
    with pytest.raises(ValueError):
        AnchorGrid(3, 3, stride=0.0)
