"""A fitting problem and its named stages: start, rigid, refine, result.

:func:`~fit3dmm.fitting.engine.fit_observation` runs them in order; ``compare`` runs the start and the rigid
stage once and then refines a copy per configuration; tracking starts each frame from the previous one.
Batched over the B faces of one :class:`~fit3dmm.types.observation.Observation`; the device follows the
model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fit3dmm.defaults import STATUS_DIVERGED, STATUS_OK
from fit3dmm.fitting.objective import Objective
from fit3dmm.fitting.params import COEFFICIENTS, FitParameters
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.fitting.rigid import pose_from_landmarks
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.losses.landmark import LandmarkLoss
from fit3dmm.models.face_model import FaceModel
from fit3dmm.render.camera import PerspectiveCamera, matrix_to_euler, transform_points
from fit3dmm.types.observation import Observation
from fit3dmm.types.result import FitResult

Progress = Callable[[int, int, float], None]
"""``progress(step, total_steps, loss)`` after every iteration."""


@dataclass
class Refinement:
    """What a refinement did: total loss per iteration, faces whose loss became non-finite (B,), seconds."""

    history: list[Tensor] = field(default_factory=list)
    diverged: Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)


class FitProblem:
    """Fit ``model`` to ``observation``: the crop camera, the fitted region and the stages.

    Args:
        model: the full face model (fitting uses its face region; results hold every vertex).
        observation: B faces with ``landmarks68`` (the rigid stage uses them); moved to the model's device.
        schedule: iteration counts and step sizes.
        progress: called as ``progress(step, total_steps, loss)``.
    """

    def __init__(self, model: FaceModel, observation: Observation, schedule: Schedule | None = None,
                 progress: Progress | None = None) -> None:
        if observation.landmarks68 is None:
            raise ValueError("fitting needs landmarks68 in the observation (the rigid stage uses them)")
        self.model = model
        self.schedule = schedule or Schedule()
        self.progress = progress
        self.device = model.mean.device
        self.observation = observation.to(self.device)
        self.region = model.region()
        self.camera = PerspectiveCamera.for_crop(self.observation.size, self.observation.batch_size,
                                                 device=self.device)
        self.timings: dict[str, float] = {}
        self._step = 0

    @property
    def total_steps(self) -> int:
        return self.schedule.rigid_iterations + self.schedule.iterations

    def objective(self, weights: Mapping[str, float]) -> Objective:
        """The :class:`Objective` of ``weights`` for this problem, checked against the observation."""
        objective = Objective(weights, self.region, self.schedule.loss_options)
        objective.check(self.observation)
        return objective

    # ----------------------------------------------------------------------------------------- stages
    def start(self, init: Mapping[str, Tensor] | None = None, *, photometric: bool = False) -> FitParameters:
        """The starting coefficients: the mean face at the PnP pose of the 68 landmarks, or ``init``
        (coefficients by name, e.g. a regressor's prediction; a given pose replaces the PnP one, the identity
        is zero-padded or cut to the fitted modes, albedo and lighting are used only by a photometric fit)."""
        torch.manual_seed(self.schedule.seed)
        params = FitParameters(self.region, self.observation.batch_size, num_identity=self.schedule.num_identity,
                               photometric=photometric).to(self.device)
        if init is None or not {"rotation", "translation"} <= set(init):
            rot, trans = pose_from_landmarks(self.region.mean[self.region.landmarks68], self.observation.landmarks68,
                                             self.camera)
            with torch.no_grad():
                params.rotation.copy_(rot)
                params.translation.copy_(trans)
        if init is not None:
            unknown = set(init) - set(COEFFICIENTS)
            if unknown:
                raise ValueError(f"unknown initial coefficients {sorted(unknown)}")
            values = {k: v.to(self.device) for k, v in init.items() if getattr(params, k) is not None}
            if "identity" in values:  # zero-padded or cut to the fitted modes
                k = params.identity.shape[1]
                identity = values["identity"][:, :k]
                values["identity"] = torch.cat([identity, identity.new_zeros(identity.shape[0], k - identity.shape[1])],
                                               dim=1)
            params.load(values)
            params.clamp_()
        return params

    def rigid(self, params: FitParameters) -> None:
        """Adam on rotation and translation against the 68 landmarks (``schedule.rigid_iterations``)."""
        start = time.perf_counter()
        schedule, obs = self.schedule, self.observation
        builder = PredictionBuilder(self.region, self.camera, obs, visibility_every=schedule.visibility_every,
                                    use_visibility=False)
        landmarks = LandmarkLoss()
        optim = torch.optim.Adam([
            {"params": [params.rotation], "lr": schedule.lr_rotation},
            {"params": [params.translation], "lr": schedule.lr_translation},
        ])
        for _ in range(schedule.rigid_iterations):
            optim.zero_grad(set_to_none=True)
            total = landmarks(builder(params), obs)
            total.sum().backward()
            optim.step()
            self._report(total)
        self.timings["rigid"] = self.timings.get("rigid", 0.0) + time.perf_counter() - start

    def refine(self, params: FitParameters, objective: Objective) -> Refinement:
        """Adam on every coefficient with ``objective`` (``schedule.iterations``), in place.

        Faces whose loss becomes non-finite stop moving and are marked diverged; every face ends at its best
        iterate (lowest total loss).
        """
        log = Refinement()
        start = time.perf_counter()
        obs, schedule = self.observation, self.schedule
        objective.prepare(obs)
        log.timings["prepare"] = time.perf_counter() - start
        start = time.perf_counter()
        builder = self.builder(objective)
        groups = [
            {"params": [params.rotation], "lr": schedule.lr_rotation},
            {"params": [params.translation], "lr": schedule.lr_translation},
        ]
        if schedule.fit_shape:
            groups.append({"params": [params.identity, params.expression], "lr": schedule.lr})
        extra = [p for p in (params.albedo, params.lighting) if p is not None]
        if extra:
            groups.append({"params": extra, "lr": schedule.lr})
        optim = torch.optim.Adam(groups)
        batch = obs.batch_size
        best_total = torch.full((batch,), float("inf"), device=self.device)
        best = params.as_dict()
        diverged = torch.zeros(batch, dtype=torch.bool, device=self.device)
        for _ in range(schedule.iterations):
            optim.zero_grad(set_to_none=True)
            total, _ = objective(builder(params, render_image=objective.renders_image), obs)
            finite = torch.isfinite(total)
            improved = finite & (total.detach() < best_total)
            if improved.any():
                current = params.as_dict()
                for name, value in current.items():
                    best[name][improved] = value[improved]
                best_total = torch.where(improved, total.detach(), best_total)
            diverged |= ~finite
            log.history.append(total.detach())
            torch.where(finite, total, torch.zeros_like(total)).sum().backward()
            for group in optim.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad[diverged] = 0.0
            optim.step()
            params.clamp_()
            self._report(total)
        if schedule.iterations > 0:  # the last step may have moved away from the best iterate
            params.load(best, rows=torch.isfinite(best_total))
        log.diverged = diverged
        log.timings["fit"] = time.perf_counter() - start
        return log

    @torch.no_grad()
    def result(self, params: FitParameters, objective: Objective, refinement: Refinement | None = None) -> FitResult:
        """The :class:`FitResult` of ``params``: full-model geometry, pose, final unweighted loss values (and
        the history, divergences and timings of ``refinement``)."""
        log = refinement or Refinement()
        model, obs = self.model, self.observation
        builder = self.builder(objective)
        pred = builder(params)
        builder.visibility(pred.points2d, pred.depth, pred.vertices_cam, force=True)
        pred = builder(params)
        final = {name: loss(pred, obs).detach() for name, loss in objective.losses.items()}
        full = model(params.identity, params.expression, params.albedo).vertices
        rotation = params.rotation_matrix()
        verts_cam = transform_points(full, rotation, params.translation)
        pix, _ = self.camera.project(verts_cam)
        lmk_cam = transform_points(full[:, model.landmarks68], rotation, params.translation)
        diverged = log.diverged if log.diverged is not None else torch.zeros(obs.batch_size, dtype=torch.bool)
        return FitResult(
            coefficients=params.as_dict(),
            vertices=full,
            triangles=model.triangles,
            face_triangles=model.face_triangles(),
            vertices_cam=verts_cam,
            vertices_photo=obs.crop_points_to_photo(pix),
            rotation=rotation,
            pose_deg=matrix_to_euler(rotation),
            camera=self.camera,
            observation=obs,
            landmarks68_photo=obs.crop_points_to_photo(pred.landmarks68),
            landmarks68_cam=lmk_cam,
            losses=final,
            weights=dict(objective.weights),
            history=torch.stack(log.history) if log.history else None,
            timings={**self.timings, **log.timings},
            expression_names=list(model.expression_names),
            model_info=model.describe(),
            status=[STATUS_DIVERGED if d else STATUS_OK for d in diverged.tolist()],
            retried=[False] * obs.batch_size,
        )

    # ---------------------------------------------------------------------------------------- helpers
    def builder(self, objective: Objective) -> PredictionBuilder:
        """A prediction builder for ``objective`` (vertex visibility only when a term uses parts)."""
        return PredictionBuilder(self.region, self.camera, self.observation,
                                 visibility_every=self.schedule.visibility_every, use_visibility=objective.uses_parts)

    def _report(self, total: Tensor) -> None:
        self._step += 1
        if self.progress is not None:
            self.progress(self._step, self.total_steps, float(total.detach().mean()))
