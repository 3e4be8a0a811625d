"""L2 regularisation of the coefficients (Deep3DFaceRecon / 3DDFA-V3's L_reg)."""

from __future__ import annotations

from torch import Tensor

from fit3dmm.losses.base import Loss, Prediction
from fit3dmm.types.observation import Observation


def coefficient_l2(coefficients: Tensor, std: Tensor | None = None) -> Tensor:
    """Σ_k (c_k / σ_k)² for coefficients (B, K) and prior standard deviations σ (K,) (default 1). → (B,)."""
    if coefficients.ndim != 2:
        raise ValueError(f"coefficients must be (B, K), got {tuple(coefficients.shape)}")
    if std is not None:
        coefficients = coefficients / std[: coefficients.shape[1]].to(coefficients)
    return (coefficients**2).sum(-1)


class RegularizationLoss(Loss):
    """L_reg = w_id ‖β/σ_id‖² + w_exp ‖ψ/σ_exp‖² + w_alb ‖γ‖², Deep3DFaceRecon's relative weights 1, 0.8,
    1.7e-2; paper default λ_reg = 3e-4."""

    name = "reg"
    default_weight = 3e-4

    def __init__(self, identity: float = 1.0, expression: float = 0.8, albedo: float = 1.7e-2,
                 identity_std: Tensor | None = None, expression_std: Tensor | None = None) -> None:
        super().__init__()
        self.weights = {"identity": identity, "expression": expression, "albedo": albedo}
        self.stds = {"identity": identity_std, "expression": expression_std, "albedo": None}

    def forward(self, prediction: Prediction, observation: Observation) -> Tensor:
        coeffs = prediction.coefficients
        total = coeffs["identity"].new_zeros(prediction.batch_size)
        for name, weight in self.weights.items():
            if name in coeffs and coeffs[name].shape[1] > 0:
                total = total + weight * coefficient_l2(coeffs[name], self.stds[name])
        return total
