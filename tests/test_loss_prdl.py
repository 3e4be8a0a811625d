"""PRDL: descriptor values, fast vs dense reference, gradients (finite differences and the paper's Eq. 11)."""

from __future__ import annotations

import math

import pytest
import torch

from fit3dmm.losses.base import Prediction
from fit3dmm.losses.prdl import PRDLLoss, prdl_descriptor, prdl_loss
from fit3dmm.ops.grid import AnchorGrid
from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES


def blob(n: int, centre: tuple[float, float], axes: tuple[float, float], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    r = torch.rand(n, generator=gen, dtype=torch.float64).sqrt()
    t = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    return torch.stack([centre[0] + axes[0] * r * torch.cos(t), centre[1] + axes[1] * r * torch.sin(t)], -1)


def observation(size: int, points: dict[str, PointSet], weights: torch.Tensor | None = None) -> Observation:
    b = next(iter(points.values())).points.shape[0]
    return Observation(
        image=torch.zeros(b, 3, size, size), crop_to_photo=torch.eye(3).expand(b, 3, 3).clone(),
        photo_size=torch.full((b, 2), float(size)), part_weights=weights, points=points,
    )


def prediction(parts: dict[str, PointSet]) -> Prediction:
    b = next(iter(parts.values())).points.shape[0]
    z = torch.zeros(b, 4, 3)
    return Prediction(vertices=z, vertices_cam=z, points2d=torch.zeros(b, 4, 2), depth=torch.ones(b, 4),
                      visible=torch.ones(b, 4, dtype=torch.bool), triangles=torch.zeros(1, 3, dtype=torch.long),
                      part_labels=torch.zeros(4, dtype=torch.long), landmarks68=torch.zeros(b, 68, 2), parts=parts)


def face_sets(size: int, shift: tuple[float, float], seed: int, dtype=torch.float64) -> dict[str, PointSet]:
    """Face-like part sets on a ``size`` crop: skin blob, two eyes, nose, lips (eyebrows left out)."""
    k = size / 64.0
    spec = {
        "skin": (250, (32, 34), (20, 24)),
        "left_eye": (20, (40, 28), (4, 2)),
        "right_eye": (18, (24, 28), (4, 2)),
        "nose": (30, (32, 36), (3, 6)),
        "up_lip": (25, (32, 46), (7, 2)),
        "down_lip": (25, (32, 49), (6, 2)),
    }
    out = {}
    for i, (name, (n, c, ax)) in enumerate(spec.items()):
        pts = blob(n, (c[0] * k + shift[0], c[1] * k + shift[1]), (ax[0] * k, ax[1] * k), seed + i)
        out[name] = PointSet(pts[None].to(dtype), torch.ones(1, n, dtype=torch.bool))
    return out


def test_descriptor_hand_computed() -> None:
    pts = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [9.0, 9.0]]])
    valid = torch.tensor([[True, True, False]])
    anchors = torch.tensor([[0.0, 4.0], [3.0, 0.0]])
    for impl in ("fast", "dense"):
        d = prdl_descriptor(pts, valid, anchors, impl=impl)
        torch.testing.assert_close(d, torch.tensor([[[3.0, 4.0, 3.5], [3.0, 4.0, 3.5]]]))
        assert prdl_descriptor(pts, valid, anchors, ("ave", "min"), impl=impl).shape == (1, 2, 2)
    empty = prdl_descriptor(pts, torch.zeros(1, 3, dtype=torch.bool), AnchorGrid.full(4))
    assert empty.shape == (1, 16, 3) and (empty == 0).all()


@pytest.mark.parametrize(
    ("anchors", "stats"),
    [
        (AnchorGrid.full(64), ("min", "max", "ave")),
        (AnchorGrid.full(64, stride=3), ("ave", "max")),
        (torch.rand(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 70 - 3, ("min", "ave")),
    ],
)
def test_fast_descriptor_matches_dense(anchors, stats) -> None:
    sets = face_sets(64, (0.0, 0.0), 0)
    pts = torch.cat([sets["skin"].points, sets["nose"].points.expand(1, -1, -1).repeat(1, 9, 1)[:, :250]])
    valid = torch.ones(2, 250, dtype=torch.bool)
    valid[1, 30:] = False
    fast = prdl_descriptor(pts, valid, anchors, stats, "fast")
    dense = prdl_descriptor(pts, valid, anchors, stats, "dense")
    assert fast.shape == dense.shape == (2, len(anchors.points() if isinstance(anchors, AnchorGrid) else anchors),
                                         len(stats))
    for j, s in enumerate(stats):
        # nearest/farthest are exact; the FFT mean is exact up to its far-field interpolation (~1e-7)
        rtol = 1e-6 if s == "ave" else 1e-12
        torch.testing.assert_close(fast[..., j], dense[..., j], rtol=rtol, atol=0.0)


def _loss_and_grad(parts: dict[str, PointSet], target: torch.Tensor, target_valid, weights, grid, impl):
    leaves = {k: v.points.clone().requires_grad_() for k, v in parts.items()}
    pred = {k: PointSet(leaves[k], parts[k].valid) for k in parts}
    loss = prdl_loss(pred, target, target_valid, weights, grid, impl=impl)
    loss.sum().backward()
    return loss.detach(), {k: x.grad for k, x in leaves.items()}


def _targets(sets: dict[str, PointSet], grid, stats=("min", "max", "ave")) -> tuple[torch.Tensor, torch.Tensor]:
    b = next(iter(sets.values())).points.shape[0]
    target = torch.zeros(b, NUM_PARTS, grid.num_anchors, len(stats), dtype=torch.float64)
    valid = torch.zeros(b, NUM_PARTS, dtype=torch.bool)
    for name, s in sets.items():
        target[:, PART_INDEX[name]] = prdl_descriptor(s.points, s.valid, grid, stats, "dense")
        valid[:, PART_INDEX[name]] = s.valid.any(-1)
    return target, valid


def test_fast_loss_value_and_gradient_match_dense_reference() -> None:
    grid = AnchorGrid.full(64)
    target, target_valid = _targets(face_sets(64, (0.0, 0.0), 10), grid)
    pred = face_sets(64, (1.3, -0.8), 20)
    weights = torch.rand(1, NUM_PARTS, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
    v_fast, g_fast = _loss_and_grad(pred, target, target_valid, weights, grid, "fast")
    v_dense, g_dense = _loss_and_grad(pred, target, target_valid, weights, grid, "dense")
    assert v_dense.item() > 1.0
    torch.testing.assert_close(v_fast, v_dense, rtol=1e-7, atol=0.0)
    num = math.sqrt(sum(float((g_fast[k] - g_dense[k]).pow(2).sum()) for k in pred))
    den = math.sqrt(sum(float(g_dense[k].pow(2).sum()) for k in pred))
    assert num <= 1e-5 * den
    # float32 fast against the float64 reference
    pred32 = {k: PointSet(v.points.float(), v.valid) for k, v in pred.items()}
    v32, g32 = _loss_and_grad(pred32, target.float(), target_valid, weights.float(), grid, "fast")
    assert abs(v32.double().item() - v_dense.item()) <= 1e-4 * v_dense.item()
    num32 = math.sqrt(sum(float((g32[k].double() - g_dense[k]).pow(2).sum()) for k in pred))
    assert num32 <= 1e-4 * den


@pytest.mark.parametrize("impl", ["fast", "dense"])
def test_gradient_matches_finite_differences(impl: str) -> None:
    grid = AnchorGrid.full(12)
    target = blob(9, (6.0, 5.0), (3.0, 4.0), 3)
    target_desc = torch.zeros(1, NUM_PARTS, grid.num_anchors, 3, dtype=torch.float64)
    target_desc[:, PART_INDEX["nose"]] = prdl_descriptor(target[None], None, grid, impl="dense")
    target_valid = torch.zeros(1, NUM_PARTS, dtype=torch.bool)
    target_valid[0, PART_INDEX["nose"]] = True
    valid = torch.ones(1, 7, dtype=torch.bool)

    def f(x: torch.Tensor) -> torch.Tensor:
        return prdl_loss({"nose": PointSet(x, valid)}, target_desc, target_valid, None, grid, impl=impl)

    x = (blob(7, (6.5, 5.5), (3.0, 3.0), 4)[None] + 0.1234).requires_grad_()
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_fmin_gradient_is_the_papers_eq_11() -> None:
    # −∂E/∂v_n = 2 (v_n − a_i)(d_im/d_in − 1) for E = (d_in − d_im)², summed over the anchors whose
    # nearest predicted point is v_n, divided by the anchor count (L's normalisation)
    grid = AnchorGrid.full(20)
    anchors = grid.points(torch.float64)
    target = blob(30, (10.0, 9.0), (5.0, 6.0), 5)
    v = blob(25, (10.6, 9.4), (5.0, 5.0), 6)
    d_im = torch.linalg.vector_norm(anchors[:, None] - target[None], dim=-1).min(-1).values
    desc = torch.zeros(1, NUM_PARTS, grid.num_anchors, 1, dtype=torch.float64)
    desc[0, PART_INDEX["skin"], :, 0] = d_im
    tv = torch.zeros(1, NUM_PARTS, dtype=torch.bool)
    tv[0, PART_INDEX["skin"]] = True
    x = v[None].clone().requires_grad_()
    pred = {"skin": PointSet(x, torch.ones(1, 25, dtype=torch.bool))}
    prdl_loss(pred, desc, tv, None, grid, ("min",)).sum().backward()

    want = torch.zeros_like(v)
    for i in range(grid.num_anchors):
        d = torch.linalg.vector_norm(anchors[i] - v, dim=-1)
        n = int(d.argmin())
        d_in = d[n]
        neg_grad = 2.0 * (v[n] - anchors[i]) * (d_im[i] / d_in - 1.0)
        want[n] -= neg_grad / grid.num_anchors
    torch.testing.assert_close(x.grad[0], want, rtol=1e-10, atol=1e-12)


def test_parts_weighted_and_empty_parts_skipped() -> None:
    grid = AnchorGrid.full(32)
    tgt = face_sets(32, (0.0, 0.0), 30)
    pred = face_sets(32, (0.7, 0.2), 40)
    target, target_valid = _targets(tgt, grid)
    per_part = {}
    for name in pred:
        only = {name: pred[name]}
        per_part[name] = prdl_loss(only, target, target_valid, None, grid).item()
        assert per_part[name] > 0
    weights = torch.zeros(1, NUM_PARTS, dtype=torch.float64)
    weights[0, PART_INDEX["skin"]], weights[0, PART_INDEX["nose"]] = 2.0, 0.5
    got = prdl_loss(pred, target, target_valid, weights, grid).item()
    assert got == pytest.approx(2.0 * per_part["skin"] + 0.5 * per_part["nose"], rel=1e-12)
    # empty prediction for a part, or an empty target, contributes 0
    empty_pred = dict(pred, nose=PointSet(pred["nose"].points, torch.zeros(1, 30, dtype=torch.bool)))
    tv = target_valid.clone()
    tv[0, PART_INDEX["skin"]] = False
    assert prdl_loss(empty_pred, target, tv, weights, grid).item() == 0.0
    with pytest.raises(ValueError, match="unknown parts"):
        prdl_loss({"hair": pred["skin"]}, target, target_valid, None, grid)
    with pytest.raises(ValueError, match="target must be"):
        prdl_loss(pred, target[:, :3], target_valid, None, grid)


def test_prdl_loss_module_prepares_targets_once_and_follows_the_observation() -> None:
    tgt = face_sets(32, (0.0, 0.0), 50, torch.float32)
    pred = face_sets(32, (0.5, -0.5), 60, torch.float32)
    obs = observation(32, tgt)
    loss = PRDLLoss()
    assert (loss.name, loss.default_weight, loss.needs) == ("prdl", 0.1, ("points",))
    value = loss(prediction(pred), obs)
    grid = AnchorGrid.full(32)
    target, target_valid = _targets({k: PointSet(v.points.double(), v.valid) for k, v in tgt.items()}, grid)
    want = prdl_loss({k: PointSet(v.points.double(), v.valid) for k, v in pred.items()}, target, target_valid,
                     None, grid, impl="dense")
    assert value.shape == (1,)
    assert value.item() == pytest.approx(want.item(), rel=1e-5)
    # a new observation is prepared on first use; parts missing from the target are skipped
    obs2 = observation(32, {"skin": tgt["skin"]})
    only_skin = loss(prediction(pred), obs2).item()
    assert only_skin == pytest.approx(loss(prediction({"skin": pred["skin"]}), obs2).item(), rel=1e-6)
    assert only_skin < value.item()
    strided = PRDLLoss(stride=2, stats=("ave",))(prediction(pred), obs)
    assert 0 < strided.item() < value.item()
    with pytest.raises(ValueError, match="stats"):
        PRDLLoss(stats=("median",))
    assert set(PART_NAMES) >= set(tgt)


@pytest.mark.parametrize("stride", [2, 4])
def test_coarse_anchor_prdl_equals_the_dense_reference_on_the_same_anchors(stride: int) -> None:
    tgt = face_sets(48, (0.0, 0.0), 70, torch.float64)
    pred = face_sets(48, (0.9, 0.4), 80, torch.float64)
    obs = observation(48, tgt)

    def value_and_grad(impl: str) -> tuple[float, torch.Tensor]:
        loss = PRDLLoss(impl=impl)
        loss.set_stride(stride)  # as the refinement's coarse phase does
        points = {k: PointSet(v.points.clone().requires_grad_(), v.valid) for k, v in pred.items()}
        value = loss(prediction(points), obs).sum()
        value.backward()
        return value.item(), torch.cat([p.points.grad.flatten() for p in points.values()])

    fast, fast_grad = value_and_grad("fast")
    dense, dense_grad = value_and_grad("dense")
    assert fast == pytest.approx(dense, rel=1e-6)
    torch.testing.assert_close(fast_grad, dense_grad, rtol=1e-5, atol=1e-7)
    full = PRDLLoss()(prediction(pred), obs).item()
    assert fast != pytest.approx(full, rel=1e-9)  # the stride took effect: other anchors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_fast_prdl_runs_on_cuda_and_matches_cpu() -> None:
    grid = AnchorGrid.full(48)
    target, target_valid = _targets(face_sets(48, (0.0, 0.0), 70), grid)
    pred = face_sets(48, (0.9, 0.4), 80)
    v_cpu, g_cpu = _loss_and_grad(pred, target, target_valid, None, grid, "fast")
    pred_gpu = {k: v.to("cuda") for k, v in pred.items()}
    v_gpu, g_gpu = _loss_and_grad(pred_gpu, target.cuda(), target_valid.cuda(), None, grid, "fast")
    torch.testing.assert_close(v_gpu.cpu(), v_cpu, rtol=1e-9, atol=0.0)
    for k in pred:
        torch.testing.assert_close(g_gpu[k].cpu(), g_cpu[k], rtol=1e-7, atol=1e-9)
