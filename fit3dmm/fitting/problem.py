"""A fitting problem and its named stages: start, rigid, landmarks, refine, result.

* start: PnP of the mean face's landmarks onto the detected ones (or a given start, e.g. a regressor's);
* rigid: Levenberg–Marquardt on the pose alone against the landmarks (:mod:`fit3dmm.fitting.lm`);
* landmarks: Levenberg–Marquardt on pose, identity and expression against the objective's landmark and prior
  terms (the whole fit when those are all it has);
* refine: the whole objective (PRDL and the other geometric losses on top), coarse to fine in PRDL's anchor
  grid (:mod:`fit3dmm.fitting.refine`);
* result: the :class:`~fit3dmm.types.result.FitResult`.

:func:`~fit3dmm.fitting.engine.fit_observation` runs them in order; ``compare`` runs the start and the rigid
stage once and then the rest per configuration; tracking starts each frame from the previous one.  Batched
over the B faces of one :class:`~fit3dmm.types.observation.Observation`; the device follows the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from fit3dmm.defaults import STATUS_DIVERGED, STATUS_OK
from fit3dmm.fitting.landmarks import DENSE, LandmarkBasis, LandmarkSupport
from fit3dmm.fitting.lm import LandmarkLeastSquares, LandmarkPrior, PoseShape, TemporalPrior
from fit3dmm.fitting.objective import Objective
from fit3dmm.fitting.params import COEFFICIENTS, FitParameters
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.fitting.refine import Refinement, adam, evaluator, gauss_newton, timed, with_temporal
from fit3dmm.fitting.rigid import RIGID_LANDMARKS, pose_from_landmarks
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.losses.landmark import LandmarkLoss
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.detect import MEDIAPIPE_FACE_OVAL
from fit3dmm.render.camera import PerspectiveCamera, matrix_to_axis_angle, matrix_to_euler, transform_points
from fit3dmm.types.observation import Observation
from fit3dmm.types.result import FitResult

Progress = Callable[[int, int, float], None]
"""``progress(step, total_steps, loss)`` after every iteration."""
LEAST_SQUARES_TERMS = frozenset({"lmk", "reg"})
"""The terms the landmark stage solves exactly; the others are the refinement's."""


class FitProblem:
    """Fit ``model`` to ``observation``: the crop camera, the fitted region, its landmarks and the stages.

    Args:
        model: the full face model (fitting uses its face region; results hold every vertex).
        observation: B faces with detected landmarks; moved to the model's device.
        schedule: iteration counts and solver settings.
        progress: called as ``progress(step, total_steps, loss)``.
        parts: the model's fitted region and landmark basis from another problem of the same model
            (:meth:`parts`), so that tracking does not rebuild them every frame.
    """

    def __init__(self, model: FaceModel, observation: Observation, schedule: Schedule | None = None,
                 progress: Progress | None = None, parts: tuple[FaceModel, LandmarkBasis] | None = None) -> None:
        if observation.landmarks68 is None:
            raise ValueError("fitting needs landmarks68 in the observation (the rigid stage uses them)")
        self.model = model
        self.schedule = schedule or Schedule()
        self.progress = progress
        self.device = model.mean.device
        self.observation = observation.to(self.device)
        self.region = model.region() if parts is None else parts[0]
        self.camera = PerspectiveCamera.for_crop(self.observation.size, self.observation.batch_size,
                                                 device=self.device)
        self.basis = LandmarkBasis(self.region, LandmarkSupport.of(self.region)) if parts is None else parts[1]
        self.support = self.basis.support
        if self.support.target == DENSE and self.observation.landmarks is None:
            raise ValueError("fitting this model needs the observation's dense landmarks")
        self.targets = self.observation.landmarks if self.support.target == DENSE else self.observation.landmarks68
        self.timings: dict[str, float] = {}
        self.diverged = torch.zeros(self.observation.batch_size, dtype=torch.bool, device=self.device)
        """Faces whose least-squares cost became non-finite (the refinement adds its own)."""
        self._step = 0

    @property
    def parts(self) -> tuple[FaceModel, LandmarkBasis]:
        """The fitted region and the landmark basis, to hand to the next problem of the same model."""
        return self.region, self.basis

    @property
    def total_steps(self) -> int:
        s = self.schedule
        return s.rigid_iterations + s.lm_iterations + s.iterations

    def objective(self, weights: Mapping[str, float]) -> Objective:
        """The :class:`Objective` of ``weights`` for this problem, checked against the observation."""
        objective = Objective(weights, self.region, self.schedule.loss_options)
        objective.check(self.observation)
        return objective

    # ----------------------------------------------------------------------------------------- stages
    def start(self, init: Mapping[str, Tensor] | None = None, *, photometric: bool = False) -> FitParameters:
        """The starting coefficients: the mean face at the PnP pose of the landmarks, or ``init``
        (coefficients by name, e.g. a regressor's prediction; a given pose replaces the PnP one, the identity
        is zero-padded or cut to the fitted modes, albedo and lighting are used only by a photometric fit)."""
        torch.manual_seed(self.schedule.seed)
        params = FitParameters(self.region, self.observation.batch_size, num_identity=self.schedule.num_identity,
                               photometric=photometric).to(self.device)
        if init is None or not {"rotation", "translation"} <= set(init):
            subset = np.setdiff1d(np.arange(self.support.num_landmarks), MEDIAPIPE_FACE_OVAL) \
                if self.support.target == DENSE else RIGID_LANDMARKS
            mean_points = self.basis.mean[: self.support.num_landmarks]
            rot, trans = pose_from_landmarks(mean_points, self.targets, self.camera, subset=subset)
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

    def least_squares(self, weights: Mapping[str, float], objective: Objective | None = None) -> LandmarkLeastSquares:
        """The landmark stage's problem for the terms ``weights`` (``lmk`` and ``reg``; the prior's scales are
        those of ``objective``'s regulariser when it has one)."""
        reg = None if objective is None or "reg" not in objective.losses else objective.losses["reg"]
        model = self.region
        prior = LandmarkPrior(
            landmarks=weights.get("lmk", 0.0), prior=weights.get("reg", 0.0),
            identity_std=model.identity_std if reg is None or reg.stds["identity"] is None else reg.stds["identity"],
            expression_std=model.expression_std if reg is None or reg.stds["expression"] is None
            else reg.stds["expression"],
            expression_weight=1.0 if reg is None else reg.weights["expression"],
        )
        valid = torch.ones(self.targets.shape[:2], dtype=torch.bool, device=self.device)
        return LandmarkLeastSquares(self.basis, self.camera, self.targets, valid, prior, self.observation.size,
                                    model.expression_range)

    def rigid(self, params: FitParameters) -> None:
        """Levenberg–Marquardt on rotation and translation against the landmarks (``rigid_iterations``)."""
        start = time.perf_counter()
        ls = self.least_squares({"lmk": LandmarkLoss.default_weight})
        state, cost = ls.solve(self.state(params), self.schedule.rigid_iterations, self._free(pose_only=True))
        self.diverged |= ~torch.isfinite(cost)
        self._write(params, state)
        self._advance(self.schedule.rigid_iterations)
        timed(self.timings, "rigid", start)

    def landmarks(self, params: FitParameters, objective: Objective) -> None:
        """Levenberg–Marquardt on pose, identity and expression against the objective's ``lmk`` and ``reg``
        (``lm_iterations``); nothing when the objective has no landmark term."""
        start = time.perf_counter()
        if "lmk" in objective.weights and self.schedule.lm_iterations > 0:
            ls = self.least_squares(objective.weights, objective)
            state, cost = ls.solve(self.state(params), self.schedule.lm_iterations,
                                   self._free(pose_only=not self.schedule.fit_shape))
            self.diverged |= ~torch.isfinite(cost)
            self._write(params, state)
        self._advance(self.schedule.lm_iterations)
        timed(self.timings, "landmarks", start)

    def follow(self, params: FitParameters, objective: Objective, temporal: TemporalPrior | None,
               iterations: int) -> None:
        """Tracking: Levenberg–Marquardt on pose and expression (identity held) against the objective's
        ``lmk`` and ``reg`` and the pull of ``temporal`` towards the previous frame (:mod:`fit3dmm.fitting.lm`)."""
        start = time.perf_counter()
        ls = self.least_squares(objective.weights, objective)
        ls.temporal = temporal
        state = self.state(params)
        free = self._free(pose_only=False)
        free[6: 6 + state.identity.shape[1]] = False
        state, cost = ls.solve(state, iterations, free)
        self.diverged |= ~torch.isfinite(cost)
        self._write(params, state)
        timed(self.timings, "follow", start)

    def refine(self, params: FitParameters, objective: Objective,
               temporal: TemporalPrior | None = None, hold_identity: bool = False) -> Refinement:
        """The whole objective, in place, when it has terms beyond ``lmk`` and ``reg`` (``iterations``, one
        phase per PRDL stride, the schedule's solver), plus the pull of ``temporal`` and with the identity held
        (``hold_identity``) when tracking.  Faces whose
        loss becomes non-finite stop moving and are marked diverged; every face ends at its best iterate."""
        log = Refinement()
        s = self.schedule
        if set(objective.weights) <= LEAST_SQUARES_TERMS or s.iterations == 0:
            log.diverged = torch.zeros(self.observation.batch_size, dtype=torch.bool, device=self.device)
            self._advance(s.iterations)
            return log
        start = time.perf_counter()
        metric_terms = {"lmk": objective.weights.get("lmk", LandmarkLoss.default_weight),
                        "reg": objective.weights.get("reg", 0.0)}
        ls = self.least_squares(metric_terms, objective)
        ls.temporal = temporal
        state = self.state(params)
        extras = {k: getattr(params, k).detach().clone() for k in ("albedo", "lighting")
                  if getattr(params, k) is not None}
        keep = self._free(pose_only=not s.fit_shape, refine=True)
        if hold_identity:
            keep[6: 6 + state.identity.shape[1]] = False
        solver = "adam" if objective.renders_image else s.solver
        metric = None
        if solver == "gn":
            jac = ls.jacobian(state)
            metric = jac.transpose(1, 2) @ jac
        timed(log.timings, "prepare", start)
        builder = self.builder(objective)
        for stride, iterations in s.phases():
            if iterations == 0:
                continue
            start = time.perf_counter()
            objective.set_stride(stride)
            objective.prepare(self.observation)
            evaluate = evaluator(objective, builder)
            if temporal is not None:
                evaluate = with_temporal(evaluate, ls)
            if solver == "gn":
                state = gauss_newton(state, evaluate, metric, keep, ls, iterations, s.tolerance, log, self._report)
            else:
                state, extras = adam(state, extras, evaluate, keep, ls, (s.lr_rotation, s.lr_translation, s.lr),
                                     iterations, s.tolerance, log, self._report)
            timed(log.timings, "refine", start)
        self._write(params, state, extras)
        return log

    @torch.no_grad()
    def result(self, params: FitParameters, objective: Objective, refinement: Refinement | None = None) -> FitResult:
        """The :class:`FitResult` of ``params``: full-model geometry, pose, final unweighted loss values (and
        the history, divergences and timings of ``refinement``)."""
        log = refinement or Refinement()
        model, obs = self.model, self.observation
        objective.set_stride(self.schedule.strides[-1])
        objective.prepare(obs)
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
        diverged = self.diverged if log.diverged is None else self.diverged | log.diverged.to(self.device)
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

    def state(self, params: FitParameters) -> PoseShape:
        """The least-squares unknowns of ``params`` (float64 pose, identity, expression)."""
        return PoseShape(params.rotation_matrix().detach().double(), params.translation.detach().double(),
                         params.identity.detach().double(), params.expression.detach().double())

    @torch.no_grad()
    def _write(self, params: FitParameters, state: PoseShape, extras: Mapping[str, Tensor] | None = None) -> None:
        dtype = params.translation.dtype
        params.rotation.copy_(matrix_to_axis_angle(state.rotation).to(dtype))
        params.translation.copy_(state.translation.to(dtype))
        params.identity.copy_(state.identity.to(dtype))
        params.expression.copy_(state.expression.to(dtype))
        for name, value in (extras or {}).items():
            getattr(params, name).copy_(value)

    def _free(self, pose_only: bool, refine: bool = False) -> Tensor:
        """(N,) bool: the unknowns (rotation increment, translation, identity, expression) a stage moves."""
        k = self.region.num_identity if self.schedule.num_identity is None else \
            min(self.schedule.num_identity, self.region.num_identity)
        names = self.region.expression_names
        free = torch.ones(6 + k + len(names), dtype=torch.bool, device=self.device)
        if pose_only:
            free[6:] = False
        elif refine and self.schedule.freeze:
            frozen = [i for i, n in enumerate(names) if n.startswith(tuple(self.schedule.freeze))]
            free[6 + k + torch.as_tensor(frozen, dtype=torch.long)] = False
        return free

    def _advance(self, steps: int) -> None:
        self._step += steps

    def _report(self, total: Tensor) -> None:
        self._step += 1
        if self.progress is not None:
            self.progress(min(self._step, self.total_steps), self.total_steps, float(total.mean()))

