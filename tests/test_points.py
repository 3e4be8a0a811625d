"""mask_point_sets and points_below_line on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fit3dmm.observe.points import mask_point_sets, points_below_line
from fit3dmm.ops.fps import farthest_point_sampling
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES


def _masks(b: int = 2, size: int = 32) -> torch.Tensor:
    masks = torch.zeros(b, NUM_PARTS, size, size, dtype=torch.bool)
    masks[0, PART_INDEX["nose"], 10:13, 4:6] = True  # rows 10-12, cols 4-5
    masks[1, PART_INDEX["nose"], 20, 7] = True
    masks[0, PART_INDEX["skin"], 2:30, 2:30] = True  # 784 px
    masks[1, PART_INDEX["skin"], 5:9, 5:9] = True  # 16 px
    return masks


def test_pixels_in_row_major_order_as_x_y() -> None:
    sets = mask_point_sets(_masks(), counts={})
    assert set(sets) == set(PART_NAMES)
    nose = sets["nose"]
    assert nose.points.shape == (2, 6, 2) and nose.points.dtype == torch.float32
    expected = [[c, r] for r in range(10, 13) for c in range(4, 6)]
    assert nose.item(0).tolist() == expected
    assert nose.item(1).tolist() == [[7.0, 20.0]] and nose.valid[1].tolist() == [True] + [False] * 5
    assert (nose.points[1, 1:] == 0).all()
    assert sets["left_eye"].points.shape == (2, 0, 2)
    assert sets["skin"].counts().tolist() == [784, 16]


def test_skin_is_thinned_by_fps_and_other_counts() -> None:
    masks = _masks()
    sets = mask_point_sets(masks, counts={"skin": 100, "nose": 4})
    skin = sets["skin"]
    assert skin.counts().tolist() == [100, 16]
    full = mask_point_sets(masks, counts={})["skin"]
    index = farthest_point_sampling(full.points, full.valid, 100)
    assert torch.equal(skin.item(0), full.points[0, index[0]])
    assert sorted(map(tuple, skin.item(1).tolist())) == sorted(map(tuple, full.item(1).tolist()))
    assert sets["nose"].counts().tolist() == [4, 1]
    # FPS spreads the points: the 4 corners of the skin square are among the first picks
    corners = {(2.0, 2.0), (29.0, 2.0), (2.0, 29.0), (29.0, 29.0)}
    assert corners <= set(map(tuple, skin.item(0)[:5].tolist()))
    default = mask_point_sets(masks)["skin"]  # the paper's 3000 skin points: more than there are pixels
    assert default.counts().tolist() == [784, 16]


def test_forehead_line_removes_points_above() -> None:
    masks = _masks()
    line = torch.tensor([[0.0, 1.0, -11.0], [0.6, 0.8, -100.0]])  # y = 11; a tilted line under all of item 1
    sets = mask_point_sets(masks, counts={}, forehead_line=line)
    assert sets["nose"].item(0).tolist() == [[4.0, 11.0], [5.0, 11.0], [4.0, 12.0], [5.0, 12.0]]
    assert sets["skin"].counts().tolist() == [19 * 28, 0]
    pts = sets["skin"].item(0)
    assert (pts[:, 1] >= 11).all()
    with pytest.raises(ValueError, match="forehead_line"):
        mask_point_sets(masks, forehead_line=line[:1])


def test_points_below_line() -> None:
    points = torch.tensor([[[0.0, 5.0], [3.0, 4.0], [10.0, 0.0], [0.0, 5.0001]]])
    line = torch.tensor([[0.0, 1.0, -5.0]])
    assert points_below_line(points, line).tolist() == [[True, False, False, True]]
    assert points_below_line(points, None).all()
    tilted = torch.tensor([[0.6, 0.8, -4.0]])  # 0.6 x + 0.8 y = 4
    assert points_below_line(torch.tensor([[[0.0, 5.0], [5.0, 1.25], [1.0, 1.0]]]), tilted).tolist() == [
        [True, True, False]
    ]
    assert points_below_line(points, line.double()).dtype == torch.bool


def test_errors() -> None:
    masks = _masks()
    with pytest.raises(ValueError, match="masks must be"):
        mask_point_sets(masks.float())
    with pytest.raises(ValueError, match="unknown parts"):
        mask_point_sets(masks, counts={"ears": 3})
    with pytest.raises(ValueError, match=">= 0"):
        mask_point_sets(masks, counts={"skin": -1})
    with pytest.raises(ValueError, match="points must be"):
        points_below_line(torch.zeros(3, 2), None)


def test_matches_a_loop_over_pixels() -> None:
    rng = np.random.default_rng(3)
    masks = torch.from_numpy(rng.random((3, NUM_PARTS, 12, 14)) > 0.7)
    line = torch.tensor([[0.1, 0.99, -4.0], [-0.3, 0.95, -2.0], [0.0, 1.0, 0.0]])
    line[:, :2] /= line[:, :2].norm(dim=1, keepdim=True)
    sets = mask_point_sets(masks, counts={}, forehead_line=line)
    for b in range(3):
        for p, name in enumerate(PART_NAMES):
            a, bb, c = line[b].tolist()
            expected = [[x, y] for y in range(12) for x in range(14)
                        if masks[b, p, y, x] and a * x + bb * y + c >= -1e-3]
            assert sets[name].item(b).tolist() == expected
