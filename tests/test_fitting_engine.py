"""The fitting engine on the tiny hand-built model (fast, no detector, no shared data): divergence masking,
best-iterate restore and the retry, ``init=``, the stages, refusals of what the losses need, and the result
type's batch operations."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch

from fit3dmm.api import Pipeline, resolve_device
from fit3dmm.fitting.engine import fit_observation
from fit3dmm.fitting.objective import Objective
from fit3dmm.fitting.problem import FitProblem
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.losses.base import Loss
from fit3dmm.losses.registry import LOSS_CLASSES
from fit3dmm.models.assets import FaceModelAssets
from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.result import FitResult

SCHEDULE = Schedule(rigid_iterations=3, lm_iterations=4, iterations=6, tolerance=0.0)
WEIGHTS = {"lmk": 1.6e-3, "reg": 3e-4}


def tiny_observation(model, batch: int = 2, size: int = 64) -> Observation:
    """The tiny pyramid's 68 landmarks (5 distinct points) seen from the front, a little apart per item."""
    xy = model.mean[model.landmarks68, :2].double()
    items = [xy * torch.tensor([3.0, -3.0]).double() + torch.tensor([32.0 + b, 32.0 - b]) for b in range(batch)]
    lmk = torch.stack(items).float()
    return Observation(image=torch.rand(batch, 3, size, size), crop_to_photo=torch.eye(3, dtype=torch.float64)
                       .repeat(batch, 1, 1), photo_size=torch.full((batch, 2), float(size)), landmarks68=lmk,
                       names=[f"item{b}" for b in range(batch)])


class Exploding(Loss):
    """0.1·Σ identity² that turns NaN for item 0 from its ``after``-th call on, in the first ``fits`` fits only
    (counted per first call of a fit: the rigid stage never calls it)."""

    name = "exploding"
    calls: ClassVar[list[int]] = []  # calls per fit, shared by the instances of one test

    def __init__(self, after: int = 3, fits: int = 1) -> None:
        super().__init__()
        self.after, self.fits, self.count = after, fits, 0
        Exploding.calls.append(0)

    def forward(self, prediction, observation):
        self.count += 1
        Exploding.calls[-1] = self.count
        value = 0.1 * prediction.coefficients["identity"].pow(2).sum(-1)
        if self.count >= self.after and len(Exploding.calls) <= self.fits:
            value = value.clone()
            value[0] = float("nan")
        return value


@pytest.fixture
def exploding(monkeypatch):
    monkeypatch.setitem(LOSS_CLASSES, "exploding", f"{__name__}:Exploding")
    Exploding.calls = []
    return Exploding


def test_a_diverging_face_is_masked_restored_and_retried_with_halved_steps(tiny_model, exploding, monkeypatch):
    seen = []
    real = FitProblem.__init__

    def record(self, model, observation, schedule=None, progress=None):
        seen.append((observation.names, schedule))
        real(self, model, observation, schedule, progress)

    monkeypatch.setattr(FitProblem, "__init__", record)
    obs = tiny_observation(tiny_model)
    result = fit_observation(tiny_model, obs, {**WEIGHTS, "exploding": 1.0}, SCHEDULE)
    # item 0 diverged in the first fit and was fitted again, alone, with every step halved; item 1 was not
    assert [names for names, _ in seen] == [["item0", "item1"], ["item0"]]
    first, second = seen[0][1], seen[1][1]
    assert (second.lr, second.lr_rotation, second.lr_translation) == (first.lr / 2, first.lr_rotation / 2,
                                                                       first.lr_translation / 2)
    assert result.status == ["ok", "ok"] and result.retried == [True, False]
    assert result.observation.names == ["item0", "item1"]
    assert all(torch.isfinite(v).all() for v in result.coefficients.values())


def test_a_face_that_diverges_twice_keeps_its_best_finite_iterate(tiny_model, exploding):
    obs = tiny_observation(tiny_model)
    weights = {**WEIGHTS, "exploding": 1.0}
    twice = Schedule(rigid_iterations=3, iterations=6, tolerance=0.0, loss_options={"exploding": {"fits": 2}})
    result = fit_observation(tiny_model, obs, weights, twice)
    assert result.status == ["diverged", "ok"] and result.retried == [True, False]
    assert all(torch.isfinite(v).all() for v in result.coefficients.values())
    # without the retry: one fit, the same statuses
    Exploding.calls = []
    once = fit_observation(tiny_model, obs, weights, twice, retry=False)
    assert once.status == ["diverged", "ok"] and once.retried == [False, False] and len(Exploding.calls) == 1
    # the other item was unaffected: a finite total at every iteration
    assert torch.isfinite(once.history[:, 1]).all() and once.history.shape == (twice.iterations, 2)
    assert not torch.isfinite(once.history[:, 0]).all()


@pytest.mark.parametrize("solver", ["adam", "gn"])
def test_the_best_iterate_is_kept(tiny_model, exploding, solver):
    """Adam with a huge step overshoots; whatever the solver, the fit ends at the iterate of lowest total loss."""
    obs = tiny_observation(tiny_model, batch=1)
    schedule = Schedule(rigid_iterations=0, lm_iterations=0, iterations=8, lr=5.0, solver=solver, tolerance=0.0,
                        strides=(1,), loss_options={"exploding": {"after": 10**9}})
    problem = FitProblem(tiny_model, obs, schedule)
    objective = problem.objective({"lmk": 1.0, "reg": 1.0, "exploding": 1.0})
    params = problem.start()
    history = torch.stack(problem.refine(params, objective).history)[:, 0]
    if solver == "adam":
        assert int(history.argmin()) < len(history) - 1  # the last iterate was not the best: the test means something
    else:  # the line search only accepts steps that lower the loss
        assert (history[1:] <= history[:-1] + 1e-6).all()
    total, _ = objective(problem.builder(objective)(params), problem.observation)
    assert float(total[0].detach()) <= float(history.min()) * (1 + 1e-6)


def test_a_batch_refines_each_face_as_if_it_were_alone(tiny_model, exploding):
    """Gauss–Newton with early stopping: a face that is done stops moving (and its history turns NaN) while the
    others go on, so every face of a batch ends where its fit alone ends, after as many iterations."""
    obs = tiny_observation(tiny_model, batch=3)
    obs.landmarks68 += torch.tensor([[[2.0, 1.0]], [[5.0, -3.0]], [[9.0, 6.0]]])  # further off: more steps
    schedule = Schedule(rigid_iterations=0, lm_iterations=0, iterations=30, tolerance=1e-3, strides=(1,),
                        loss_options={"exploding": {"after": 10**9}})
    weights = {"lmk": 1.0, "reg": 1.0, "exploding": 300.0}  # stronger than the preconditioner knows: small steps
    batch = fit_observation(tiny_model, obs, weights, schedule)
    alone = [fit_observation(tiny_model, obs.select(b), weights, schedule) for b in range(3)]
    ran = [batch.iterations(b) for b in range(3)]
    assert ran == [one.iterations(0) for one in alone]
    assert len(set(ran)) > 1 and max(ran) < schedule.iterations  # they stopped early, not together
    for b, one in enumerate(alone):
        for name, value in one.coefficients.items():
            torch.testing.assert_close(batch.coefficients[name][b: b + 1], value, rtol=1e-5, atol=1e-6)


def test_init_starts_the_fit_and_pads_the_identity(tiny_model):
    obs = tiny_observation(tiny_model, batch=1)
    init = {"identity": torch.tensor([[0.4]]), "expression": torch.tensor([[0.2, 0.3]]),
            "rotation": torch.tensor([[0.0, 0.1, 0.0]]), "translation": torch.tensor([[1.0, 2.0, -100.0]])}
    result = fit_observation(tiny_model, obs, WEIGHTS, Schedule.no_iterations(), init=init)
    assert result.coefficients["identity"].tolist() == [[pytest.approx(0.4), 0.0]]  # padded to the model's 2
    for name in ("expression", "rotation", "translation"):
        torch.testing.assert_close(result.coefficients[name], init[name])
    # a callable start is asked for the observation it starts
    asked = []

    def start(observation):
        asked.append(observation.names)
        return init

    again = fit_observation(tiny_model, obs, WEIGHTS, Schedule.no_iterations(), init=start)
    assert asked == [obs.names] and torch.equal(again.coefficients["translation"], result.coefficients["translation"])
    with pytest.raises(ValueError, match="unknown initial coefficients"):
        fit_observation(tiny_model, obs, WEIGHTS, SCHEDULE, init={"shape": torch.zeros(1, 2)})


@pytest.mark.parametrize("weights", [WEIGHTS, {**WEIGHTS, "exploding": 1.0}])
def test_stages_run_alone_give_the_whole_fit(tiny_model, exploding, weights):
    obs = tiny_observation(tiny_model)
    schedule = dataclasses.replace(SCHEDULE, loss_options={"exploding": {"after": 10**9}})
    whole = fit_observation(tiny_model, obs, weights, schedule)
    problem = FitProblem(tiny_model, obs, schedule)
    shared = problem.start()
    problem.rigid(shared)
    objective = problem.objective(weights)
    params = problem.start(shared.as_dict())  # a copy, as compare makes one per configuration
    problem.landmarks(params, objective)
    staged = problem.result(params, objective, problem.refine(params, objective))
    for name, value in whole.coefficients.items():
        torch.testing.assert_close(staged.coefficients[name], value, rtol=0, atol=0)
    assert shared.identity.abs().sum() == 0  # refining the copy left the shared start alone


def test_objective_refuses_what_its_terms_lack(tiny_model):
    obs = tiny_observation(tiny_model, batch=1)
    problem = FitProblem(tiny_model, obs, SCHEDULE)
    with pytest.raises(ValueError, match="'prdl' needs target point sets"):
        problem.objective({"prdl": 1.0})
    with pytest.raises(ValueError, match="'softras' needs part masks"):
        problem.objective({"softras": 1.0})
    nose = PointSet(torch.zeros(1, 3, 2), torch.ones(1, 3, dtype=torch.bool))
    with_points = dataclasses.replace(obs, points={"nose": nose})
    with pytest.raises(ValueError, match=r"needs part annotations on the model \(tiny\)"):
        Objective({"prdl": 1.0}, tiny_model).check(with_points)
    tiny_model.assets = FaceModelAssets(part_labels=torch.tensor([0, 1, 6, 6, 7]).numpy())
    Objective({"prdl": 1.0}, tiny_model).check(with_points)  # annotated: accepted
    no_landmarks = dataclasses.replace(obs, landmarks68=None)
    with pytest.raises(ValueError, match="'lmk' needs landmarks"):
        Objective({"lmk": 1.0}, tiny_model).check(no_landmarks)
    with pytest.raises(ValueError, match="fitting needs landmarks68"):
        FitProblem(tiny_model, no_landmarks)


def test_photometric_term_needs_an_albedo(tiny_model):
    bare = tiny_model.region()
    bare.has_albedo = False
    with pytest.raises(ValueError, match="needs a model with an albedo"):
        Objective({"pho": 1.0}, bare).check(tiny_observation(tiny_model, batch=1))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"iterations": -1}, "iteration counts"), ({"rigid_iterations": -2}, "iteration counts"),
    ({"lr": 0.0}, "learning rates"), ({"lr_translation": -1.0}, "learning rates"),
])
def test_schedule_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)


@pytest.mark.parametrize("device", ["gpu", "tpu", "cuda:x", "nonsense"])
def test_unknown_devices_are_refused_in_one_line(device):
    with pytest.raises(ValueError, match="unknown device") as info:
        resolve_device(device)
    assert "\n" not in str(info.value)


def test_pipeline_refuses_bad_losses_before_loading_a_model(tiny_model):
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        Pipeline.create(model="/no/such/model", losses="lmk,nope")
    with pytest.raises(ValueError, match="must be a finite number"):
        Pipeline.create(model=tiny_model, losses="lmk,reg", weights={"reg": -1.0})
    pipeline = Pipeline.create(model=tiny_model, losses="lmk,reg", device="cpu", annotate=False)
    assert not pipeline.observe_options.segment
    with pytest.raises(ValueError, match="none of the losses lmk, reg uses segmentation"):
        pipeline.check_labels("labels.png")


def test_select_take_and_stack_round_trip_every_field(tiny_model, exploding):
    obs = tiny_observation(tiny_model, batch=3)
    schedule = dataclasses.replace(SCHEDULE, loss_options={"exploding": {"after": 10**9}})
    result = fit_observation(tiny_model, obs, {**WEIGHTS, "exploding": 1.0}, schedule)
    rows = [result.select(i) for i in range(3)]
    again = FitResult.stack([rows[2], rows[0]])
    direct = result.take([2, 0])
    for field in dataclasses.fields(FitResult):
        a, b = getattr(again, field.name), getattr(direct, field.name)
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=field.name)
        elif isinstance(a, dict) and a and isinstance(next(iter(a.values())), torch.Tensor):
            assert a.keys() == b.keys()
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        elif isinstance(a, Observation):
            assert a.names == b.names == ["item2", "item0"]
            torch.testing.assert_close(a.landmarks68, b.landmarks68, rtol=0, atol=0)
        elif field.name == "camera":
            torch.testing.assert_close(a.focal, b.focal, rtol=0, atol=0)
        else:
            assert a == b, field.name
    one = rows[1]
    assert one.batch_size == 1 and one.history.shape == (SCHEDULE.iterations, 1)
    torch.testing.assert_close(one.vertices[0], result.vertices[1], rtol=0, atol=0)
    assert one.status == [result.status[1]] and one.observation.names == ["item1"]
    with pytest.raises(IndexError):
        result.select(3)
