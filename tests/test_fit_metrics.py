"""Part IoU, landmark NME and pose error of a FitResult, on hand-made meshes with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fit3dmm.metrics.fit_metrics import (
    FASSEG_GROUPS,
    fit_landmark_nme,
    fit_part_iou,
    fit_pose_error,
    pad_masks,
    render_fit_labels,
)
from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.types.observation import Observation
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX
from fit3dmm.types.result import FitResult

NOSE, SKIN = PART_INDEX["nose"], PART_INDEX["skin"]
LEFT_EYE, RIGHT_EYE = PART_INDEX["left_eye"], PART_INDEX["right_eye"]


Square = tuple[float, float, float, float, float]


def _squares(corners: list[Square]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Axis-aligned squares (x0, y0, x1, y1, depth) in photo pixels → (V, 2) pixels, (V,) depth, (T, 3)."""
    pix, depth, tri = [], [], []
    for k, (x0, y0, x1, y1, z) in enumerate(corners):
        pix += [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        depth += [z] * 4
        tri += [(4 * k, 4 * k + 1, 4 * k + 2), (4 * k, 4 * k + 2, 4 * k + 3)]
    return (torch.tensor(pix, dtype=torch.float64), torch.tensor(depth, dtype=torch.float64),
            torch.tensor(tri, dtype=torch.long))


def _result(pix: torch.Tensor, depth: torch.Tensor, triangles: torch.Tensor, photo_wh: list[tuple[int, int]],
            landmarks: torch.Tensor | None = None, pose: torch.Tensor | None = None) -> FitResult:
    """A FitResult holding (B, V, 2) photo pixels and (B, V) depths; the other fields are placeholders."""
    bsz = pix.shape[0]
    cam = torch.cat([torch.zeros_like(pix), -depth[..., None]], dim=-1)
    obs = Observation(image=torch.zeros(bsz, 3, 8, 8),
                      crop_to_photo=torch.eye(3, dtype=torch.float64).repeat(bsz, 1, 1),
                      photo_size=torch.tensor(photo_wh, dtype=torch.float32))
    lmk = landmarks if landmarks is not None else torch.zeros(bsz, 68, 2)
    return FitResult(
        coefficients={}, vertices=cam, triangles=triangles, face_triangles=triangles, vertices_cam=cam,
        vertices_photo=pix, rotation=torch.eye(3).repeat(bsz, 1, 1),
        pose_deg=pose if pose is not None else torch.zeros(bsz, 3),
        camera=PerspectiveCamera.for_crop(8, bsz), observation=obs, landmarks68_photo=lmk,
        landmarks68_cam=torch.zeros(bsz, 68, 3),
    )


def test_square_rendered_with_known_label_gives_known_iou():
    # nose square over pixel centres x 2..5, y 1..4 (edges included: 16 px) in a 10 x 8 photo
    pix, depth, tri = _squares([(2, 1, 5, 4, 50.0)])
    labels = torch.full((4,), NOSE, dtype=torch.long)
    result = _result(pix[None], depth[None], tri, [(10, 8)])
    rendered = render_fit_labels(result, labels)
    expected = torch.full((1, 8, 10), -1, dtype=torch.long)
    expected[0, 1:5, 2:6] = NOSE
    assert torch.equal(rendered, expected)
    # target nose x 4..7, y 1..4: 8 shared pixels, union 24 → 1/3; skin target empty → NaN
    masks = torch.zeros(1, NUM_PARTS, 8, 10, dtype=torch.bool)
    masks[0, NOSE, 1:5, 4:8] = True
    iou = fit_part_iou(result, labels, masks)
    assert iou.shape == (1, NUM_PARTS)
    assert iou[0, NOSE].item() == pytest.approx(1 / 3)
    assert math.isnan(iou[0, SKIN].item())


def test_only_the_visible_part_counts():
    # a skin square in front (depth 40) hides the left half of a nose square behind it (depth 60)
    pix, depth, tri = _squares([(0, 0, 7, 3, 60.0), (0, 0, 3, 3, 40.0)])
    labels = torch.tensor([NOSE] * 4 + [SKIN] * 4)
    result = _result(pix[None], depth[None], tri, [(8, 4)])
    rendered = render_fit_labels(result, labels)
    assert (rendered[0, :, :4] == SKIN).all() and (rendered[0, :, 4:] == NOSE).all()
    masks = torch.zeros(1, NUM_PARTS, 4, 8, dtype=torch.bool)
    masks[0, NOSE] = True  # the whole nose square: 16 visible of 32
    masks[0, SKIN, :, :2] = True  # 8 of the 16 skin pixels
    iou = fit_part_iou(result, labels, masks, groups={"nose": ["nose"], "skin": ["skin"]})
    torch.testing.assert_close(iou, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    # the same with the depths swapped: now the nose hides the skin completely
    swapped = _result(pix[None], (100.0 - depth)[None], tri, [(8, 4)])
    iou = fit_part_iou(swapped, labels, masks, groups={"nose": ["nose"], "skin": ["skin"]})
    torch.testing.assert_close(iou, torch.tensor([[1.0, 0.0]], dtype=torch.float64))


def test_merged_eyes_against_one_eye_class():
    # two 2 x 2 eye squares (subject's right on the image's left); FASSEG-like target: one eye class in both
    # channels, covering the left square and one column of the right one → eyes IoU 6/8
    pix, depth, tri = _squares([(1, 1, 2, 2, 50.0), (5, 1, 6, 2, 50.0)])
    labels = torch.tensor([RIGHT_EYE] * 4 + [LEFT_EYE] * 4)
    result = _result(pix[None], depth[None], tri, [(8, 4)])
    eyes = torch.zeros(4, 8, dtype=torch.bool)
    eyes[1:3, 1:3] = True
    eyes[1:3, 5] = True
    masks = torch.zeros(1, NUM_PARTS, 4, 8, dtype=torch.bool)
    masks[0, LEFT_EYE] = eyes
    masks[0, RIGHT_EYE] = eyes
    iou = fit_part_iou(result, labels, masks, groups=FASSEG_GROUPS)
    assert iou[0, 0].item() == pytest.approx(6 / 8)
    assert torch.isnan(iou[0, 1:]).all()  # no nose, mouth or skin in the target


def test_batch_of_different_photo_sizes_matches_separate_renders():
    # the same square (x 2..9, y 0..3) in a 12 x 4 photo and in a 6 x 4 photo: in the small photo only x 2..5
    pix, depth, tri = _squares([(2, 0, 9, 3, 50.0)])
    labels = torch.full((4,), NOSE, dtype=torch.long)
    result = _result(pix[None].repeat(2, 1, 1), depth[None].repeat(2, 1), tri, [(12, 4), (6, 4)])
    rendered = render_fit_labels(result, labels)
    assert rendered.shape == (2, 4, 12)
    assert (rendered[0] == NOSE).sum() == 32 and (rendered[1] == NOSE).sum() == 16
    assert (rendered[1, :, 6:] == -1).all()
    small = np.zeros((NUM_PARTS, 4, 6), bool)
    small[NOSE, :, :4] = True  # 16 px target vs 16 px rendered, 8 shared: x 2..3 → 8 / 24
    large = np.zeros((NUM_PARTS, 4, 12), bool)
    large[NOSE, :, 2:10] = True
    masks = pad_masks([large, small], (4, 12))
    iou = fit_part_iou(result, labels, masks, groups={"nose": ["nose"]})
    torch.testing.assert_close(iou, torch.tensor([[1.0], [1 / 3]], dtype=torch.float64))


def test_part_labels_are_checked():
    pix, depth, tri = _squares([(0, 0, 3, 3, 50.0)])
    result = _result(pix[None], depth[None], tri, [(4, 4)])
    with pytest.raises(ValueError, match="part_labels"):
        render_fit_labels(result, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="no part labels"):
        render_fit_labels(result, torch.full((4,), -1, dtype=torch.long))
    with pytest.raises(ValueError, match="target_masks"):
        fit_part_iou(result, torch.zeros(4, dtype=torch.long), torch.zeros(1, 3, 4, 4, dtype=torch.bool))


def test_landmark_nme_and_pose_error_of_a_fit():
    gt = torch.zeros(1, 68, 2, dtype=torch.float64)
    gt[0, :, 0] = torch.linspace(0, 40, 68)
    gt[0, :, 1] = torch.linspace(0, 90, 68)  # box 40 x 90 → sqrt = 60
    fitted = gt + torch.tensor([3.0, 4.0], dtype=torch.float64)  # every point 5 px off
    pix, depth, tri = _squares([(0, 0, 3, 3, 50.0)])
    result = _result(pix[None], depth[None], tri, [(4, 4)], landmarks=fitted,
                     pose=torch.tensor([[10.0, -5.0, 179.0]]))
    assert fit_landmark_nme(result, gt).item() == pytest.approx(5 / 60)
    error = fit_pose_error(result, np.array([[12.0, -5.0, -179.0]]))
    assert error == pytest.approx({"yaw": 2.0, "pitch": 0.0, "roll": 2.0, "mean": 4.0 / 3.0})
