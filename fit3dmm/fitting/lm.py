"""Batched Levenberg–Marquardt for pose, identity and expression against landmarks and the prior.

The least-squares objective (per face; the same numbers as ``λ_lmk·lmk + λ_reg·reg`` of the
:class:`~fit3dmm.fitting.objective.Objective`, checked by the tests)::

    C = λ_lmk Σ_l ‖(π(R X_l(β, ψ) + t) − g_l) / σ_l‖²  +  λ_reg (Σ_k (β_k/s_k)² + w_ψ Σ_e (ψ_e/s_e)²)

with X_l the model landmarks (:class:`~fit3dmm.fitting.landmarks.LandmarkBasis`), π the crop camera, g_l the
detected landmarks and σ_l their noise (hidden-side landmarks get their larger σ).  Unknowns: a rotation
increment δ (R ← exp([δ]×) R, so no parametrisation singularity), the translation t, the identity β and the
expression ψ, 6 + K + E in all (159 for ICT).  Each iteration builds the analytic Jacobian J (B, 2L, N),
solves the damped normal equations ``(JᵀJ + μ·diag(JᵀJ)) Δ = −Jᵀr`` for all faces at once, and keeps a
face's step only if its cost went down (else its μ grows tenfold).  Bounded expressions (ICT's ARKit weights
in [0, 1]) are handled by an active set: a weight at a bound whose gradient pushes outward is held there,
and steps are clipped into the box.  Milliseconds per iteration on a CPU.

Tracking adds a :class:`TemporalPrior` that pulls each frame towards the previous one::

    C_t = w_ψ,t Σ_e (ψ_e − ψ⁰_e)²  +  w_t ‖t − t⁰‖²  +  w_R ‖log(R R⁰ᵀ)‖²

(its Jacobian takes d log(exp([δ]×) R R⁰ᵀ)/dδ ≈ I, exact at R = R⁰ and a Gauss–Newton approximation near it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fit3dmm.fitting.landmarks import LandmarkBasis, triangle_normals
from fit3dmm.render.camera import PerspectiveCamera, axis_angle_to_matrix, matrix_to_axis_angle


@dataclass
class PoseShape:
    """The unknowns of the least-squares stage for B faces (float64): rotation (B, 3, 3), translation (B, 3),
    identity (B, K), expression (B, E)."""

    rotation: Tensor
    translation: Tensor
    identity: Tensor
    expression: Tensor

    def clone(self) -> PoseShape:
        return PoseShape(self.rotation.clone(), self.translation.clone(), self.identity.clone(),
                         self.expression.clone())

    def where(self, keep: Tensor, other: PoseShape) -> PoseShape:
        """Per face: this state where ``keep`` (B,) else ``other``'s."""
        def pick(a: Tensor, b: Tensor) -> Tensor:
            return torch.where(keep.view(-1, *([1] * (a.ndim - 1))), a, b)

        return PoseShape(pick(self.rotation, other.rotation), pick(self.translation, other.translation),
                         pick(self.identity, other.identity), pick(self.expression, other.expression))


@dataclass(frozen=True)
class TemporalPrior:
    """The previous frame's state and how strongly each frame is pulled towards it (tracking).

    ``expression`` (B, E), ``translation`` (B, 3) cm and ``rotation`` (B, 3, 3) of the previous frame (in this
    frame's camera); weights per unit of expression weight, per cm and per radian.  A face whose row of
    ``active`` (B,) is False is not pulled (a first frame, or the first after a gap).
    """

    expression: Tensor
    translation: Tensor
    rotation: Tensor
    active: Tensor
    expression_weight: float
    translation_weight: float
    rotation_weight: float


@dataclass(frozen=True)
class LandmarkPrior:
    """Weights of the least-squares objective: ``landmarks`` (λ_lmk), ``prior`` (λ_reg), and the prior's
    per-coefficient scales: identity (K,) and expression (E,) standard deviations, ``expression_weight``
    (w_ψ)."""

    landmarks: float
    prior: float
    identity_std: Tensor
    expression_std: Tensor
    expression_weight: float


class LandmarkLeastSquares:
    """The least-squares problem of B faces: residuals, cost, Jacobian and LM iterations.

    Args:
        basis: the model's landmarks.
        camera: the crop camera (B faces).
        targets: (B, L, 2) detected landmarks in crop pixels.
        valid: (B, L) bool, landmarks that take part (detected, with a correspondence).
        weights: the objective's weights and the prior's scales.
        size: the crop side in pixels (scales the noise).
        bounds: (lo, hi) box of the expression, or None.
        temporal: the pull towards a previous frame (tracking), or None.
    """

    def __init__(self, basis: LandmarkBasis, camera: PerspectiveCamera, targets: Tensor, valid: Tensor,
                 weights: LandmarkPrior, size: int, bounds: tuple[float, float] | None,
                 temporal: TemporalPrior | None = None) -> None:
        self.basis = basis
        self.focal = camera.focal.double()
        self.principal = camera.principal.double()
        self.targets = targets.double()
        self.valid = valid
        self.weights = weights
        self.size = size
        self.bounds = bounds
        self.temporal = temporal

    # --------------------------------------------------------------------------------------- residuals
    def _landmarks(self, state: PoseShape) -> tuple[Tensor, Tensor]:
        """Camera-space landmarks (B, L, 3) and their noise (B, L)."""
        points, corners = self.basis(state.identity, state.expression)
        points, corners = points.double(), corners.double()
        cam = points @ state.rotation.transpose(1, 2) + state.translation[:, None]
        normals = triangle_normals(corners) @ state.rotation.transpose(1, 2)
        return cam, self.basis.support.noise(normals, cam, self.size).double()

    def residuals(self, state: PoseShape) -> Tensor:
        """(B, M) residuals whose squares sum to the cost (landmarks, then the prior)."""
        return self._evaluate(state, jacobian=False)[0]

    def cost(self, state: PoseShape) -> Tensor:
        """(B,) the least-squares objective C."""
        return self.residuals(state).pow(2).sum(-1)

    def _evaluate(self, state: PoseShape, jacobian: bool) -> tuple[Tensor, Tensor | None]:
        w = self.weights
        cam, sigma = self._landmarks(state)
        z = (-cam[..., 2]).clamp_min(1e-6)
        f = self.focal[:, None]
        u = self.principal[:, None, 0] + f * cam[..., 0] / z
        v = self.principal[:, None, 1] - f * cam[..., 1] / z
        scale = (w.landmarks ** 0.5) * self.valid.double() / sigma  # (B, L)
        r_lmk = torch.stack([(u - self.targets[..., 0]) * scale, (v - self.targets[..., 1]) * scale], -1)
        id_scale = (w.prior ** 0.5) / w.identity_std[: state.identity.shape[1]].double()
        exp_scale = ((w.prior * w.expression_weight) ** 0.5) / w.expression_std[: state.expression.shape[1]].double()
        r = torch.cat([r_lmk.flatten(1), state.identity * id_scale, state.expression * exp_scale], dim=1)
        if self.temporal is not None:
            r = torch.cat([r, self.temporal_residuals(state)], dim=1)
        if not jacobian:
            return r, None
        # d(u, v)/d(camera point), (B, L, 2, 3)
        zero = torch.zeros_like(z)
        duv = torch.stack([torch.stack([f / z, zero, f * cam[..., 0] / z**2], -1),
                           torch.stack([zero, -f / z, -f * cam[..., 1] / z**2], -1)], -2)
        duv = duv * scale[..., None, None]
        rot = state.rotation
        # camera point derivatives: rotation increment −[R X]×, translation I, identity R A_k, expression R D_e
        rx = cam - state.translation[:, None]
        d_rot = torch.zeros(*rx.shape, 3, dtype=rx.dtype, device=rx.device)  # (B, L, 3, 3) = −[a]×
        d_rot[..., 0, 1], d_rot[..., 0, 2] = rx[..., 2], -rx[..., 1]
        d_rot[..., 1, 0], d_rot[..., 1, 2] = -rx[..., 2], rx[..., 0]
        d_rot[..., 2, 0], d_rot[..., 2, 1] = rx[..., 1], -rx[..., 0]
        n = self.basis.num_landmarks
        k, e = state.identity.shape[1], state.expression.shape[1]
        a = self.basis.identity[:k, :n].double()    # (K, L, 3)
        d = self.basis.expression[:e, :n].double()  # (E, L, 3)
        j_rot = duv @ d_rot                                          # (B, L, 2, 3)
        j_trans = duv                                                # (B, L, 2, 3)
        duv_r = duv @ rot[:, None]                                   # (B, L, 2, 3): d(u,v)/d(model point)
        j_id = torch.einsum("blij,klj->blik", duv_r, a)              # (B, L, 2, K)
        j_exp = torch.einsum("blij,elj->blie", duv_r, d)             # (B, L, 2, E)
        j_lmk = torch.cat([j_rot, j_trans, j_id, j_exp], -1).flatten(1, 2)  # (B, 2L, N)
        b = cam.shape[0]
        j_prior = torch.zeros(b, k + e, 6 + k + e, dtype=j_lmk.dtype, device=j_lmk.device)
        j_prior[:, torch.arange(k), 6 + torch.arange(k)] = id_scale.expand(b, k)
        j_prior[:, k + torch.arange(e), 6 + k + torch.arange(e)] = exp_scale.expand(b, e)
        blocks = [j_lmk, j_prior]
        if self.temporal is not None:
            blocks.append(self.temporal_jacobian(state))
        return r, torch.cat(blocks, dim=1)

    def _temporal_scales(self) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 1) square-root weights of the expression, translation and rotation pulls (0 where inactive)."""
        t = self.temporal
        on = t.active.double()[:, None]
        return on * t.expression_weight ** 0.5, on * t.translation_weight ** 0.5, on * t.rotation_weight ** 0.5

    def temporal_residuals(self, state: PoseShape) -> Tensor:
        """(B, E + 6): the pulls of :class:`TemporalPrior` (expression, translation, rotation log)."""
        t = self.temporal
        se, st, sr = self._temporal_scales()
        relative = state.rotation @ t.rotation.double().transpose(1, 2)
        return torch.cat([(state.expression - t.expression.double()) * se,
                          (state.translation - t.translation.double()) * st,
                          matrix_to_axis_angle(relative) * sr], dim=1)

    def temporal_jacobian(self, state: PoseShape) -> Tensor:
        """(B, E + 6, N): d(temporal residuals)/d(δ, t, β, ψ), with d log/dδ ≈ I."""
        se, st, sr = self._temporal_scales()
        b, k, e = state.identity.shape[0], state.identity.shape[1], state.expression.shape[1]
        jac = torch.zeros(b, e + 6, 6 + k + e, dtype=torch.float64, device=state.translation.device)
        jac[:, torch.arange(e), 6 + k + torch.arange(e)] = se.expand(b, e)
        jac[:, e + torch.arange(3), 3 + torch.arange(3)] = st.expand(b, 3)
        jac[:, e + 3 + torch.arange(3), torch.arange(3)] = sr.expand(b, 3)
        return jac

    def jacobian(self, state: PoseShape) -> Tensor:
        """(B, M, N) d residuals / d (δ, t, β, ψ) at ``state`` (δ: the left rotation increment)."""
        return self._evaluate(state, jacobian=True)[1]

    # ------------------------------------------------------------------------------------------- steps
    def apply(self, state: PoseShape, step: Tensor) -> PoseShape:
        """``state`` moved by ``step`` (B, N): R ← exp([δ]×)·R, the rest added; expressions kept in the box."""
        k = state.identity.shape[1]
        rotation = axis_angle_to_matrix(step[:, :3]) @ state.rotation
        expression = state.expression + step[:, 6 + k:]
        if self.bounds is not None:
            expression = expression.clamp(*self.bounds)
        return PoseShape(rotation, state.translation + step[:, 3:6], state.identity + step[:, 6: 6 + k], expression)

    def solve(self, state: PoseShape, iterations: int, free: Tensor, damping: float = 1e-3,
              tolerance: float = 1e-7) -> tuple[PoseShape, Tensor]:
        """Run up to ``iterations`` LM iterations on the unknowns marked in ``free`` (N,) bool.

        Stops early when no face's cost fell by more than ``tolerance`` (relative) in an iteration.
        Returns the final state and its cost (B,).
        """
        b = state.rotation.shape[0]
        mu = torch.full((b,), damping, dtype=torch.float64, device=state.rotation.device)
        r, jac = self._evaluate(state, jacobian=True)
        cost = r.pow(2).sum(-1)
        k = state.identity.shape[1]
        for _ in range(iterations):
            grad = (jac.transpose(1, 2) @ r[..., None])[..., 0]  # (B, N): ½ ∇C
            hess = jac.transpose(1, 2) @ jac
            hold = ~free.expand(b, -1).clone()
            if self.bounds is not None:  # the active set: weights at a bound that the gradient pushes outward
                lo, hi = self.bounds
                exp, g = state.expression, grad[:, 6 + k:]
                hold[:, 6 + k:] |= ((exp <= lo) & (g > 0)) | ((exp >= hi) & (g < 0))
            diag = torch.diagonal(hess, dim1=1, dim2=2)
            damped = hess + torch.diag_embed(mu[:, None] * (diag + 1e-9))
            keep = (~hold).double()
            damped = damped * keep[:, :, None] * keep[:, None, :] + torch.diag_embed(hold.double())
            step = -torch.linalg.solve(damped, (grad * keep)[..., None])[..., 0]
            trial = self.apply(state, step)
            r_new, jac_new = self._evaluate(trial, jacobian=True)
            cost_new = r_new.pow(2).sum(-1)
            better = torch.isfinite(cost_new) & (cost_new < cost)
            improvement = torch.where(better, (cost - cost_new) / cost.clamp_min(1e-12), torch.zeros_like(cost))
            state = trial.where(better, state)
            r = torch.where(better[:, None], r_new, r)
            jac = torch.where(better[:, None, None], jac_new, jac)
            cost = torch.where(better, cost_new, cost)
            mu = torch.where(better, (mu / 10).clamp_min(1e-9), mu * 10)
            if bool((improvement < tolerance).all()) and bool(better.any() | (mu > 1e6).all()):
                break
        return state, cost
