"""Landmark term: χ² of the projected model landmarks against the detected ones under measured noise.

    L_lmk = Σ_l ‖p_l − g_l‖² / σ_l²

with p_l the model's landmark l projected (its correspondence, :mod:`fit3dmm.fitting.landmarks`), g_l the
detected one and σ_l its noise per axis for the current pose (larger where the landmark's surface faces away
and the detector guesses), all in crop pixels.  The noise was measured per landmark on renders with known
coefficients, so the weights 1/σ² come from data, not by hand: on ICT-FaceKit and mediapipe the nose and
mouth are no surer than the rest (σ 2–3 px against 1.5–2 px for the eyes and 3.5–4 px on the face outline of
a 224 px crop), so Deep3DFaceRecon's ×20 weights for them are not kept.

The default weight λ_lmk = 1/30 is not the paper's (1.6e-3 with mean squared pixels and ×20 weights, for BFM
and a network): the detector's errors are strongly correlated (on renders 63 % of their variance lies in 5
directions, 91 % in 20), so its 478 landmarks carry about as much as 16 independent ones.  30 is the inflation
that minimised the 3D error of landmark fits on calibration renders (never the benchmark's), with the
identity prior at its natural weight 1 (:mod:`fit3dmm.losses.regularization`).
"""

from __future__ import annotations

from torch import Tensor

from fit3dmm.losses.base import Loss, Prediction
from fit3dmm.types.observation import Observation


def landmark_chi2(pred: Tensor, target: Tensor, sigma: Tensor, weights: Tensor | None = None) -> Tensor:
    """``Σ_l w_l ‖p_l − g_l‖² / σ_l²`` for pred, target (B, L, 2), sigma (B, L) or (L,), weights (B, L) or
    (L,) (0 drops a landmark; default 1).  Returns (B,)."""
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"landmarks must be equal (B, L, 2) tensors, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    sq = ((pred - target.to(pred.dtype)) ** 2).sum(-1) / sigma.to(pred.dtype) ** 2
    if weights is not None:
        sq = sq * weights.to(sq)
    return sq.sum(-1)


class LandmarkLoss(Loss):
    """L_lmk over the model's landmarks (module docstring), against ``observation.landmarks`` (the dense set)
    or ``observation.landmarks68`` for a model without a landmark correspondence; ``observation.landmark_weights``
    (B, 68) scales the 68 in that case."""

    name = "lmk"
    default_weight = 1.0 / 30.0
    needs = ("landmarks",)

    def forward(self, prediction: Prediction, observation: Observation) -> Tensor:
        if prediction.landmarks is None or prediction.landmark_sigma is None:
            raise ValueError("the landmark loss needs the prediction's landmarks and their noise")
        if prediction.landmark_target == "dense":
            if observation.landmarks is None:
                raise ValueError("the landmark loss needs the observation's dense landmarks (the model has a "
                                 "dense landmark correspondence)")
            return landmark_chi2(prediction.landmarks, observation.landmarks, prediction.landmark_sigma)
        if observation.landmarks68 is None:
            raise ValueError("the landmark loss needs observation.landmarks68")
        return landmark_chi2(prediction.landmarks, observation.landmarks68, prediction.landmark_sigma,
                             observation.landmark_weights)
