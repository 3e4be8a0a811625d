"""Evaluating a regressor during training: Part IoU and landmark NME of its predictions, and the BatchNorm
statistics that eval mode uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fit3dmm.losses.base import Prediction
from fit3dmm.metrics import mean_part_iou, nme, part_iou
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.regressor import FaceRegressor
from fit3dmm.render.rasterize import render_labels
from fit3dmm.train.data import TrainItem, collate
from fit3dmm.train.objective import RegressionObjective
from fit3dmm.types.observation import Observation


@torch.no_grad()
def part_label_map(region: FaceModel, prediction: Prediction, size: int) -> Tensor:
    """(B, S, S) rendered part index per crop pixel (−1 = none) of a prediction of the fitted region."""
    return render_labels(prediction.points2d, prediction.depth, region.triangles, region.part_labels, (size, size))


@torch.no_grad()
def prediction_metrics(region: FaceModel, prediction: Prediction, observation: Observation) -> dict[str, Tensor]:
    """Per face (B,): ``part_iou`` (mean over the parts present in the target masks; needs masks and a model
    with part annotations) and ``nme`` (68 landmarks against the observation's, normalised by their box)."""
    out = {}
    if observation.masks is not None and region.has_parts:
        labels = part_label_map(region, prediction, observation.size)
        iou = part_iou(labels, observation.masks, observation.part_weights)
        out["part_iou"] = mean_part_iou(iou).float()
    if observation.landmarks68 is not None:
        out["nme"] = nme(prediction.landmarks68, observation.landmarks68).float()
    return out


@torch.no_grad()
def evaluate(regressor: FaceRegressor, objective: RegressionObjective, items: Sequence[TrainItem],
             batch_size: int = 8) -> dict[str, float]:
    """Mean loss terms and metrics (:func:`prediction_metrics`) of the regressor on ``items`` (eval mode)."""
    was_training = regressor.training
    regressor.eval()
    device = regressor.nominal.device
    sums: dict[str, list[Tensor]] = {}
    try:
        for start in range(0, len(items), batch_size):
            obs, target, has = collate(items[start: start + batch_size])
            obs = obs.to(device)
            coeffs = regressor(obs.image)
            total, terms, pred = objective(coeffs, obs, None if target is None else target.to(device), has)
            values = {"total": total, **terms, **prediction_metrics(objective.region, pred, obs)}
            for name, value in values.items():
                sums.setdefault(name, []).append(value.detach().float().cpu())
    finally:
        regressor.train(was_training)
    return {name: float(torch.nanmean(torch.cat(v))) for name, v in sums.items()}


@torch.no_grad()
def recalibrate_batchnorm(regressor: FaceRegressor, items: Sequence[TrainItem], batch_size: int = 8,
                          batches: int = 16) -> None:
    """Re-estimate the BatchNorm running statistics as plain averages over ``batches`` batches of ``items``
    ("precise BN", Wu & Johnson 2021), in a fixed order spread over the whole list.

    Eval mode (prediction, validation) normalises with these statistics.  Their default estimate, an
    exponential average over the last training steps, lags a network whose weights still change fast, as in
    a short run from a random initialisation, and its predictions then differ from the trained (batch
    statistics) ones.  Every process computes the same statistics (same items, same order).
    """
    norms = [m for m in regressor.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not items:
        return
    count = min(len(items), batches * batch_size)
    order = torch.linspace(0, len(items) - 1, count).round().long().tolist()
    momenta = [m.momentum for m in norms]
    was_training = regressor.training
    device = regressor.nominal.device
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        regressor.train()
        for start in range(0, count, batch_size):
            obs, _, _ = collate([items[i] for i in order[start: start + batch_size]])
            regressor.backbone(regressor.normalize(obs.image.to(device)))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        regressor.train(was_training)
