"""The model side of the landmark term: where each detector landmark lies on the mesh, and how sure it is.

A landmark ``l`` is a fixed convex combination of a few model vertices, ``X_l = Σ_k w_lk V_{j_lk}`` (fitted on
renders by :mod:`fit3dmm.annotate.landmarks`), so it moves with identity and expression exactly as the
surface does.  Its noise is ``σ_l`` (pixels of a 224 px crop, per axis) where its surface faces the camera and
``σ_hidden_l`` where it faces away (the detector then guesses); one triangle at the landmark tells which.  A
model without that annotation uses its 68 landmark vertices with a uniform noise.

Because the landmarks are linear in the coefficients, the least-squares stage needs only ``L`` points
(:class:`LandmarkBasis`) instead of the whole mesh:

    X(β, ψ) = μ_L + Σ_k β_k A_k + Σ_e ψ_e D_e,       μ_L (L, 3), A (K, L, 3), D (E, L, 3).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from fit3dmm.models.assets import Correspondence
from fit3dmm.models.face_model import FaceModel

REFERENCE_CROP = 224
"""Crop size (px) in which landmark noise is stated; it scales with the working crop."""
FALLBACK_SIGMA = 3.0
"""Noise (px of a 224 px crop) of the 68 landmark vertices of a model without a landmark correspondence."""
DENSE, SIXTY_EIGHT = "dense", "68"
"""The detector landmarks a support explains: the dense set (``Observation.landmarks``) or the 68."""


class LandmarkSupport(nn.Module):
    """A model's landmarks as gathers from its vertices (tensors on the model's device).

    Attributes:
        target: :data:`DENSE` or :data:`SIXTY_EIGHT`, which observed landmarks these are compared with.
    """

    def __init__(self, correspondence: Correspondence, target: str, device: torch.device | str) -> None:
        super().__init__()
        c = correspondence
        self.target = target
        self.num_landmarks = c.num_landmarks
        self.register_buffer("vertices", torch.as_tensor(c.vertices, device=device))
        self.register_buffer("weights", torch.as_tensor(c.weights, dtype=torch.float32, device=device))
        self.register_buffer("triangle", torch.as_tensor(c.triangle, device=device))
        self.register_buffer("sigma", torch.as_tensor(c.sigma, dtype=torch.float32, device=device))
        self.register_buffer("sigma_hidden", torch.as_tensor(c.sigma_hidden, dtype=torch.float32, device=device))

    @staticmethod
    def of(model: FaceModel) -> LandmarkSupport:
        """The support of ``model`` (indices as in ``model``): its correspondence, else its 68 landmarks."""
        device = model.mean.device
        if model.assets.landmarks is not None:
            return LandmarkSupport(model.assets.landmarks, DENSE, device)
        lmk = model.landmarks68.cpu().numpy()
        tri = model.triangles.cpu().numpy()
        first = {}
        for t in tri[::-1]:
            for v in t:
                first[int(v)] = t
        corners = np.stack([first.get(int(v), np.array([v, v, v])) for v in lmk])
        sigma = np.full(len(lmk), FALLBACK_SIGMA, np.float32)
        c = Correspondence(lmk[:, None], np.ones((len(lmk), 1), np.float32), sigma, 2 * sigma, corners)
        return LandmarkSupport(c, SIXTY_EIGHT, device)

    def points(self, vertices: Tensor) -> tuple[Tensor, Tensor]:
        """(B, V, 3) vertices → (landmarks (B, L, 3), unit normals of their triangles (B, L, 3))."""
        points = (vertices[:, self.vertices] * self.weights.to(vertices)[..., None]).sum(-2)
        return points, triangle_normals(vertices[:, self.triangle])

    def noise(self, normals_cam: Tensor, points_cam: Tensor, size: int) -> Tensor:
        """(B, L) noise per axis in crop pixels: σ where the landmark faces the camera, else σ_hidden.

        Args:
            normals_cam: (B, L, 3) landmark normals in camera space; points_cam (B, L, 3) their positions.
            size: the working crop's side in pixels.
        """
        facing = (normals_cam * points_cam).sum(-1) < 0  # the normal points back towards the camera
        sigma = torch.where(facing, self.sigma.to(points_cam), self.sigma_hidden.to(points_cam))
        return sigma * (size / REFERENCE_CROP)


class LandmarkBasis(nn.Module):
    """Landmark positions and their triangles' corners as a linear function of the coefficients."""

    def __init__(self, model: FaceModel, support: LandmarkSupport) -> None:
        super().__init__()
        self.support = support
        n = support.num_landmarks

        def gather(values: Tensor) -> Tensor:  # (..., V, 3) → (..., 4L, 3): landmarks, then triangle corners
            landmarks = (values[..., support.vertices, :] * support.weights.to(values)[..., None]).sum(-2)
            return torch.cat([landmarks, values[..., support.triangle.reshape(-1), :]], dim=-2)

        self.num_landmarks = n
        self.register_buffer("mean", gather(model.mean))
        self.register_buffer("identity", gather(model.identity_basis))
        self.register_buffer("expression", gather(model.expression_basis))

    def forward(self, identity: Tensor, expression: Tensor) -> tuple[Tensor, Tensor]:
        """→ (landmarks (B, L, 3), triangle corners (B, L, 3, 3)) in model space (cm)."""
        k, e = identity.shape[1], expression.shape[1]
        pts = (self.mean + torch.einsum("bk,kpc->bpc", identity.to(self.mean), self.identity[:k])
               + torch.einsum("be,epc->bpc", expression.to(self.mean), self.expression[:e]))
        n = self.num_landmarks
        return pts[:, :n], pts[:, n:].reshape(pts.shape[0], n, 3, 3)


def triangle_normals(corners: Tensor) -> Tensor:
    """(…, 3, 3) triangle corners → (…, 3) unit normals (counter-clockwise seen from outside)."""
    n = torch.linalg.cross(corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 0, :], dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
