"""The soft part-IoU loss: hand-computed values, gradients and the Loss on a synthetic square."""

from __future__ import annotations

import pytest
import torch

from fit3dmm.losses.base import Prediction
from fit3dmm.losses.softras import SoftRasLoss, soft_iou_loss, triangle_labels_from_vertices
from fit3dmm.render.soft import soft_silhouettes
from fit3dmm.types.observation import Observation
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX


def test_soft_iou_by_hand() -> None:
    s = torch.tensor([[[[0.5, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]])
    m = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]])
    # part 0: intersection 0.5, union (0.5 + 1 − 0.5) + (1 + 0 − 0) = 2 → L = 0.75; part 1: identical → 0
    torch.testing.assert_close(soft_iou_loss(s, m), torch.tensor([0.75]))
    torch.testing.assert_close(soft_iou_loss(s, m, torch.tensor([[2.0, 1.0]])), torch.tensor([1.5]))
    # leaving out the pixel (0, 1): part 0 becomes 1 − 0.5 / 1
    valid = torch.tensor([[[True, False], [True, True]]])
    torch.testing.assert_close(soft_iou_loss(s, m, valid=valid), torch.tensor([0.5]))


def test_zero_weight_parts_are_skipped_and_empty_parts_cost_their_weight() -> None:
    s = torch.zeros((1, 2, 3, 3), requires_grad=True)
    m = torch.zeros((1, 2, 3, 3))
    loss = soft_iou_loss(s, m, torch.tensor([[0.0, 0.5]]))
    torch.testing.assert_close(loss, torch.tensor([0.5]))  # empty union: IoU 0, not NaN
    loss.sum().backward()
    assert torch.isfinite(s.grad).all()


def test_triangle_labels_are_the_majority() -> None:
    vertex_labels = torch.tensor([0, 0, 1, 2, -1, -1])
    tri = torch.tensor([[0, 1, 2], [2, 3, 0], [4, 5, 0], [1, 3, 0], [3, 2, 2]])
    assert triangle_labels_from_vertices(vertex_labels, tri).tolist() == [0, -1, -1, 0, 1]


def test_gradient_of_the_composed_loss_matches_finite_differences() -> None:
    gen = torch.Generator().manual_seed(0)
    points = (torch.rand((1, 5, 2), generator=gen, dtype=torch.float64) * 10).requires_grad_()
    tri = torch.tensor([[0, 1, 2], [2, 3, 4], [0, 3, 4]])
    labels = torch.tensor([0, 1, 1])
    masks = torch.rand((1, 2, 10, 10), generator=gen) > 0.5

    def f(p: torch.Tensor) -> torch.Tensor:
        sil = soft_silhouettes(p, tri, labels, 2, (10, 10), 2.0, eps=1e-15)
        return soft_iou_loss(sil, masks, torch.tensor([[1.0, 0.7]], dtype=torch.float64))

    assert torch.autograd.gradcheck(f, (points,), eps=1e-6, atol=1e-7)


def _square(offset: float, size: int = 32, label: str = "nose"):
    """A 3×3-vertex grid square labelled ``label`` spanning [7.6, 20.6] × [7.7, 20.7] + offset (every pixel
    centre ≥ 0.07 px from every edge), and its target: the 13×13 pixels 8..20 the unshifted square covers.
    """
    ys, xs = torch.meshgrid(torch.linspace(7.7, 20.7, 3), torch.linspace(7.6, 20.6, 3), indexing="ij")
    pts = (torch.stack([xs, ys], -1).reshape(1, 9, 2) + offset).requires_grad_()
    tri = torch.tensor([[0, 3, 1], [1, 3, 4], [1, 4, 2], [2, 4, 5],
                        [3, 6, 4], [4, 6, 7], [4, 7, 5], [5, 7, 8]])
    labels = torch.full((9,), PART_INDEX[label])
    labels[0] = PART_INDEX["skin"]  # one corner of another part: the majority keeps every triangle's label
    pred = Prediction(
        vertices=torch.zeros(1, 9, 3), vertices_cam=torch.zeros(1, 9, 3), points2d=pts,
        depth=torch.ones(1, 9), visible=torch.ones(1, 9, dtype=torch.bool), triangles=tri,
        part_labels=labels, landmarks68=torch.zeros(1, 68, 2),
    )
    masks = torch.zeros(1, NUM_PARTS, size, size, dtype=torch.bool)
    masks[0, PART_INDEX[label], 8:21, 8:21] = True
    weights = torch.zeros(1, NUM_PARTS)
    weights[0, PART_INDEX[label]] = 1.0
    obs = Observation(image=torch.zeros(1, 3, size, size), crop_to_photo=torch.eye(3)[None],
                      photo_size=torch.tensor([[size, size]]), masks=masks, part_weights=weights)
    return pred, obs


# σ = 1e-7 at 32 px is 2.6e-5 px²: S is the hard coverage to < 1e-80 at ≥ 0.07 px from every edge (with a
# larger σ, SoftRas's S dips to ~0.75 along internal edges that pass near pixel centres)
HARD = 1e-7


def test_loss_on_an_aligned_and_a_shifted_square() -> None:
    loss = SoftRasLoss(sigma=HARD)
    pred, obs = _square(0.0)
    assert loss(pred, obs).shape == (1,)
    assert loss(pred, obs).item() < 1e-6
    pred, obs = _square(2.0)  # shifted by (2, 2) px: IoU = 11² / (2·13² − 11²)
    assert loss(pred, obs).item() == pytest.approx(1 - 121 / (2 * 169 - 121), abs=1e-6)


def test_gradient_pulls_a_shifted_square_back() -> None:
    loss = SoftRasLoss(sigma=1e-2)  # 2.56 px² at 32 px: wide enough for a useful gradient
    pred, obs = _square(1.5)
    loss(pred, obs).sum().backward()
    grad = pred.points2d.grad.sum(1)[0]
    assert grad[0] > 0 and grad[1] > 0  # descent moves the square by −grad: back up and left


def test_invisible_triangles_and_zero_weight_parts_are_not_drawn() -> None:
    loss = SoftRasLoss()
    pred, obs = _square(0.0)
    pred.visible = torch.zeros_like(pred.visible)
    assert loss(pred, obs).item() == pytest.approx(1.0)  # nothing drawn: IoU 0 for the nose
    pred, obs = _square(0.0)
    obs.part_weights = torch.zeros_like(obs.part_weights)
    assert loss(pred, obs).item() == 0.0


def test_hair_pixels_are_ignored() -> None:
    loss = SoftRasLoss(sigma=HARD)
    pred, obs = _square(0.0)
    obs.masks[0, PART_INDEX["nose"], 8:21, 8:14] = False  # the target loses the left half ...
    obs.hair = torch.zeros(1, 32, 32, dtype=torch.bool)
    obs.hair[0, :, :14] = True  # ... under hair, which is then out of both S and M
    assert loss(pred, obs).item() < 1e-6
    obs.hair = None
    assert loss(pred, obs).item() == pytest.approx(1 - 7 / 13, abs=1e-6)


def test_forehead_line_removes_pixels_above_it() -> None:
    loss = SoftRasLoss(sigma=HARD)
    pred, obs = _square(0.0)
    obs.masks[0, PART_INDEX["nose"], 8:12] = False  # the target lacks the top 4 rows ...
    obs.forehead_line = torch.tensor([[0.0, 1.0, -11.5]])  # ... which lie above y = 11.5
    assert loss(pred, obs).item() < 1e-6
    obs.forehead_line = None
    assert loss(pred, obs).item() == pytest.approx(1 - 9 / 13, abs=1e-6)
