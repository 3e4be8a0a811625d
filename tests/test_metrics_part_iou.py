import math

import numpy as np
import pytest
import torch

from fit3dmm.metrics import mean_part_iou, merged_part_iou, part_iou
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX

NAN = float("nan")
F64 = torch.float64


def _squares() -> tuple[torch.Tensor, torch.Tensor]:
    """10x10 image, 4 parts.

    part 0: predicted rows 0-3 x cols 0-3 (16 px), target rows 2-5 x cols 2-5 (16 px): 4 shared → 4/28.
    part 1: predicted rows 6-7 x cols 6-9 (8 px), target rows 6-9 x cols 6-9 (16 px): 8 shared → 8/16.
    part 2: predicted at row 9 x cols 0-1, target empty → NaN.
    part 3: not predicted, target rows 0-1 x cols 8-9 (4 px) → 0.
    """
    labels = torch.full((1, 10, 10), -1, dtype=torch.long)
    labels[0, 0:4, 0:4] = 0
    labels[0, 6:8, 6:10] = 1
    labels[0, 9, 0:2] = 2
    masks = torch.zeros((1, 4, 10, 10), dtype=torch.bool)
    masks[0, 0, 2:6, 2:6] = True
    masks[0, 1, 6:10, 6:10] = True
    masks[0, 3, 0:2, 8:10] = True
    return labels, masks


def test_two_squares_known_overlap():
    labels, masks = _squares()
    iou = part_iou(labels, masks)
    assert iou.shape == (1, 4) and iou.dtype == torch.float64
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 0.5, NAN, 0.0]], dtype=F64), equal_nan=True)


def test_label_of_another_part_does_not_count():
    labels, masks = _squares()
    labels[0, 2:6, 2:6] = 1  # the whole part-0 target predicted as part 1
    iou = part_iou(labels, masks)
    # part 0: pred rows 0-1 x cols 0-3 and rows 2-3 x cols 0-1 = 12 px, none inside its target → 0
    # part 1: pred 16 + 8 = 24 px, target 16 px, shared 8 → 8 / 32
    torch.testing.assert_close(iou[0, :2], torch.tensor([0.0, 0.25], dtype=F64))


def test_zero_weight_is_absent():
    labels, masks = _squares()
    weights = torch.tensor([[1.0, 0.0, 1.0, 0.5]])
    iou = part_iou(labels, masks, weights)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, NAN, NAN, 0.0]], dtype=F64), equal_nan=True)


def test_batch_items_are_independent():
    labels, masks = _squares()
    labels2 = masks.to(torch.long).argmax(1).masked_fill(~masks.any(1), -1)  # a perfect prediction
    iou = part_iou(torch.cat([labels, labels2]), torch.cat([masks, masks]))
    torch.testing.assert_close(
        iou, torch.tensor([[1 / 7, 0.5, NAN, 0.0], [1.0, 1.0, NAN, 1.0]], dtype=F64), equal_nan=True
    )


def test_numpy_in_numpy_out():
    labels, masks = _squares()
    iou = part_iou(labels.numpy(), masks.numpy(), np.ones((1, 4), dtype=np.float32))
    assert isinstance(iou, np.ndarray)
    np.testing.assert_allclose(iou, [[1 / 7, 0.5, NAN, 0.0]])


def test_mean_part_iou_ignores_nan():
    iou = torch.tensor([[1 / 7, 0.5, NAN, 0.0], [NAN, NAN, NAN, NAN]], dtype=F64)
    per_image = mean_part_iou(iou)
    assert per_image[0].item() == pytest.approx((1 / 7 + 0.5) / 3)
    assert math.isnan(per_image[1].item())
    torch.testing.assert_close(mean_part_iou(iou, dim=0),
                               torch.tensor([1 / 7, 0.5, NAN, 0.0], dtype=F64), equal_nan=True)
    assert mean_part_iou(iou, dim=None).item() == pytest.approx((1 / 7 + 0.5) / 3)
    assert isinstance(mean_part_iou(iou.numpy()), np.ndarray)


def _face() -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 image with all 8 parts' channels; the prediction swaps the eyes and the lips.

    left eye target rows 0-1 x cols 0-1, right eye rows 0-1 x cols 4-5, up lip row 6 x cols 2-5,
    down lip row 7 x cols 2-5, nose rows 3-4 x cols 3-4 (predicted 1 column too wide).
    """
    masks = torch.zeros((1, NUM_PARTS, 8, 8), dtype=torch.bool)
    masks[0, PART_INDEX["left_eye"], 0:2, 0:2] = True
    masks[0, PART_INDEX["right_eye"], 0:2, 4:6] = True
    masks[0, PART_INDEX["up_lip"], 6, 2:6] = True
    masks[0, PART_INDEX["down_lip"], 7, 2:6] = True
    masks[0, PART_INDEX["nose"], 3:5, 3:5] = True
    labels = torch.full((1, 8, 8), -1, dtype=torch.long)
    labels[0, 0:2, 0:2] = PART_INDEX["right_eye"]
    labels[0, 0:2, 4:6] = PART_INDEX["left_eye"]
    labels[0, 6, 2:6] = PART_INDEX["down_lip"]
    labels[0, 7, 2:6] = PART_INDEX["up_lip"]
    labels[0, 3:5, 3:6] = PART_INDEX["nose"]
    return labels, masks


GROUPS = {"eyes": ["left_eye", "right_eye"], "mouth": ["up_lip", "down_lip"], "nose": ["nose"]}


def test_merged_groups_compare_unions():
    labels, masks = _face()
    per_part = part_iou(labels, masks)
    assert per_part[0, PART_INDEX["left_eye"]] == 0 and per_part[0, PART_INDEX["up_lip"]] == 0
    merged = merged_part_iou(labels, masks, GROUPS)
    # eyes and mouth match as unions; nose: 4 shared of 6 predicted
    torch.testing.assert_close(merged, torch.tensor([[1.0, 1.0, 4 / 6]], dtype=F64))


def test_merged_single_class_target_in_one_channel():
    """FASSEG has one "eyes" class: put it all in the left-eye channel."""
    labels, masks = _face()
    masks[0, PART_INDEX["left_eye"]] |= masks[0, PART_INDEX["right_eye"]]
    masks[0, PART_INDEX["right_eye"]] = False
    labels[0, 0, 0] = -1  # one eye pixel missed: 7 of 8
    merged = merged_part_iou(labels, masks, {"eyes": ["left_eye", "right_eye"]})
    torch.testing.assert_close(merged, torch.tensor([[7 / 8]], dtype=F64))


def test_merged_zero_weight_member_adds_no_target():
    labels, masks = _face()
    weights = torch.ones((1, NUM_PARTS))
    weights[0, PART_INDEX["right_eye"]] = 0.0
    # target = left eye only (4 px); prediction still covers both eyes (8 px) → 4/8
    merged = merged_part_iou(labels, masks, {"eyes": ["left_eye", "right_eye"], "brows": ["left_eyebrow"]},
                             weights)
    torch.testing.assert_close(merged, torch.tensor([[0.5, NAN]], dtype=F64), equal_nan=True)


@pytest.mark.parametrize(
    ("labels", "masks", "weights", "message"),
    [
        (torch.zeros((1, 4, 4)), torch.zeros((1, 2, 4, 4), dtype=torch.bool), None, "integer"),
        (torch.zeros((1, 4, 4), dtype=torch.long), torch.zeros((1, 2, 4, 4)), None, "bool"),
        (torch.zeros((1, 4, 5), dtype=torch.long), torch.zeros((1, 2, 4, 4), dtype=torch.bool), None,
         "match"),
        (torch.full((1, 4, 4), 2), torch.zeros((1, 2, 4, 4), dtype=torch.bool), None, r"\[-1, 1\]"),
        (torch.full((1, 4, 4), -2), torch.zeros((1, 2, 4, 4), dtype=torch.bool), None, r"\[-1, 1\]"),
        (torch.zeros((1, 4, 4), dtype=torch.long), torch.zeros((1, 2, 4, 4), dtype=torch.bool),
         torch.ones((1, 3)), "part_weights"),
        (torch.zeros((1, 4, 4), dtype=torch.long), torch.zeros((1, 2, 4, 4), dtype=torch.bool),
         torch.tensor([[1.0, -1.0]]), ">= 0"),
    ],
)
def test_part_iou_rejects_bad_inputs(labels, masks, weights, message):
    with pytest.raises(ValueError, match=message):
        part_iou(labels, masks, weights)


def test_merged_rejects_bad_groups():
    labels, masks = _face()
    with pytest.raises(ValueError, match="lips"):
        merged_part_iou(labels, masks, {"mouth": ["lips"]})
    with pytest.raises(ValueError, match="group 'eyes'"):
        merged_part_iou(labels, masks, {"eyes": []})
    with pytest.raises(ValueError, match="at least one group"):
        merged_part_iou(labels, masks, {})
    with pytest.raises(ValueError, match="one channel per part"):
        merged_part_iou(labels.clamp_max(3), masks[:, :4], {"eyes": ["left_eye"]})
    with pytest.raises(ValueError, match="numpy array or a torch tensor"):
        merged_part_iou(labels.tolist(), masks, GROUPS)
