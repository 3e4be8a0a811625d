"""The optimised coefficients α of B faces, split by name, with their constraints."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fit3dmm.models.face_model import FaceModel
from fit3dmm.render.camera import axis_angle_to_matrix

COEFFICIENTS = ("identity", "expression", "rotation", "translation", "albedo", "lighting")
"""The names of the coefficients, in :meth:`FitParameters.as_dict` order."""

# Deep3DFaceRecon's SH initialisation: ambient 0.8 on the first band of each colour channel
SH_INIT_AMBIENT = 0.8


class FitParameters(nn.Module):
    """α = (identity, expression, rotation, translation[, albedo, lighting]) for B faces.

    ``identity`` (B, K) and ``expression`` (B, E) are model coefficients; when the model bounds its
    expressions (ICT's ARKit blendshape weights live in [0, 1]) they are kept in the box by projection after
    every optimiser step (:meth:`clamp_`), which keeps exact zeros and unbiased Adam steps inside the box.
    ``rotation`` (B, 3) is an axis-angle vector (no gimbal lock), ``translation`` (B, 3) in cm.
    """

    def __init__(self, model: FaceModel, batch: int, *, num_identity: int | None = None,
                 photometric: bool = False) -> None:
        super().__init__()
        device = model.mean.device
        k = model.num_identity if num_identity is None else min(num_identity, model.num_identity)
        self.expression_range = model.expression_range
        self.identity = nn.Parameter(torch.zeros(batch, k, device=device))
        self.expression = nn.Parameter(torch.zeros(batch, model.num_expression, device=device))
        self.rotation = nn.Parameter(torch.zeros(batch, 3, device=device))
        self.translation = nn.Parameter(torch.zeros(batch, 3, device=device))
        self.albedo = nn.Parameter(torch.zeros(batch, model.num_albedo, device=device)) if (
            photometric and model.has_albedo) else None
        light = torch.zeros(batch, 27, device=device)
        light[:, [0, 9, 18]] = SH_INIT_AMBIENT
        self.lighting = nn.Parameter(light) if photometric else None

    @property
    def batch_size(self) -> int:
        return self.identity.shape[0]

    def rotation_matrix(self) -> Tensor:
        """(B, 3, 3) model→camera rotation."""
        return axis_angle_to_matrix(self.rotation)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp bounded coefficients back into their box, in place (after each optimiser step)."""
        if self.expression_range is not None:
            self.expression.clamp_(*self.expression_range)

    def as_dict(self) -> dict[str, Tensor]:
        """Detached copies of every coefficient by name."""
        out = {name: p.detach().clone() for name, p in self.named_parameters()}
        return out

    @torch.no_grad()
    def load(self, values: dict[str, Tensor], rows: Tensor | None = None) -> None:
        """Copy ``values`` (as from :meth:`as_dict`) into the parameters, optionally only for ``rows`` (B,) bool."""
        for name, p in self.named_parameters():
            if name in values:
                if rows is None:
                    p.copy_(values[name])
                else:
                    p[rows] = values[name][rows].to(p.dtype)
