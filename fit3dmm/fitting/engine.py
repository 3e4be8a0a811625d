"""The fitting engine: rigid stage (PnP + landmarks), then Adam on all coefficients with any set of losses.

Batched over the B faces of one :class:`~fit3dmm.observe.observation.Observation`; device follows the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fit3dmm.fitting.params import FitParameters
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.fitting.result import FitResult
from fit3dmm.fitting.rigid import pose_from_landmarks
from fit3dmm.losses.base import Loss
from fit3dmm.losses.landmark import LandmarkLoss
from fit3dmm.losses.registry import loss_class
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.observation import Observation
from fit3dmm.render.camera import PerspectiveCamera, matrix_to_euler, transform_points


@dataclass
class FitConfig:
    """Schedule and optimiser settings.

    ``rigid_iterations`` of Adam on the pose against the landmarks (after the PnP initialisation), then
    ``iterations`` on all coefficients with the selected losses.  Learning rates per group: coefficients
    (unit-variance scale), rotation (radians), translation (cm).  ``num_identity`` limits the identity
    modes.  ``fit_shape=False`` keeps identity and expression at zero (pose only).
    """

    rigid_iterations: int = 60
    iterations: int = 200
    lr: float = 0.03
    lr_rotation: float = 0.01
    lr_translation: float = 0.3
    num_identity: int | None = None
    fit_shape: bool = True
    visibility_every: int = 10
    loss_options: dict[str, dict[str, object]] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rigid_iterations < 0 or self.iterations < 0:
            raise ValueError("iteration counts must be ≥ 0")
        if not (self.lr > 0 and self.lr_rotation > 0 and self.lr_translation > 0):
            raise ValueError("learning rates must be > 0")


def build_losses(weights: dict[str, float], model: FaceModel, options: dict[str, dict[str, object]]
                 ) -> dict[str, Loss]:
    """Instantiate the selected losses (the regulariser gets the model's prior standard deviations)."""
    out: dict[str, Loss] = {}
    for name in weights:
        kwargs = dict(options.get(name, {}))
        if name == "reg":
            kwargs.setdefault("identity_std", model.identity_std)
            kwargs.setdefault("expression_std", model.expression_std)
        out[name] = loss_class(name)(**kwargs)
    return out


def _check_needs(losses: dict[str, Loss], observation: Observation, model: FaceModel) -> None:
    for name, loss in losses.items():
        if "landmarks" in loss.needs and observation.landmarks68 is None:
            raise ValueError(f"loss {name!r} needs landmarks but the observation has none")
        if "masks" in loss.needs and observation.masks is None:
            raise ValueError(f"loss {name!r} needs part masks but the observation has none")
        if "points" in loss.needs and not observation.points:
            raise ValueError(f"loss {name!r} needs target point sets but the observation has none")
        if ("masks" in loss.needs or "points" in loss.needs) and not model.has_parts:
            raise ValueError(f"loss {name!r} needs part annotations on the model ({model.name}); "
                             "build them with `fit3dmm models annotate`")
        if "image" in loss.needs and not model.has_albedo:
            raise ValueError(f"loss {name!r} needs a model with an albedo; {model.name} has none")


def _total(losses: dict[str, Loss], weights: dict[str, float], pred, obs) -> tuple[Tensor, dict[str, Tensor]]:
    values = {name: loss(pred, obs) for name, loss in losses.items()}
    total = sum(weights[name] * v for name, v in values.items())
    return total, values


def fit_observation(
    model: FaceModel,
    observation: Observation,
    weights: dict[str, float],
    config: FitConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    init: dict[str, Tensor] | None = None,
) -> FitResult:
    """Fit ``model`` to ``observation`` with the losses ``weights`` ({name: λ}).

    Args:
        model: the full face model (fitting uses its face region; the result has every vertex).
        observation: B faces; must have ``landmarks68`` for the rigid stage.
        weights: selected losses and their weights (see :func:`fit3dmm.losses.registry.parse_losses`).
        config: schedule; defaults to :class:`FitConfig`.
        progress: called as ``progress(step, total_steps, loss)``.
        init: starting coefficients by name (``identity``, ``expression``, ``rotation``, ``translation``, ...;
            e.g. a regressor's prediction); given ``rotation`` and ``translation`` replace the PnP start.
    Returns:
        :class:`FitResult`; items whose loss became non-finite keep their best iterate and get
        status ``"diverged"``.
    """
    config = config or FitConfig()
    if observation.landmarks68 is None:
        raise ValueError("fitting needs landmarks68 in the observation (the rigid stage uses them)")
    torch.manual_seed(config.seed)
    device = model.mean.device
    obs = observation.to(device)
    region = model.region()
    batch, size = obs.batch_size, obs.size
    camera = PerspectiveCamera.for_crop(size, batch, device=device)
    losses = build_losses(weights, region, config.loss_options)
    _check_needs(losses, obs, region)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    params = FitParameters(region, batch, num_identity=config.num_identity,
                           photometric="pho" in losses).to(device)
    rot, trans = pose_from_landmarks(region.mean[region.landmarks68], obs.landmarks68, camera)
    with torch.no_grad():
        params.rotation.copy_(rot)
        params.translation.copy_(trans)
    if init is not None:
        unknown = set(init) - {name for name, _ in params.named_parameters()}
        if unknown:
            raise ValueError(f"unknown initial coefficients {sorted(unknown)}")
        params.load({k: v.to(device) for k, v in init.items()})
        params.project()
    uses_parts = any({"masks", "points"} & set(loss.needs) for loss in losses.values())
    builder = PredictionBuilder(region, camera, obs, visibility_every=config.visibility_every,
                                use_visibility=uses_parts)
    total_steps = config.rigid_iterations + config.iterations

    rigid_losses = {"lmk": LandmarkLoss()}
    rigid_weights = {"lmk": 1.0}
    optim = torch.optim.Adam([
        {"params": [params.rotation], "lr": config.lr_rotation},
        {"params": [params.translation], "lr": config.lr_translation},
    ])
    for step in range(config.rigid_iterations):
        optim.zero_grad(set_to_none=True)
        pred = builder(params)
        total, _ = _total(rigid_losses, rigid_weights, pred, obs)
        total.sum().backward()
        optim.step()
        if progress is not None:
            progress(step + 1, total_steps, float(total.detach().mean()))
    timings["rigid"] = time.perf_counter() - start

    start = time.perf_counter()
    for loss in losses.values():
        loss.prepare(obs)
    timings["prepare"] = time.perf_counter() - start

    start = time.perf_counter()
    groups = [
        {"params": [params.rotation], "lr": config.lr_rotation},
        {"params": [params.translation], "lr": config.lr_translation},
    ]
    if config.fit_shape:
        shape = [params.identity, params.expression]
        groups.append({"params": shape, "lr": config.lr})
    extra = [p for p in (params.albedo, params.lighting) if p is not None]
    if extra:
        groups.append({"params": extra, "lr": config.lr})
    optim = torch.optim.Adam(groups)
    history = []
    best_total = torch.full((batch,), float("inf"), device=device)
    best = params.as_dict()
    diverged = torch.zeros(batch, dtype=torch.bool, device=device)
    render_image = "pho" in losses
    for step in range(config.iterations):
        optim.zero_grad(set_to_none=True)
        pred = builder(params, render_image=render_image)
        total, _ = _total(losses, weights, pred, obs)
        finite = torch.isfinite(total)
        improved = finite & (total.detach() < best_total)
        if improved.any():
            current = params.as_dict()
            for name, value in current.items():
                best[name][improved] = value[improved]
            best_total = torch.where(improved, total.detach(), best_total)
        diverged |= ~finite
        history.append(total.detach())
        loss_sum = torch.where(finite, total, torch.zeros_like(total)).sum()
        loss_sum.backward()
        for group in optim.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad[diverged] = 0.0
        optim.step()
        params.project()
        if progress is not None:
            progress(config.rigid_iterations + step + 1, total_steps, float(total.detach().mean()))
    if config.iterations > 0:
        # the last step may have moved away from the best iterate; keep the best per face
        params.load(best, rows=torch.isfinite(best_total))
    timings["fit"] = time.perf_counter() - start

    return _make_result(model, region, params, builder, losses, weights, obs, camera, history, diverged,
                        timings)


@torch.no_grad()
def _make_result(model, region, params, builder, losses, weights, obs, camera, history, diverged,
                 timings) -> FitResult:
    pred = builder(params)
    builder.visibility(pred.points2d, pred.depth, pred.vertices_cam, force=True)
    pred = builder(params)
    final = {name: loss(pred, obs).detach() for name, loss in losses.items()}
    full = model(params.identity, params.expression, params.albedo).vertices
    rotation = params.rotation_matrix()
    verts_cam = transform_points(full, rotation, params.translation)
    pix, _ = camera.project(verts_cam)
    lmk_cam = transform_points(full[:, model.landmarks68], rotation, params.translation)
    status = ["diverged" if d else "ok" for d in diverged.tolist()]
    coeffs = params.as_dict()
    return FitResult(
        coefficients=coeffs,
        vertices=full,
        triangles=model.triangles,
        face_triangles=model.face_triangles(),
        vertices_cam=verts_cam,
        vertices_photo=obs.crop_points_to_photo(pix),
        rotation=rotation,
        pose_deg=matrix_to_euler(rotation),
        camera=camera,
        observation=obs,
        landmarks68_photo=obs.crop_points_to_photo(pred.landmarks68),
        landmarks68_cam=lmk_cam,
        losses=final,
        weights=dict(weights),
        history=torch.stack(history) if history else None,
        timings=timings,
        expression_names=list(model.expression_names),
        model_info=model.describe(),
        status=status,
    )
