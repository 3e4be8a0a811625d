"""3D vertex error after an optional rigid (Kabsch) or similarity (Umeyama) alignment.

With corresponding points x_i (prediction) and y_i (ground truth), i = 1..V, the alignment finds

    (s, R, t) = argmin Σ_i ‖s R x_i + t − y_i‖²,   R ∈ SO(3) (no reflections), s = 1 for "rigid",

in closed form (Umeyama 1991): with centred points x̃, ỹ and Σ = (1/V) Σ_i ỹ_i x̃_iᵀ = U D Vᵀ,
S = diag(1, 1, sign(det U · det V)), R = U S Vᵀ, s = tr(D S) / ((1/V) Σ_i ‖x̃_i‖²), t = ȳ − s R x̄.
The error is (1/V) Σ_i ‖s R x_i + t − y_i‖₂ in the units of the inputs (convert cm → mm before or after).

Everything is computed in float64; inputs are numpy arrays or torch tensors and results come back as the
same kind (float64, on the input's device).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from fit3dmm.metrics._array import ArrayLike, as_tensor, like_input

Alignment = Literal["none", "rigid", "similarity"]


def _point_pair(source: ArrayLike, target: ArrayLike, names: tuple[str, str]) -> tuple[Tensor, Tensor]:
    """Checked float64 (B, V, 3) pair on the first one's device."""
    a = as_tensor(source, names[0])
    b = as_tensor(target, names[1])
    if a.ndim != 3 or a.shape[-1] != 3 or a.shape[1] == 0 or b.shape != a.shape:
        raise ValueError(f"{names[0]} and {names[1]} must both be (B, V, 3) with V >= 1, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return a.double(), b.double().to(a.device)


def _procrustes(x: Tensor, y: Tensor, scale: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Umeyama on float64 (B, V, 3) tensors → s (B,), R (B, 3, 3), t (B, 3)."""
    mx, my = x.mean(dim=1), y.mean(dim=1)
    xc, yc = x - mx[:, None], y - my[:, None]
    cov = yc.transpose(1, 2) @ xc / x.shape[1]
    u, d, vh = torch.linalg.svd(cov)
    sign = torch.where(torch.linalg.det(u) * torch.linalg.det(vh) < 0, -1.0, 1.0)
    signs = torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], dim=-1)
    rotation = u @ (signs[:, :, None] * vh)
    if scale:
        # a source collapsed to one point has var = 0 and tr(DS) = 0: any s is optimal, clamp picks s = 0
        var = xc.pow(2).sum(dim=(1, 2)) / x.shape[1]
        s = (d * signs).sum(-1) / var.clamp_min(torch.finfo(torch.float64).tiny)
    else:
        s = torch.ones_like(sign)
    t = my - s[:, None] * (rotation @ mx[:, :, None]).squeeze(-1)
    return s, rotation, t


def procrustes(source: ArrayLike, target: ArrayLike, scale: bool = False
               ) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """The best proper rigid (Kabsch) or, with ``scale``, similarity (Umeyama) map from source to target.

    Args:
        source: (B, V, 3) points x_i.
        target: (B, V, 3) corresponding points y_i.
        scale: also fit a uniform scale s (else s = 1).

    Returns:
        ``(s (B,), R (B, 3, 3), t (B, 3))`` in float64 minimising Σ_i ‖s R x_i + t − y_i‖², det R = +1.
    """
    x, y = _point_pair(source, target, ("source", "target"))
    s, rotation, t = _procrustes(x, y, scale)
    return like_input(s, source), like_input(rotation, source), like_input(t, source)


def vertex_error(pred: ArrayLike, gt: ArrayLike, align: Alignment = "none") -> ArrayLike:
    """Mean Euclidean distance between corresponding vertices, after aligning ``pred`` onto ``gt``.

    Args:
        pred: (B, V, 3) predicted vertices.
        gt: (B, V, 3) ground-truth vertices, same order and units.
        align: ``"none"``; ``"rigid"`` (rotation + translation); ``"similarity"`` (also a uniform scale).

    Returns:
        (B,) float64 mean distance, in the units of the inputs.
    """
    if align not in ("none", "rigid", "similarity"):
        raise ValueError(f'align must be "none", "rigid" or "similarity", got {align!r}')
    x, y = _point_pair(pred, gt, ("pred", "gt"))
    if align != "none":
        s, rotation, t = _procrustes(x, y, scale=align == "similarity")
        x = s[:, None, None] * x @ rotation.transpose(1, 2) + t[:, None]
    return like_input((x - y).norm(dim=-1).mean(dim=-1), pred)
