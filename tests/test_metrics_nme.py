import math

import numpy as np
import pytest
import torch

from fit3dmm.metrics import nme, nme_by_yaw


def _gt() -> torch.Tensor:
    """68 points in a 40 x 10 box (x in [0, 40], y in [0, 10]): sqrt(w h) = 20."""
    gt = torch.full((68, 2), 5.0)
    gt[:, 0] = 20.0
    gt[0] = torch.tensor([0.0, 0.0])
    gt[1] = torch.tensor([40.0, 10.0])
    return gt


def test_nme_hand_example():
    gt = _gt()
    pred = gt.clone()
    pred[2] += torch.tensor([3.0, 4.0])  # 5 px
    pred[3] += torch.tensor([0.0, -6.0])  # 6 px
    values = nme(torch.stack([pred, gt]), torch.stack([gt, gt]))
    assert values.dtype == torch.float64
    torch.testing.assert_close(values, torch.tensor([11 / 68 / 20, 0.0], dtype=torch.float64))


def test_nme_normalises_by_ground_truth_box_not_prediction():
    gt = _gt()
    pred = gt * 2.0  # the prediction's box is 4x larger; only the GT box may count
    expected = (gt.norm(dim=-1).mean() / 20.0).double()
    torch.testing.assert_close(nme(pred[None], gt[None]), expected[None])


def test_nme_ignores_depth_column_and_takes_numpy():
    gt = _gt()
    pred = gt.clone()
    pred[2] += torch.tensor([3.0, 4.0])
    gt3 = torch.cat([gt, torch.arange(68.0)[:, None]], dim=-1)
    pred3 = torch.cat([pred, -torch.arange(68.0)[:, None]], dim=-1)
    values = nme(pred3[None].numpy(), gt3[None].numpy())
    assert isinstance(values, np.ndarray)
    np.testing.assert_allclose(values, [5 / 68 / 20])


@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        (torch.zeros(68, 2), torch.zeros(68, 2), "pred must be"),
        (torch.zeros(1, 68, 2), torch.zeros(1, 67, 2), "gt must be"),
        (torch.zeros(1, 68, 4), torch.zeros(1, 68, 2), "pred must be"),
        (torch.zeros(1, 68, 2), torch.zeros(1, 68, 2), "non-zero width and height"),
    ],
)
def test_nme_rejects_bad_inputs(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        nme(pred, gt)


def test_nme_by_yaw_bins_like_3ddfa():
    values = torch.tensor([0.01, 0.02, 0.03, 0.05, 0.10, 0.20])
    # |yaw| = 30 belongs to the first bin and 60 to the second (3DDFA: <= 30, (30, 60], > 60); 120 to the last
    yaw = torch.tensor([10.0, -30.0, 30.5, -60.0, 75.0, -120.0])
    out = nme_by_yaw(values, yaw)
    expected = {
        "nme_0_30": 0.015, "count_0_30": 2,
        "nme_30_60": 0.04, "count_30_60": 2,
        "nme_60_90": 0.15, "count_60_90": 2,
        "nme_all": 0.41 / 6, "count_all": 6,
        "nme_balanced": (0.015 + 0.04 + 0.15) / 3, "count_balanced": 6,
    }
    assert out.keys() == expected.keys()
    for key, value in expected.items():
        assert out[key] == pytest.approx(value), key
        assert type(out[key]) is type(value), key


def test_nme_by_yaw_empty_bins_are_nan():
    out = nme_by_yaw(np.array([0.02, 0.04]), np.array([5.0, -45.0]))
    assert out["nme_0_30"] == pytest.approx(0.02) and out["nme_30_60"] == pytest.approx(0.04)
    assert math.isnan(out["nme_60_90"]) and out["count_60_90"] == 0
    assert math.isnan(out["nme_balanced"])
    assert out["nme_all"] == pytest.approx(0.03) and out["count_all"] == 2


def test_nme_by_yaw_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\(B,\)"):
        nme_by_yaw(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        nme_by_yaw(torch.zeros(2), torch.tensor([1.0, float("nan")]))
