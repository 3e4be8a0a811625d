"""Photometric loss (Deep3DFaceRecon / 3DDFA-V3's L_pho) for models with an albedo."""

from __future__ import annotations

from torch import Tensor

from fit3dmm.losses.base import Loss, Prediction
from fit3dmm.types.observation import Observation


def photometric_loss(rendered: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Masked mean colour distance: Σ_i m_i ‖I_i − Î_i‖₂ / Σ_i m_i.

    rendered, target (B, 3, H, W); mask (B, 1, H, W) in [0, 1] (where the render covers the face, times
    the target's face mask).  Returns (B,); 0 where the mask is empty.
    """
    if rendered.shape != target.shape or mask.shape[-2:] != rendered.shape[-2:]:
        raise ValueError(f"shapes differ: rendered {tuple(rendered.shape)}, target {tuple(target.shape)}, "
                         f"mask {tuple(mask.shape)}")
    diff = ((rendered - target) ** 2).sum(1, keepdim=True).clamp_min(1e-12).sqrt()
    num = (diff * mask).flatten(1).sum(-1)
    return num / mask.flatten(1).sum(-1).clamp_min(1.0)


class PhotometricLoss(Loss):
    """L_pho between the rendered albedo × SH shading and the crop, on the target's face region (all parts
    and skin; everything the render covers when the observation has no masks).  Paper λ_pho = 1.9."""

    name = "pho"
    default_weight = 1.9
    needs = ("image",)

    def forward(self, prediction: Prediction, observation: Observation) -> Tensor:
        if prediction.image is None or prediction.image_mask is None:
            raise ValueError("the photometric loss needs a rendered image (a model with an albedo)")
        mask = prediction.image_mask
        if observation.masks is not None:
            mask = mask * observation.masks.any(dim=1, keepdim=True).to(mask)
        return photometric_loss(prediction.image, observation.image, mask)
