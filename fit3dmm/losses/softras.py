"""Part silhouette IoU loss with soft rasterization (SoftRas, Liu et al. 2019), a baseline for PRDL.

Per part p, the soft silhouette S_p of the model's visible triangles labelled p
(:func:`~fit3dmm.render.soft.soft_silhouettes`) is compared with the target mask M_p by the soft IoU loss

    L_p = 1 − Σ_i S_p,i M_p,i / Σ_i (S_p,i + M_p,i − S_p,i M_p,i),     L = Σ_p w_p L_p,

with w_p the observation's part weights (parts with w_p = 0 are skipped).  Pixels under hair and above the
forehead line are left out of both S and M, as PRDL leaves those points out of both point sets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fit3dmm.losses.base import Loss, Prediction
from fit3dmm.render.soft import ndc_sigma_to_pixels, soft_silhouettes
from fit3dmm.types.observation import Observation
from fit3dmm.types.parts import NUM_PARTS


def triangle_labels_from_vertices(vertex_labels: Tensor, triangles: Tensor) -> Tensor:
    """(V,) vertex labels and (T, 3) triangles → (T,) the label shared by at least two corners, else −1."""
    if vertex_labels.ndim != 1 or triangles.ndim != 2 or triangles.shape[-1] != 3:
        raise ValueError(f"expected (V,) labels and (T, 3) triangles, got {tuple(vertex_labels.shape)} and "
                         f"{tuple(triangles.shape)}")
    a, b, c = vertex_labels[triangles].unbind(-1)
    return torch.where((a == b) | (a == c), a, torch.where(b == c, b, torch.full_like(a, -1)))


def soft_iou_loss(silhouettes: Tensor, masks: Tensor, weights: Tensor | None = None,
                  valid: Tensor | None = None) -> Tensor:
    """Σ_p w_p (1 − soft IoU(S_p, M_p)) per item: (B, P, H, W) silhouettes and masks → (B,).

    Args:
        silhouettes: (B, P, H, W) in [0, 1].
        masks: (B, P, H, W) target masks (bool or [0, 1]).
        weights: (B, P) part weights w_p ≥ 0; None = 1 for every part.  Parts with w_p = 0 contribute 0
            (and no gradient); a part with w_p > 0 whose union is empty costs w_p (IoU taken as 0).
        valid: (B, H, W) pixels that count (bool or [0, 1]); None = all.
    """
    if silhouettes.ndim != 4 or masks.shape != silhouettes.shape:
        raise ValueError(f"silhouettes and masks must both be (B, P, H, W), got {tuple(silhouettes.shape)} "
                         f"and {tuple(masks.shape)}")
    bsz, parts = silhouettes.shape[:2]
    if weights is None:
        weights = silhouettes.new_ones((bsz, parts))
    if weights.shape != (bsz, parts):
        raise ValueError(f"weights must be ({bsz}, {parts}), got {tuple(weights.shape)}")
    m = masks.to(silhouettes.dtype)
    s = silhouettes
    if valid is not None:
        if valid.shape != (bsz, *silhouettes.shape[2:]):
            raise ValueError(f"valid must be ({bsz}, H, W), got {tuple(valid.shape)}")
        keep = valid.to(s.dtype).unsqueeze(1)
        s, m = s * keep, m * keep
    inter = (s * m).flatten(2).sum(-1)
    union = (s + m - s * m).flatten(2).sum(-1)
    used = weights > 0
    iou = inter / torch.where(union > 0, union, torch.ones_like(union))
    loss = torch.where(used, weights.to(s.dtype) * (1.0 - iou), torch.zeros_like(iou))
    return loss.sum(-1)


def _valid_pixels(observation: Observation, dtype: torch.dtype) -> Tensor | None:
    """(B, S, S) pixels not under hair and not above the forehead line, or None when neither is known."""
    if observation.hair is None and observation.forehead_line is None:
        return None
    size, device = observation.size, observation.device
    valid = torch.ones((observation.batch_size, size, size), dtype=torch.bool, device=device)
    if observation.hair is not None:
        valid &= ~observation.hair.to(torch.bool)
    if observation.forehead_line is not None:
        coord = torch.arange(size, device=device, dtype=dtype)
        a, b, c = (v.view(-1, 1, 1) for v in observation.forehead_line.to(dtype).unbind(-1))
        side = a * coord.view(1, 1, -1) + b * coord.view(1, -1, 1) + c
        valid &= side >= 0
    return valid


class SoftRasLoss(Loss):
    """Soft part-silhouette IoU loss (module docstring) against ``observation.masks``.

    Triangle labels are the majority of their vertices' ``prediction.part_labels``; only triangles whose
    three vertices are ``prediction.visible`` are drawn, so occluded parts (e.g. the far cheek behind the
    nose) do not claim pixels that the target gives to the occluder.

    Args:
        sigma: SoftRas's σ in its normalised units (squared distance, image side = 2), converted to pixels²
            as σ · S² / 4 (1e-4 → 1.25 px² at 224 px): the edge blur is about ±√σ ≈ 1 px.
        eps: pairs with D < eps are skipped (search margin √(σ ln(1/eps)) ≈ 3.4 px at the defaults).

    ``default_weight`` = 12.5 is not from a paper (3DDFA-V3 does not use SoftRas in its objective).  It is an
    estimate: a 1 px misalignment changes Σ_p L_p by roughly 0.1–0.2 on a 224 px face (the small parts
    dominate); 12.5 keeps the ratio to PRDL of the first estimate (0.1 against PRDL's former 0.8e-3), when
    PRDL's default became 0.1.
    """

    name = "softras"
    default_weight = 12.5
    needs = ("masks",)

    def __init__(self, sigma: float = 1e-4, eps: float = 1e-4) -> None:
        super().__init__()
        if sigma <= 0 or not 0 < eps < 0.5:
            raise ValueError(f"sigma must be > 0 and eps in (0, 0.5), got {sigma} and {eps}")
        self.sigma = sigma
        self.eps = eps

    def forward(self, prediction: Prediction, observation: Observation) -> Tensor:
        if observation.masks is None:
            raise ValueError("the softras loss needs observation.masks")
        size = observation.size
        tri = prediction.triangles
        labels = triangle_labels_from_vertices(prediction.part_labels.to(tri.device), tri)
        weights = observation.part_weights
        if weights is None:
            weights = observation.masks.flatten(2).any(-1).to(prediction.points2d.dtype)
        # draw a triangle only where it is visible and its part counts for this item
        part_used = torch.cat([weights > 0, weights.new_zeros((weights.shape[0], 1), dtype=torch.bool)], 1)
        draw = prediction.visible[:, tri].all(-1) & part_used[:, labels]  # label −1 reads the False column
        sil = soft_silhouettes(prediction.points2d, tri, labels, NUM_PARTS, (size, size),
                               ndc_sigma_to_pixels(self.sigma, (size, size)), visible_tri=draw, eps=self.eps)
        return soft_iou_loss(sil, observation.masks, weights, _valid_pixels(observation, sil.dtype))
