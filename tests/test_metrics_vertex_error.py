import math

import numpy as np
import pytest
import torch

from fit3dmm.metrics import procrustes, vertex_error

F64 = torch.float64
# an asymmetric, non-planar set of 5 points
POINTS = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 1.0]],
                      dtype=F64)


def _rot_z(degrees: float) -> torch.Tensor:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=F64)


def test_no_alignment_is_plain_mean_distance():
    gt = POINTS[None]
    pred = gt + torch.tensor([3.0, 4.0, 0.0], dtype=F64)
    torch.testing.assert_close(vertex_error(pred, gt), torch.tensor([5.0], dtype=F64))
    pred = gt.clone()
    pred[0, 0] += torch.tensor([0.0, 0.0, 2.0], dtype=F64)  # one of five vertices off by 2
    torch.testing.assert_close(vertex_error(pred, gt), torch.tensor([0.4], dtype=F64))


def test_known_rotation_and_translation_is_undone():
    rotation, t = _rot_z(90.0), torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    pred = (POINTS @ rotation.T + t)[None].float()  # float32 in: the alignment still runs in float64
    gt = POINTS[None].float()
    before = vertex_error(pred, gt)
    expected_before = (POINTS @ rotation.T + t - POINTS).norm(dim=-1).mean()
    torch.testing.assert_close(before, expected_before[None])
    for align in ("rigid", "similarity"):
        assert vertex_error(pred, gt, align).item() == pytest.approx(0.0, abs=1e-6)
    s, r, tt = procrustes(pred, gt)
    torch.testing.assert_close(r[0], rotation.T, atol=1e-6, rtol=0)
    torch.testing.assert_close(tt[0], -(rotation.T @ t), atol=1e-6, rtol=0)
    assert s.item() == 1.0


def test_square_hand_example_rigid_vs_similarity():
    """gt: square of half-side 1; pred: the square twice as large, turned 30° and shifted.

    Rigid alignment can only centre and turn it: each corner stays √8 − √2 = √2 from its target.
    Similarity alignment also halves it: 0.
    """
    gt = torch.tensor([[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [1.0, -1.0, 0.0]], dtype=F64)
    pred = 2.0 * gt @ _rot_z(30.0).T + torch.tensor([5.0, -1.0, 2.0], dtype=F64)
    torch.testing.assert_close(vertex_error(pred[None], gt[None], "rigid"), torch.tensor([math.sqrt(2.0)],
                                                                                        dtype=F64))
    assert vertex_error(pred[None], gt[None], "similarity").item() == pytest.approx(0.0, abs=1e-12)
    s, _, _ = procrustes(pred[None], gt[None], scale=True)
    assert s.item() == pytest.approx(0.5)


def test_reflections_are_excluded():
    mirrored = POINTS * torch.tensor([-1.0, 1.0, 1.0], dtype=F64)  # a reflection would fit it exactly
    _, rotation, _ = procrustes(mirrored[None], POINTS[None], scale=True)
    assert torch.linalg.det(rotation).item() == pytest.approx(1.0)
    assert vertex_error(mirrored[None], POINTS[None], "similarity").item() > 0.1


def test_batch_numpy_and_collapsed_source():
    gt = np.stack([POINTS.numpy(), POINTS.numpy()])
    pred = np.stack([POINTS.numpy() * 3.0 + 1.0, np.zeros((5, 3))])  # second: all points at one place
    out = vertex_error(pred, gt, "similarity")
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    # a collapsed source can only be sent to the target centroid: error = mean distance to the centroid
    expected = np.linalg.norm(POINTS.numpy() - POINTS.numpy().mean(0), axis=-1).mean()
    np.testing.assert_allclose(out, [0.0, expected], atol=1e-12)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="align"):
        vertex_error(POINTS[None], POINTS[None], "affine")
    with pytest.raises(ValueError, match=r"\(B, V, 3\)"):
        vertex_error(POINTS[None], POINTS[None, :4])
    with pytest.raises(ValueError, match=r"\(B, V, 3\)"):
        procrustes(POINTS, POINTS)
