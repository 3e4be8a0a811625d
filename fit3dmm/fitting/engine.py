"""The whole fit: the stages of :class:`~fit3dmm.fitting.problem.FitProblem` in order, with one retry on a
safer schedule for the faces whose loss became non-finite (what every entry point runs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from fit3dmm.defaults import STATUS_OK
from fit3dmm.fitting.problem import FitProblem, Progress
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.models.face_model import FaceModel
from fit3dmm.types.observation import Observation
from fit3dmm.types.result import FitResult

Start = Callable[[Observation], dict[str, Tensor]]
"""Starting coefficients for the B faces of an observation (e.g. a trained regressor's prediction)."""


def fit_observation(
    model: FaceModel,
    observation: Observation,
    weights: Mapping[str, float],
    schedule: Schedule | None = None,
    progress: Progress | None = None,
    init: Mapping[str, Tensor] | Start | None = None,
    retry: bool = True,
) -> FitResult:
    """Fit ``model`` to ``observation`` with the losses ``weights`` ({name: λ}).

    Args:
        model: the full face model (fitting uses its face region; the result has every vertex).
        observation: B faces; must have ``landmarks68`` for the rigid stage.
        weights: selected losses and their weights (see :func:`fit3dmm.losses.registry.parse_losses`).
        schedule: defaults to :class:`Schedule`.
        progress: called as ``progress(step, total_steps, loss)``.
        init: starting coefficients by name (``identity``, ``expression``, ``rotation``, ``translation``, ...),
            or a :data:`Start` that gives them for the observation; a given pose replaces the PnP start.
        retry: fit the faces whose loss became non-finite once more with :meth:`Schedule.safer`.
    Returns:
        :class:`FitResult`; faces whose loss became non-finite (also after the retry) keep their best iterate
        and get status ``"diverged"``; ``retried`` marks the faces fitted twice.
    """
    schedule = schedule or Schedule()
    result = _fit_once(model, observation, weights, schedule, progress, init)
    again = [i for i, status in enumerate(result.status) if status != STATUS_OK]
    if not retry or not again:
        return result
    second = _fit_once(model, observation.select(again[0]) if len(again) == 1 else Observation.stack(
        [observation.select(i) for i in again]), weights, schedule.safer(), None, init)
    second.retried = [True] * len(again)
    rows = [result.take([i]) if i not in again else second.take([again.index(i)]) for i in range(len(result.status))]
    return FitResult.stack(rows)


def _fit_once(model: FaceModel, observation: Observation, weights: Mapping[str, float], schedule: Schedule,
              progress: Progress | None, init: Mapping[str, Tensor] | Start | None) -> FitResult:
    problem = FitProblem(model, observation, schedule, progress)
    objective = problem.objective(weights)
    if callable(init):
        init = init(problem.observation)
    params = problem.start(init, photometric="pho" in objective.weights)
    problem.rigid(params)
    problem.landmarks(params, objective)
    refinement = problem.refine(params, objective)
    return problem.result(params, objective, refinement)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its type name when empty)."""
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__
