"""Landmark re-projection loss (Deep3DFaceRecon / 3DDFA-V3's L_lmk)."""

from __future__ import annotations

import torch
from torch import Tensor

from fit3dmm.losses.base import Loss, Prediction
from fit3dmm.types.observation import Observation

# Deep3DFaceRecon weights the 68 points 1, except the nose (28-30) and the inner and outer mouth (48-67) x20
LANDMARK68_WEIGHTS = torch.ones(68)
LANDMARK68_WEIGHTS[28:31] = 20.0
LANDMARK68_WEIGHTS[48:68] = 20.0


def landmark_loss(pred: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted mean squared landmark distance in pixels.

    L = Σ_i w_i ‖p_i − g_i‖² / N for pred, target (B, N, 2) and weights (N,) or (B, N) (0 drops a point;
    the mean is over all N points as in Deep3DFaceRecon).  Returns (B,).
    """
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"landmarks must be equal (B, N, 2) tensors, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    sq = ((pred - target.to(pred.dtype)) ** 2).sum(-1)
    if weights is not None:
        sq = sq * weights.to(sq)
    return sq.mean(-1)


class LandmarkLoss(Loss):
    """L_lmk on the 68 iBUG landmarks (jaw contour marched), plus the dense landmarks when the model has a
    dense correspondence (mediapipe's 478, from Algorithm 1) with weight ``dense_weight``.

    Paper default λ_lmk = 1.6e-3 with landmarks in pixels of the 224² crop.
    """

    name = "lmk"
    default_weight = 1.6e-3
    needs = ("landmarks",)

    def __init__(self, dense_weight: float = 1.0) -> None:
        super().__init__()
        self.dense_weight = dense_weight

    def forward(self, prediction: Prediction, observation: Observation) -> Tensor:
        if observation.landmarks68 is None:
            raise ValueError("the landmark loss needs observation.landmarks68")
        weights = LANDMARK68_WEIGHTS.to(prediction.landmarks68.device)
        if observation.landmark_weights is not None:
            weights = weights * observation.landmark_weights
        loss = landmark_loss(prediction.landmarks68, observation.landmarks68, weights)
        if (self.dense_weight > 0 and prediction.landmarks is not None and observation.landmarks is not None
                and prediction.landmarks.shape == observation.landmarks.shape):
            valid = prediction.landmark_valid.to(loss.dtype)
            dense = landmark_loss(prediction.landmarks, observation.landmarks, valid)
            loss = loss + self.dense_weight * dense * valid.numel() / valid.sum().clamp_min(1.0)
        return loss
