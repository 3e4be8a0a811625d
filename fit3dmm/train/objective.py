"""The training objective: the fitting's :class:`~fit3dmm.fitting.objective.Objective` applied to a network's
predicted coefficients, plus a supervision term for faces with known coefficients."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from fit3dmm.fitting.objective import Objective
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.losses.base import Prediction
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.regressor import Coefficients
from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.types.observation import Observation

SUPERVISION = "sup"


class RegressionObjective(nn.Module):
    """The fitting's objective applied to predicted coefficients, plus the supervision term ``sup``.

    Args:
        model: the full face model (its face region is used, as in fitting).
        weights: {loss name: λ}.
        supervise: weight of ``sup`` (mean squared vertex distance in cm² to known coefficients).
        loss_options: keyword arguments per loss.
    """

    def __init__(self, model: FaceModel, weights: Mapping[str, float], supervise: float = 0.0,
                 loss_options: Mapping[str, Mapping[str, object]] | None = None) -> None:
        super().__init__()
        self.region = model.region()
        self.supervise = supervise
        self.objective = Objective(weights, self.region, loss_options)

    @property
    def weights(self) -> dict[str, float]:
        return self.objective.weights

    @property
    def term_names(self) -> list[str]:
        return list(self.weights) + ([SUPERVISION] if self.supervise > 0 else [])

    def check(self, observation: Observation) -> None:
        """Refuse observations that lack what a selected loss needs (before any training)."""
        self.objective.check(observation)

    def predict(self, coeffs: Coefficients, observation: Observation) -> Prediction:
        """The Prediction of the fitting engine for ``coeffs`` on the crops of ``observation``."""
        camera = PerspectiveCamera.for_crop(observation.size, observation.batch_size, device=observation.device)
        builder = PredictionBuilder(self.region, camera, observation)
        return builder(coeffs, render_image=self.objective.renders_image)

    def forward(self, coeffs: Coefficients, observation: Observation, target: Coefficients | None = None,
                has_target: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor], Prediction]:
        """→ (total (B,), unweighted terms {name: (B,)}, prediction)."""
        pred = self.predict(coeffs, observation)
        self.objective.prepare(observation)
        total, terms = self.objective(pred, observation)
        if self.supervise > 0:
            term = pred.vertices_cam.new_zeros(observation.batch_size)
            if target is not None and has_target is not None and bool(has_target.any()):
                with torch.no_grad():
                    true = target.vertices_cam(self.region)
                dist2 = (pred.vertices_cam - true.to(pred.vertices_cam)).pow(2).sum(-1).mean(-1)
                term = torch.where(has_target.to(dist2.device), dist2, term)
            terms[SUPERVISION] = term
            total = total + self.supervise * term
        return total, terms, pred
