"""The landmark stage's Levenberg–Marquardt: its Jacobian against autograd, its cost against the objective's
``lmk`` and ``reg`` terms, recovery of pose and coefficients from noiseless landmarks, the expression box."""

from __future__ import annotations

import pytest
import torch

from fit3dmm.fitting.landmarks import LandmarkBasis, LandmarkSupport
from fit3dmm.fitting.lm import LandmarkLeastSquares, LandmarkPrior, PoseShape, TemporalPrior
from fit3dmm.fitting.objective import Objective
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.fitting.refine import CoefficientView
from fit3dmm.render.camera import PerspectiveCamera, euler_to_matrix, matrix_to_euler
from fit3dmm.types.observation import Observation

SIZE = 224


def problem_for(model, targets, weights=(0.5, 2.0, 3.0)):
    support = LandmarkSupport.of(model)
    basis = LandmarkBasis(model, support)
    camera = PerspectiveCamera.for_crop(SIZE, targets.shape[0])
    prior = LandmarkPrior(weights[0], weights[1], model.identity_std, model.expression_std, weights[2])
    valid = torch.ones(targets.shape[:2], dtype=torch.bool)
    return LandmarkLeastSquares(basis, camera, targets, valid, prior, SIZE, model.expression_range)


def random_state(model, batch, seed=0, yaw=20.0):
    gen = torch.Generator().manual_seed(seed)
    pose = torch.tensor([[yaw, -8.0, 4.0]]).repeat(batch, 1) + 5 * torch.randn(batch, 3, generator=gen)
    return PoseShape(euler_to_matrix(pose).double(),
                     torch.tensor([[1.0, -2.0, -110.0]]).double() + torch.randn(batch, 3, generator=gen).double(),
                     0.5 * torch.randn(batch, model.num_identity, generator=gen).double(),
                     (0.1 + 0.8 * torch.rand(batch, model.num_expression, generator=gen)).double())


def projected(ls, state):
    """The landmarks of ``state`` in crop pixels (noiseless targets)."""
    points, _ = ls.basis(state.identity, state.expression)
    cam = points.double() @ state.rotation.transpose(1, 2) + state.translation[:, None]
    pix, _ = PerspectiveCamera.for_crop(SIZE, state.rotation.shape[0], dtype=torch.float64).project(cam)
    return pix


@pytest.mark.parametrize("model_name", ["tiny_model", "annotated_ict"])
def test_jacobian_matches_autograd(model_name, request):
    model = request.getfixturevalue(model_name).region()
    state = random_state(model, 2)
    targets = torch.rand(2, LandmarkSupport.of(model).num_landmarks, 2).double() * 100 + 60
    ls = problem_for(model, targets)
    n = 6 + model.num_identity + model.num_expression

    def residuals(step: torch.Tensor) -> torch.Tensor:
        return ls.residuals(ls.apply(state, step))

    for b in range(2):
        auto = torch.autograd.functional.jacobian(
            lambda x, b=b: residuals(torch.cat([torch.zeros(b, n).double(), x[None],
                                                torch.zeros(1 - b, n).double()]))[b],
            torch.zeros(n, dtype=torch.float64))
        torch.testing.assert_close(ls.jacobian(state)[b], auto, rtol=1e-6, atol=1e-6)


def test_temporal_prior_residuals_and_jacobian(tiny_model):
    """The pull towards a previous frame: residuals by hand; Jacobian against autograd at the previous
    rotation (where d log/dδ = I is exact); an inactive face is not pulled."""
    model = tiny_model.region()
    state = random_state(model, 2)
    previous = random_state(model, 2, seed=5)
    previous = PoseShape(state.rotation.clone(), previous.translation, previous.identity, previous.expression)
    targets = torch.rand(2, LandmarkSupport.of(model).num_landmarks, 2).double() * 100 + 60
    ls = problem_for(model, targets)
    plain = ls.residuals(state)
    ls.temporal = TemporalPrior(previous.expression, previous.translation, previous.rotation,
                                torch.tensor([True, False]), 4.0, 9.0, 16.0)
    r = ls.residuals(state)
    e = state.expression.shape[1]
    torch.testing.assert_close(r[:, : plain.shape[1]], plain)
    torch.testing.assert_close(r[0, -(e + 6):-6], 2.0 * (state.expression[0] - previous.expression[0]))
    torch.testing.assert_close(r[0, -6:-3], 3.0 * (state.translation[0] - previous.translation[0]))
    torch.testing.assert_close(r[0, -3:], torch.zeros(3, dtype=torch.float64), atol=1e-7, rtol=0)
    assert (r[1, -(e + 6):] == 0).all()
    n = 6 + model.num_identity + model.num_expression
    auto = torch.autograd.functional.jacobian(
        lambda x: ls.residuals(ls.apply(state, torch.stack([x, torch.zeros_like(x)])))[0],
        torch.zeros(n, dtype=torch.float64))
    torch.testing.assert_close(ls.jacobian(state)[0], auto, rtol=1e-6, atol=1e-6)
    # the refinement's energy gets the same pull: E + ‖r_t‖², ∇E + 2 J_tᵀ r_t (autograd of the pull alone)
    from fit3dmm.fitting.refine import with_temporal

    def nothing(s, extras, gradient):
        zero = torch.zeros(2, dtype=torch.float64)
        return zero, (torch.zeros(2, n, dtype=torch.float64) if gradient else None), {}

    total, grad, _ = with_temporal(nothing, ls)(state, {}, True)
    pull = r[:, plain.shape[1]:].pow(2).sum(-1)
    torch.testing.assert_close(total, pull)
    auto = torch.autograd.functional.jacobian(
        lambda x: ls.temporal_residuals(ls.apply(state, torch.stack([x, torch.zeros_like(x)])))[0].pow(2).sum(),
        torch.zeros(n, dtype=torch.float64))
    torch.testing.assert_close(grad[0], auto, rtol=1e-6, atol=1e-6)
    assert (grad[1] == 0).all()


def test_cost_is_the_objectives_landmark_and_prior_terms(annotated_ict):
    region = annotated_ict.region()
    state = random_state(region, 2, seed=3)
    targets = torch.rand(2, LandmarkSupport.of(region).num_landmarks, 2).double() * 100 + 60
    weights = {"lmk": 0.7, "reg": 2.5}
    objective = Objective(weights, region)
    ls = problem_for(region, targets, (0.7, 2.5, objective.losses["reg"].weights["expression"]))
    obs = Observation(torch.zeros(2, 3, SIZE, SIZE), torch.eye(3, dtype=torch.float64).repeat(2, 1, 1),
                      torch.full((2, 2), float(SIZE)), landmarks=targets.float(),
                      landmarks68=targets[:, :68].float())
    builder = PredictionBuilder(region, PerspectiveCamera.for_crop(SIZE, 2), obs, use_visibility=False)
    view = CoefficientView(state.rotation.float(), state.translation.float(), state.identity.float(),
                           state.expression.float())
    total, _ = objective(builder(view), obs)
    torch.testing.assert_close(ls.cost(state).float(), total, rtol=1e-4, atol=1e-3)


def test_lm_recovers_pose_and_coefficients_from_noiseless_landmarks(annotated_ict):
    """With exact landmarks and a negligible prior the least-squares stage lands on the truth: pose within
    0.05°, translation within 0.05 cm, landmarks within 0.01 px (identity and expression are not unique from
    478 2D points, so they are checked through what they do)."""
    region = annotated_ict.region()
    truth = random_state(region, 3, seed=5)
    truth.identity *= 0.5
    ls = problem_for(region, torch.zeros(3, LandmarkSupport.of(region).num_landmarks, 2).double(), (1.0, 1e-6, 1.0))
    ls.targets = projected(ls, truth)
    start = PoseShape(euler_to_matrix(torch.tensor([[10.0, 0.0, 0.0]]).repeat(3, 1)).double(),
                      torch.tensor([[0.0, 0.0, -100.0]]).double().repeat(3, 1),
                      torch.zeros_like(truth.identity), torch.zeros_like(truth.expression))
    free = torch.ones(6 + region.num_identity + region.num_expression, dtype=torch.bool)
    state, _ = ls.solve(start, 60, free, tolerance=0.0)
    fitted = projected(ls, state)
    assert (fitted - ls.targets).norm(dim=-1).max() < 0.01
    assert (matrix_to_euler(state.rotation) - matrix_to_euler(truth.rotation)).abs().max() < 0.05
    assert (state.translation - truth.translation).abs().max() < 0.05


def test_expressions_stay_in_their_box(annotated_ict):
    region = annotated_ict.region()
    truth = random_state(region, 1, seed=7)
    truth.expression = (truth.expression * 3 - 1).clamp(0, 1)  # some at the bounds
    ls = problem_for(region, torch.zeros(1, LandmarkSupport.of(region).num_landmarks, 2).double(), (1.0, 0.01, 1.0))
    noise = torch.randn(ls.targets.shape, generator=torch.Generator().manual_seed(1)).double()
    ls.targets = projected(ls, truth) + 15 * noise
    free = torch.ones(6 + region.num_identity + region.num_expression, dtype=torch.bool)
    state, _ = ls.solve(truth.clone(), 30, free)
    lo, hi = region.expression_range
    assert state.expression.min() >= lo and state.expression.max() <= hi
    assert (state.expression == lo).any()  # the noise pushes some weights against the box
