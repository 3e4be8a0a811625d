"""Tracking a face through frames: keyframes, one identity fitted jointly over them, and the track camera.

* :func:`choose_keyframes`: the frames that differ most in pose and expression (farthest point sampling in
  (yaw, pitch, expression), starting from the most frontal one);
* :func:`fit_shared_identity`: Levenberg–Marquardt over the keyframes at once with one identity β shared by
  all and a pose and expression per keyframe (the identity prior counted once);
* :class:`TrackCamera`: one pinhole camera for the whole track (photo pixels).  Each frame is fitted in the
  camera of its own crop (:class:`~fit3dmm.fitting.problem.FitProblem`), whose focal length and principal point
  follow the face; a pose moves between a crop's camera and the track camera by keeping where the head's
  origin projects and its apparent size (the rotation is kept), so that the previous frame can start and pull
  the next one (:meth:`~fit3dmm.fitting.problem.FitProblem.follow`) and the track's translations are in one
  frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fit3dmm.fitting.lm import LandmarkLeastSquares, PoseShape
from fit3dmm.ops.fps import farthest_point_sampling
from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.types.observation import Observation


def choose_keyframes(yaw_pitch_deg: np.ndarray, expression: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` candidates that differ most in pose and expression, most frontal first.

    Args:
        yaw_pitch_deg: (N, 2) head yaw and pitch of each candidate in degrees (30° weighs as a full
            expression weight).
        expression: (N, E) expression weights.
        count: how many to choose (all when N ≤ count).
    """
    yaw_pitch_deg, expression = np.asarray(yaw_pitch_deg, np.float64), np.asarray(expression, np.float64)
    if yaw_pitch_deg.ndim != 2 or yaw_pitch_deg.shape[1] != 2 or len(expression) != len(yaw_pitch_deg):
        raise ValueError(f"need (N, 2) poses and (N, E) expressions, got {yaw_pitch_deg.shape} and "
                         f"{expression.shape}")
    if count < 1:
        raise ValueError(f"count must be ≥ 1, got {count}")
    n = len(yaw_pitch_deg)
    if n <= count:
        return np.arange(n)
    features = torch.from_numpy(np.concatenate([yaw_pitch_deg / 30.0, expression], axis=1))
    frontal = int(np.argmin(np.abs(yaw_pitch_deg).sum(1)))
    chosen = farthest_point_sampling(features[None], None, count, start_index=frontal)
    return chosen[0].numpy()


def fit_shared_identity(ls: LandmarkLeastSquares, state: PoseShape, iterations: int,
                        damping: float = 1e-3) -> tuple[PoseShape, float]:
    """Levenberg–Marquardt on the B keyframes of ``ls`` with one identity shared by all.

    Unknowns: β (K), and per keyframe a rotation increment, a translation and an expression (6 + E each).
    The residuals are those of ``ls`` for each keyframe, with each keyframe's identity prior scaled by 1/√B so
    that the prior is counted once.  ``state`` must hold the same identity in every row (e.g. their mean).

    Returns:
        the final state (every row with the shared identity) and its cost.
    """
    b, k, e = state.identity.shape[0], state.identity.shape[1], state.expression.shape[1]
    if not torch.allclose(state.identity, state.identity[:1].expand_as(state.identity)):
        raise ValueError("the keyframes must start from one identity")
    local = torch.cat([torch.arange(6), 6 + k + torch.arange(e)])  # columns of a keyframe's own unknowns
    rows = slice(2 * ls.basis.num_landmarks, 2 * ls.basis.num_landmarks + k)  # the identity prior's rows
    share = 1.0 / b ** 0.5

    def evaluate(s: PoseShape) -> tuple[Tensor, Tensor]:
        r, jac = ls._evaluate(s, jacobian=True)
        r, jac = r.clone(), jac.clone()
        r[:, rows] *= share
        jac[:, rows] *= share
        return r, jac

    def normal_equations(r: Tensor, jac: Tensor) -> tuple[Tensor, Tensor]:
        n = k + b * (6 + e)
        hess = torch.zeros(n, n, dtype=r.dtype, device=r.device)
        grad = torch.zeros(n, dtype=r.dtype, device=r.device)
        j_id, j_loc = jac[:, :, 6: 6 + k], jac[:, :, local]
        hess[:k, :k] = torch.einsum("bmi,bmj->ij", j_id, j_id)
        grad[:k] = torch.einsum("bmi,bm->i", j_id, r)
        for i in range(b):
            block = slice(k + i * (6 + e), k + (i + 1) * (6 + e))
            hess[block, block] = j_loc[i].T @ j_loc[i]
            hess[:k, block] = j_id[i].T @ j_loc[i]
            hess[block, :k] = hess[:k, block].T
            grad[block] = j_loc[i].T @ r[i]
        return hess, grad

    r, jac = evaluate(state)
    cost = float(r.pow(2).sum())
    mu = damping
    for _ in range(iterations):
        hess, grad = normal_equations(r, jac)
        damped = hess + torch.diag(mu * (torch.diagonal(hess) + 1e-9))
        step = -torch.linalg.solve(damped, grad)
        per_frame = torch.zeros(b, 6 + k + e, dtype=step.dtype, device=step.device)
        per_frame[:, 6: 6 + k] = step[:k]
        per_frame[:, local] = step[k:].view(b, 6 + e)
        trial = ls.apply(state, per_frame)
        r_new, jac_new = evaluate(trial)
        cost_new = float(r_new.pow(2).sum())
        if np.isfinite(cost_new) and cost_new < cost:
            done = (cost - cost_new) / max(cost, 1e-12) < 1e-7
            state, r, jac, cost, mu = trial, r_new, jac_new, cost_new, max(mu / 10, 1e-9)
            if done:
                break
        else:
            mu *= 10
            if mu > 1e6:
                break
    return state, cost


@dataclass(frozen=True)
class TrackCamera:
    """The track's pinhole camera in photo pixels: ``focal`` and ``principal`` (x, y)."""

    focal: float
    principal: tuple[float, float]

    @staticmethod
    def of(observations: list[Observation], photo_size: tuple[int, int]) -> TrackCamera:
        """The median focal length (photo pixels) of the crops of ``observations``, principal point at the
        photo's centre (``photo_size`` = (W, H))."""
        focals = [float(f) for o in observations for f in _crop_focal_px(o)]
        return TrackCamera(float(np.median(focals)), ((photo_size[0] - 1) / 2.0, (photo_size[1] - 1) / 2.0))

    def from_crop(self, translation: Tensor, observation: Observation) -> Tensor:
        """(B, 3) translations in the crops' cameras of ``observation`` → the track camera's."""
        focal = _crop_focal_px(observation).to(translation.device)
        crop = PerspectiveCamera.for_crop(observation.size, observation.batch_size, dtype=torch.float64,
                                          device=translation.device)
        pix, depth = crop.project(translation.double()[:, None])
        photo = observation.crop_points_to_photo(pix)[:, 0]
        z = depth[:, 0] * self.focal / focal
        x = (photo[:, 0] - self.principal[0]) * z / self.focal
        y = -(photo[:, 1] - self.principal[1]) * z / self.focal
        return torch.stack([x, y, -z], -1).to(translation.dtype)

    def to_crop(self, translation: Tensor, observation: Observation) -> Tensor:
        """The inverse of :meth:`from_crop`: track-camera translations (B, 3) → the crops' cameras."""
        t = translation.double()
        z = -t[:, 2]
        photo = torch.stack([self.principal[0] + self.focal * t[:, 0] / z,
                             self.principal[1] - self.focal * t[:, 1] / z], -1)
        pix = observation.photo_points_to_crop(photo[:, None])[:, 0]
        crop = PerspectiveCamera.for_crop(observation.size, observation.batch_size, dtype=torch.float64,
                                          device=translation.device)
        depth = z * _crop_focal_px(observation).to(translation.device) / self.focal
        f = crop.focal.double()
        x = (pix[:, 0] - crop.principal[:, 0].double()) * depth / f
        y = -(pix[:, 1] - crop.principal[:, 1].double()) * depth / f
        return torch.stack([x, y, -depth], -1).to(translation.dtype)


def _crop_focal_px(observation: Observation) -> Tensor:
    """(B,) the focal length of the crop cameras in photo pixels (the crop's f times photo pixels per crop
    pixel)."""
    scale = observation.crop_to_photo[:, 0, 0].double()
    return PerspectiveCamera.for_crop(observation.size, 1).focal.double()[0] * scale.cpu()
