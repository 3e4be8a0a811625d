"""Refinement with the whole objective (the geometric losses on top of landmarks and prior).

Two solvers over the same unknowns as the landmark stage (a rotation increment, translation, identity,
expression):

* ``"gn"`` (default): gradient steps preconditioned by the landmark stage's Gauss–Newton matrix M,
  Δ = −(M + μ·diag M)⁻¹ ∇E, with a backtracking line search per face (the step is halved until the face's
  total loss E goes down, at most :data:`HALVINGS` times, else the face stays; a face's step length carries
  over to its next iteration and doubles, up to the full step, after each success).  A face whose loss falls
  by less than the tolerance (relative) in an iteration is done and stops moving, so that in a batch each face
  takes the steps it would take alone.  M measures how much a change of each unknown moves the landmarks and
  costs under the prior, so directions the data hardly fix (gaze, blinks, the fine identity modes) move only
  as far as the loss's gradient justifies against them, and well-fixed ones do not overshoot; Adam, which
  normalises every coordinate's step, moved the weak directions at full speed (PRDL alone closed ICT's eyes).
* ``"adam"``: Adam on the same unknowns (the learning rates of the schedule).

Both keep bounded expressions in their box, leave frozen expressions (gaze) alone, stop a face whose loss
becomes non-finite and return each face's best iterate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fit3dmm.fitting.lm import LandmarkLeastSquares, PoseShape
from fit3dmm.fitting.objective import Objective
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.render.camera import axis_angle_to_matrix, matrix_to_axis_angle

HALVINGS = 5
"""Most step halvings of the line search before a face keeps its place for the iteration."""


@dataclass
class Refinement:
    """What a refinement did: total loss per iteration (iterations, B), faces whose loss became non-finite
    (B,), seconds."""

    history: list[Tensor] = field(default_factory=list)
    diverged: Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class CoefficientView:
    """Coefficients in the form :class:`~fit3dmm.fitting.prediction.PredictionBuilder` reads, with the rotation
    as a matrix (so that a rotation increment can carry the gradient)."""

    matrix: Tensor
    translation: Tensor
    identity: Tensor
    expression: Tensor
    albedo: Tensor | None = None
    lighting: Tensor | None = None

    @property
    def rotation(self) -> Tensor:
        return matrix_to_axis_angle(self.matrix)

    def rotation_matrix(self) -> Tensor:
        return self.matrix


Evaluate = Callable[[PoseShape, dict[str, Tensor], bool], tuple[Tensor, Tensor | None, dict[str, Tensor]]]


def evaluator(objective: Objective, builder: PredictionBuilder) -> Evaluate:
    """``evaluate(state, extras, gradient)`` → (total E (B,), ∇E (B, N) in LM coordinates or None, the gradients
    of the ``extras`` (albedo, lighting) by name)."""
    obs = builder.observation
    dtype = builder.model.mean.dtype

    def evaluate(state: PoseShape, extras: dict[str, Tensor], gradient: bool
                 ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        out_dtype = state.translation.dtype
        with torch.set_grad_enabled(gradient):
            delta = torch.zeros_like(state.translation, dtype=dtype, requires_grad=gradient)
            leaves = [t.to(dtype).detach().requires_grad_(gradient)
                      for t in (state.translation, state.identity, state.expression)]
            more = {k: v.detach().requires_grad_(gradient) for k, v in extras.items()}
            matrix = axis_angle_to_matrix(delta) @ state.rotation.to(dtype)
            view = CoefficientView(matrix, *leaves, **more)
            total, _ = objective(builder(view, render_image=objective.renders_image), obs)
            if not gradient:
                return total.detach().to(out_dtype), None, {}
            finite = torch.isfinite(total)
            torch.where(finite, total, torch.zeros_like(total)).sum().backward()
            grads = [delta.grad, *(leaf.grad for leaf in leaves)]
            return (total.detach().to(out_dtype), torch.cat(grads, 1).to(out_dtype),
                    {k: torch.nan_to_num(v.grad) for k, v in more.items()})

    return evaluate


def with_temporal(evaluate: Evaluate, least_squares: LandmarkLeastSquares) -> Evaluate:
    """``evaluate`` plus the temporal pull of ``least_squares`` (tracking, :class:`~fit3dmm.fitting.lm.TemporalPrior`):
    E + ‖r_t‖² and ∇E + 2 J_tᵀ r_t, in the same units as the landmark stage's cost."""

    def pulled(state: PoseShape, extras: dict[str, Tensor], gradient: bool
               ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        total, grad, more = evaluate(state, extras, gradient)
        r = least_squares.temporal_residuals(state)
        total = total + r.pow(2).sum(-1).to(total.dtype)
        if grad is not None:
            jac = least_squares.temporal_jacobian(state)
            grad = grad + (2 * (jac.transpose(1, 2) @ r[..., None])[..., 0]).to(grad.dtype)
        return total, grad, more

    return pulled


def gauss_newton(state: PoseShape, evaluate: Evaluate, metric: Tensor, keep: Tensor,
                 least_squares: LandmarkLeastSquares, iterations: int, tolerance: float, log: Refinement,
                 report: Callable[[Tensor], None]) -> PoseShape:
    """``iterations`` preconditioned gradient steps with a line search (module docstring).

    Args:
        metric: (B, N, N) the preconditioner M.
        keep: (N,) bool, the unknowns that may move.
        least_squares: for applying a step (rotation update, expression box).
    """
    b, n = metric.shape[0], metric.shape[1]
    damped = metric + torch.diag_embed(1e-3 * torch.diagonal(metric, dim1=1, dim2=2) + 1e-6)
    keep_f = keep.to(metric.dtype)
    damped = damped * keep_f[:, None] * keep_f[None, :] + torch.diag_embed((~keep).to(metric.dtype)).expand(b, n, n)
    k = state.identity.shape[1]
    bounds = least_squares.bounds
    best, best_e = state.clone(), torch.full((b,), float("inf"), dtype=metric.dtype, device=metric.device)
    diverged = torch.zeros(b, dtype=torch.bool, device=metric.device)
    scale = torch.ones(b, dtype=metric.dtype, device=metric.device)  # each face's step length, kept between steps
    done = torch.zeros(b, dtype=torch.bool, device=metric.device)  # converged: stays where it is
    for _ in range(iterations):
        energy, grad, _ = evaluate(state, {}, True)
        diverged |= ~torch.isfinite(energy)
        log.history.append(torch.where(done, torch.nan, energy).to(torch.float32))  # NaN: stopped before
        report(energy)
        better = torch.isfinite(energy) & (energy < best_e)
        best, best_e = state.where(better, best), torch.where(better, energy, best_e)
        hold = ~keep.expand(b, -1).clone()
        if bounds is not None:  # expressions at a bound that the gradient pushes outward stay
            hold[:, 6 + k:] |= ((state.expression <= bounds[0]) & (grad[:, 6 + k:] > 0)) | (
                (state.expression >= bounds[1]) & (grad[:, 6 + k:] < 0))
        free = (~hold).to(metric.dtype)
        system = damped * free[:, :, None] * free[:, None, :] + torch.diag_embed(hold.to(metric.dtype))
        step = -torch.linalg.solve(system, (torch.nan_to_num(grad) * free)[..., None])[..., 0]
        moved = diverged | done  # a diverged or converged face does not move (nor holds the others' search)
        accepted, accepted_e = state, energy
        for _ in range(HALVINGS + 1):
            trial = least_squares.apply(state, step * scale[:, None])
            trial_e, _, _ = evaluate(trial, {}, False)
            ok = ~moved & torch.isfinite(trial_e) & (trial_e < energy)
            accepted, accepted_e = trial.where(ok, accepted), torch.where(ok, trial_e, accepted_e)
            moved |= ok
            if bool(moved.all()):
                break
            scale = torch.where(moved, scale, scale / 2)
        scale = torch.where(moved, (2 * scale).clamp(max=1.0), scale)  # a step that went through may grow again
        gain = (energy - accepted_e) / energy.abs().clamp_min(1e-12)
        state = accepted
        done |= torch.nan_to_num(gain) < tolerance
        if bool(done.all()):
            break
    energy, _, _ = evaluate(state, {}, False)
    better = torch.isfinite(energy) & (energy < best_e)
    best, best_e = state.where(better, best), torch.where(better, energy, best_e)
    log.diverged = diverged if log.diverged is None else log.diverged | diverged
    return best


def adam(state: PoseShape, extras: dict[str, Tensor], evaluate: Evaluate, keep: Tensor,
         least_squares: LandmarkLeastSquares, learning_rates: tuple[float, float, float], iterations: int,
         tolerance: float, log: Refinement, report: Callable[[Tensor], None]) -> tuple[PoseShape, dict[str, Tensor]]:
    """``iterations`` Adam steps in LM coordinates (rotation increment, translation, shape) and on ``extras``
    (albedo, lighting), with the ``learning_rates`` of rotation, translation and coefficients."""
    b = state.translation.shape[0]
    n = 6 + state.identity.shape[1] + state.expression.shape[1]
    dtype, device = state.translation.dtype, state.translation.device
    rates = torch.full((n,), learning_rates[2], dtype=dtype, device=device)
    rates[:3], rates[3:6] = learning_rates[0], learning_rates[1]
    moments = {"lm": (torch.zeros(b, n, dtype=dtype, device=device),) * 2}
    moments.update({k: (torch.zeros_like(v),) * 2 for k, v in extras.items()})
    best, best_extras = state.clone(), {k: v.clone() for k, v in extras.items()}
    best_e = torch.full((b,), float("inf"), dtype=dtype, device=device)
    diverged = torch.zeros(b, dtype=torch.bool, device=device)
    previous = None

    def adam_step(name: str, grad: Tensor, rate: Tensor | float, step: int) -> Tensor:
        m1, m2 = moments[name]
        m1, m2 = 0.9 * m1 + 0.1 * grad, 0.999 * m2 + 0.001 * grad * grad
        moments[name] = (m1, m2)
        return -rate * (m1 / (1 - 0.9**step)) / ((m2 / (1 - 0.999**step)).sqrt() + 1e-8)

    for step in range(1, iterations + 1):
        energy, grad, extra_grads = evaluate(state, extras, True)
        diverged |= ~torch.isfinite(energy)
        log.history.append(energy.to(torch.float32))
        report(energy)
        better = torch.isfinite(energy) & (energy < best_e)
        best, best_e = state.where(better, best), torch.where(better, energy, best_e)
        best_extras = {k: torch.where(better[:, None], v, best_extras[k]) for k, v in extras.items()}
        live = (~diverged)[:, None]
        grad = torch.nan_to_num(grad) * keep.to(dtype) * live
        state = least_squares.apply(state, adam_step("lm", grad, rates, step))
        extras = {k: v + adam_step(k, extra_grads[k] * live, learning_rates[2], step) for k, v in extras.items()}
        if previous is not None and tolerance > 0:
            change = (previous - energy).abs() / energy.abs().clamp_min(1e-12)
            if bool((torch.nan_to_num(change) < tolerance).all()):
                break
        previous = energy
    energy, _, _ = evaluate(state, extras, False)
    better = torch.isfinite(energy) & (energy < best_e)
    best = state.where(better, best)
    best_extras = {k: torch.where(better[:, None], v, best_extras[k]) for k, v in extras.items()}
    log.diverged = diverged if log.diverged is None else log.diverged | diverged
    return best, best_extras


def timed(timings: dict[str, float], name: str, start: float) -> None:
    """Add the seconds since ``start`` to ``timings[name]``."""
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
