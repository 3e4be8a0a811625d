"""ICP (both ways), chamfer and density-aware chamfer: brute-force references, gradients, part handling."""

from __future__ import annotations

import math

import pytest
import torch

from fit3dmm.losses.base import Prediction
from fit3dmm.losses.chamfer import ChamferLoss, chamfer_distance
from fit3dmm.losses.dcd import DCDLoss, dcd_distance, dcd_one_way
from fit3dmm.losses.icp import ICPLoss, ReverseICPLoss, icp_distance
from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX


def cloud(b: int, n: int, seed: int, scale: float = 50.0) -> torch.Tensor:
    return torch.rand(b, n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def padded(points: torch.Tensor, counts: list[int]) -> PointSet:
    valid = torch.arange(points.shape[1])[None, :] < torch.tensor(counts)[:, None]
    # padding far away: it would be everybody's nearest/farthest if it were used
    return PointSet(torch.where(valid[..., None], points, torch.full_like(points, 1e4)), valid)


def brute_icp(src: torch.Tensor, dst: torch.Tensor, squared: bool) -> float:
    """Plain Python loops: mean over src of the (squared) distance to the nearest dst point."""
    total = 0.0
    for s in src.tolist():
        best = min(math.dist(s, t) for t in dst.tolist())
        total += best * best if squared else best
    return total / len(src)


def brute_dcd_one_way(src: torch.Tensor, dst: torch.Tensor, alpha: float, n_lambda: float, squared: bool) -> float:
    """The official calc_dcd one-way term written out with loops (counts of shared nearest neighbours)."""
    nearest, dist = [], []
    for s in src.tolist():
        d = [math.dist(s, t) for t in dst.tolist()]
        j = min(range(len(d)), key=d.__getitem__)
        nearest.append(j)
        dist.append(d[j] ** 2 if squared else d[j])
    ratio = len(src) / len(dst)
    terms = [1.0 - ratio * math.exp(-alpha * d) / nearest.count(j) ** n_lambda
             for d, j in zip(dist, nearest, strict=True)]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("squared", [True, False])
def test_icp_and_chamfer_match_brute_force(squared: bool) -> None:
    a = padded(cloud(2, 300, 0), [300, 120])
    b = padded(cloud(2, 250, 1), [90, 250])
    got = icp_distance(a, b, squared)
    for i in range(2):
        want = brute_icp(a.item(i), b.item(i), squared)
        assert got[i].item() == pytest.approx(want, rel=1e-12)
    torch.testing.assert_close(chamfer_distance(a, b, squared), got + icp_distance(b, a, squared), rtol=0, atol=0)


@pytest.mark.parametrize(("alpha", "n_lambda", "squared"), [(1000.0, 1.0, True), (30.0, 0.5, False)])
def test_dcd_matches_the_official_formula(alpha: float, n_lambda: float, squared: bool) -> None:
    a = padded(cloud(2, 200, 2, 1.0), [200, 60])
    b = padded(cloud(2, 150, 3, 1.0), [150, 140])
    one = dcd_one_way(a, b, alpha, n_lambda, squared)
    both = dcd_distance(a, b, alpha, n_lambda, squared)
    for i in range(2):
        ab = brute_dcd_one_way(a.item(i), b.item(i), alpha, n_lambda, squared)
        ba = brute_dcd_one_way(b.item(i), a.item(i), alpha, n_lambda, squared)
        assert one[i].item() == pytest.approx(ab, rel=1e-12)
        assert both[i].item() == pytest.approx(0.5 * (ab + ba), rel=1e-12)


def test_dcd_is_zero_for_identical_sets_and_bounded() -> None:
    a = padded(cloud(1, 100, 4, 1.0), [100])
    assert dcd_distance(a, a).item() == pytest.approx(0.0, abs=1e-12)
    far = PointSet(a.points + 10.0, a.valid)
    assert dcd_distance(a, far).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("which", ["icp", "dcd"])
def test_gradients_match_finite_differences(which: str) -> None:
    src_valid = torch.tensor([[True] * 6 + [False]])
    dst = padded(cloud(1, 5, 6, 1.0), [5])

    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s, t = PointSet(x, src_valid), PointSet(y, dst.valid)
        return icp_distance(s, t) if which == "icp" else dcd_distance(s, t, alpha=20.0)

    x = cloud(1, 7, 5, 1.0).requires_grad_()
    y = dst.points.clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, y), eps=1e-7, atol=1e-7)


def _obs_pred(weights: torch.Tensor | None, size: int = 64):
    c = {"skin": padded(cloud(2, 200, 7, size), [200, 150]), "nose": padded(cloud(2, 40, 8, size), [40, 0])}
    v = {"skin": padded(cloud(2, 180, 9, size), [180, 170]), "nose": padded(cloud(2, 30, 10, size), [30, 30]),
         "left_eye": padded(cloud(2, 10, 11, size), [10, 10])}  # no target for the eye
    obs = Observation(image=torch.zeros(2, 3, size, size), crop_to_photo=torch.eye(3).expand(2, 3, 3).clone(),
                      photo_size=torch.full((2, 2), float(size)), part_weights=weights, points=c)
    z = torch.zeros(2, 4, 3)
    pred = Prediction(vertices=z, vertices_cam=z, points2d=torch.zeros(2, 4, 2), depth=torch.ones(2, 4),
                      visible=torch.ones(2, 4, dtype=torch.bool), triangles=torch.zeros(1, 3, dtype=torch.long),
                      part_labels=torch.zeros(4, dtype=torch.long), landmarks68=torch.zeros(2, 68, 2), parts=v)
    return obs, pred, c, v


def test_losses_sum_weighted_parts_and_skip_empty_ones() -> None:
    weights = torch.ones(2, NUM_PARTS, dtype=torch.float64)
    weights[:, PART_INDEX["skin"]] = 0.25
    obs, pred, c, v = _obs_pred(weights)
    expected = {
        "icp": lambda p, t: icp_distance(t, p),
        "icp_rev": lambda p, t: icp_distance(p, t),
        "chamfer": lambda p, t: chamfer_distance(p, t),
        "dcd": lambda p, t: dcd_distance(PointSet(p.points / 64, p.valid), PointSet(t.points / 64, t.valid)),
    }
    for loss in (ICPLoss(), ReverseICPLoss(), ChamferLoss(), DCDLoss()):
        got = loss(pred, obs)
        term = expected[loss.name]
        want = 0.25 * term(v["skin"], c["skin"])
        want[0] = want[0] + term(v["nose"], c["nose"])[0]  # item 1 has an empty nose target: skipped
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
        assert loss.needs == ("points",) and loss.default_weight > 0
    # no part_weights: every part present on both sides counts once
    obs, pred, c, v = _obs_pred(None)
    want = icp_distance(c["skin"], v["skin"])
    want[0] = want[0] + icp_distance(c["nose"], v["nose"])[0]
    torch.testing.assert_close(ICPLoss()(pred, obs), want, rtol=1e-12, atol=0)


def test_dcd_loss_works_on_crop_normalised_coordinates() -> None:
    obs, pred, _, _ = _obs_pred(None, size=64)
    obs2, pred2, _, _ = _obs_pred(None, size=128)  # the same face at twice the resolution
    torch.testing.assert_close(DCDLoss()(pred, obs), DCDLoss()(pred2, obs2), rtol=1e-12, atol=0)
    assert not torch.allclose(ICPLoss()(pred, obs), ICPLoss()(pred2, obs2))
    with pytest.raises(ValueError, match="alpha"):
        DCDLoss(alpha=0.0)
    with pytest.raises(ValueError, match="batch sizes"):
        icp_distance(padded(cloud(1, 3, 0), [3]), padded(cloud(2, 3, 0), [3, 3]))
