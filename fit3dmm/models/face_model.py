"""The linear 3D Morphable Model as a batched ``nn.Module``.

A shape is ``S = mean + Σ_k β_k · identity[k] + Σ_e ψ_e · expression[e]`` (centimetres, +y up, +z out of
the face towards the viewer, +x towards the subject's left).  An albedo, when the model has one, is
``A = albedo_mean + Σ_k γ_k · albedo_basis[k]`` in [0, 1] RGB.  Every model is converted to this frame and
unit by its loader, so cameras, losses and writers never see model-specific conventions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from fit3dmm.models.assets import FaceModelAssets
from fit3dmm.types.parts import PART_NAMES


@dataclass
class FaceModelOutput:
    """What :meth:`FaceModel.forward` returns.

    ``vertices`` (B, V, 3) in cm; ``albedo`` (B, V, 3) in [0, 1] or None when the model has none.
    """

    vertices: Tensor
    albedo: Tensor | None = None


def quads_to_triangles(faces: np.ndarray) -> np.ndarray:
    """Split -1-padded quads (F, 4) into triangles (T, 3); rows with -1 in the last column are triangles."""
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] not in (3, 4):
        raise ValueError(f"faces must be (F, 3) or (F, 4), got {faces.shape}")
    if faces.shape[1] == 3:
        return faces.astype(np.int64)
    quad = faces[:, 3] >= 0
    first = faces[:, [0, 1, 2]]
    second = faces[quad][:, [0, 2, 3]]
    return np.concatenate([first, second], axis=0).astype(np.int64)


class FaceModel(nn.Module):
    """A linear face model: coefficients → vertices (B, V, 3).

    Args:
        name: short model name (``"ict"``, ``"bfm2009"``, ``"3ddfa_v3"``...).
        mean: (V, 3) mean shape in cm.
        identity_basis: (K, V, 3) identity displacements per unit coefficient.
        expression_basis: (E, V, 3) expression displacements per unit coefficient.
        triangles: (T, 3) vertex indices, counter-clockwise seen from outside.
        landmarks68: (68,) vertex indices in the iBUG/Multi-PIE order.
        expression_names: names of the expression coefficients (ARKit names for ICT).
        expression_range: (lo, hi) box for expression coefficients (ICT blendshape weights live in
            [0, 1]); None for unbounded PCA expressions.
        identity_std, expression_std: prior standard deviation per coefficient (used by the
            regulariser); default 1.
        albedo_mean, albedo_basis: (V, 3) and (Ka, V, 3), RGB in [0, 1]; optional.
        face_vertices: indices of the face region used for fitting; default all.
        assets: part labels, landmark correspondence, eye openings (Algorithm 1), optional.
        uv, triangles_uv: texture coordinates (Nuv, 2) and per-triangle uv indices (T, 3), optional.
        checksum: a string that identifies the model data (sha256 of the source file).
    """

    def __init__(
        self,
        name: str,
        mean: np.ndarray,
        identity_basis: np.ndarray,
        expression_basis: np.ndarray,
        triangles: np.ndarray,
        landmarks68: np.ndarray,
        *,
        expression_names: list[str] | None = None,
        expression_range: tuple[float, float] | None = None,
        identity_std: np.ndarray | None = None,
        expression_std: np.ndarray | None = None,
        albedo_mean: np.ndarray | None = None,
        albedo_basis: np.ndarray | None = None,
        face_vertices: np.ndarray | None = None,
        assets: FaceModelAssets | None = None,
        uv: np.ndarray | None = None,
        triangles_uv: np.ndarray | None = None,
        checksum: str = "",
    ) -> None:
        super().__init__()
        mean = np.asarray(mean, dtype=np.float32)
        if mean.ndim != 2 or mean.shape[1] != 3:
            raise ValueError(f"mean must be (V, 3), got {mean.shape}")
        nv = mean.shape[0]
        identity_basis = np.asarray(identity_basis, dtype=np.float32)
        expression_basis = np.asarray(expression_basis, dtype=np.float32)
        for what, basis in (("identity_basis", identity_basis), ("expression_basis", expression_basis)):
            if basis.ndim != 3 or basis.shape[1:] != (nv, 3):
                raise ValueError(f"{what} must be (K, {nv}, 3), got {basis.shape}")
        triangles = np.asarray(triangles, dtype=np.int64)
        if triangles.ndim != 2 or triangles.shape[1] != 3 or triangles.min() < 0 or triangles.max() >= nv:
            raise ValueError(f"triangles must be (T, 3) indices into {nv} vertices")
        landmarks68 = np.asarray(landmarks68, dtype=np.int64)
        if landmarks68.shape != (68,):
            raise ValueError(f"landmarks68 must be (68,), got {landmarks68.shape}")

        self.name = name
        self.checksum = checksum
        self.expression_names = list(expression_names or [f"exp{i:03d}" for i in range(len(expression_basis))])
        if len(self.expression_names) != len(expression_basis):
            raise ValueError("expression_names must name every expression coefficient")
        self.expression_range = expression_range
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("identity_basis", torch.from_numpy(identity_basis))
        self.register_buffer("expression_basis", torch.from_numpy(expression_basis))
        self.register_buffer("triangles", torch.from_numpy(triangles))
        self.register_buffer("landmarks68", torch.from_numpy(landmarks68))
        ones_id = np.ones(len(identity_basis), np.float32)
        ones_exp = np.ones(len(expression_basis), np.float32)
        self.register_buffer(
            "identity_std", torch.from_numpy(np.asarray(identity_std if identity_std is not None else ones_id,
                                                        dtype=np.float32))
        )
        self.register_buffer(
            "expression_std", torch.from_numpy(np.asarray(expression_std if expression_std is not None
                                                          else ones_exp, dtype=np.float32))
        )
        if (albedo_mean is None) != (albedo_basis is None):
            raise ValueError("albedo_mean and albedo_basis come together")
        self.has_albedo = albedo_mean is not None
        self.register_buffer("albedo_mean", None if albedo_mean is None else
                             torch.from_numpy(np.asarray(albedo_mean, np.float32)))
        self.register_buffer("albedo_basis", None if albedo_basis is None else
                             torch.from_numpy(np.asarray(albedo_basis, np.float32)))
        fv = np.arange(nv) if face_vertices is None else np.asarray(face_vertices, dtype=np.int64)
        self.register_buffer("face_vertices", torch.from_numpy(fv))
        self.assets = assets or FaceModelAssets()
        self.uv = None if uv is None else np.asarray(uv, np.float32)
        self.triangles_uv = None if triangles_uv is None else np.asarray(triangles_uv, np.int64)

    # ------------------------------------------------------------------ sizes
    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def num_identity(self) -> int:
        return self.identity_basis.shape[0]

    @property
    def num_expression(self) -> int:
        return self.expression_basis.shape[0]

    @property
    def num_albedo(self) -> int:
        return 0 if self.albedo_basis is None else self.albedo_basis.shape[0]

    @property
    def part_labels(self) -> Tensor:
        """(V,) int64 part index per vertex, -1 for none (all -1 when the model is not annotated)."""
        labels = self.assets.part_labels
        if labels is None:
            return torch.full((self.num_vertices,), -1, dtype=torch.long, device=self.mean.device)
        return torch.as_tensor(labels, dtype=torch.long, device=self.mean.device)

    @property
    def has_parts(self) -> bool:
        return self.assets.part_labels is not None

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        identity: Tensor | None = None,
        expression: Tensor | None = None,
        albedo: Tensor | None = None,
    ) -> FaceModelOutput:
        """Coefficients → vertices.

        Args:
            identity: (B, K') with K' ≤ K (missing trailing coefficients are zero), or None.
            expression: (B, E') with E' ≤ E, or None.
            albedo: (B, Ka') albedo coefficients, or None (mean albedo when the model has one).
        Returns:
            :class:`FaceModelOutput` with ``vertices`` (B, V, 3).
        """
        batch = next((c.shape[0] for c in (identity, expression, albedo) if c is not None), 1)
        verts = self.mean.unsqueeze(0).expand(batch, -1, -1)
        if identity is not None:
            verts = verts + _combine(identity, self.identity_basis, "identity")
        if expression is not None:
            verts = verts + _combine(expression, self.expression_basis, "expression")
        colors = None
        if self.has_albedo:
            colors = self.albedo_mean.unsqueeze(0).expand(batch, -1, -1)
            if albedo is not None:
                colors = colors + _combine(albedo, self.albedo_basis, "albedo")
            colors = colors.clamp(0.0, 1.0)
        return FaceModelOutput(vertices=verts, albedo=colors)

    # ------------------------------------------------------------- utilities
    def face_triangles(self) -> Tensor:
        """(T', 3) triangles whose three vertices all lie in the face region (full-model indices)."""
        mask = torch.zeros(self.num_vertices, dtype=torch.bool, device=self.triangles.device)
        mask[self.face_vertices] = True
        return self.triangles[mask[self.triangles].all(dim=1)]

    def region(self) -> FaceModel:
        """The same model restricted to ``face_vertices`` (what fitting optimises), indices remapped.

        Triangles with a vertex outside the region are dropped; landmarks, contour candidates, part labels
        and dense landmarks are remapped (those outside the region become -1 / are dropped).  The
        returned model's ``face_vertices`` is ``arange(V')`` and ``parent_vertices`` maps back.
        """
        keep = self.face_vertices.cpu().numpy()
        remap = np.full(self.num_vertices, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        tri = remap[self.triangles.cpu().numpy()]
        tri = tri[(tri >= 0).all(axis=1)]
        lmk = remap[self.landmarks68.cpu().numpy()]
        if (lmk < 0).any():
            raise ValueError(f"{self.name}: some of the 68 landmarks lie outside the face region")
        assets = self.assets.remap(remap, keep)
        sub = FaceModel(
            self.name,
            self.mean[keep].cpu().numpy(),
            self.identity_basis[:, keep].cpu().numpy(),
            self.expression_basis[:, keep].cpu().numpy(),
            tri,
            lmk,
            expression_names=self.expression_names,
            expression_range=self.expression_range,
            identity_std=self.identity_std.cpu().numpy(),
            expression_std=self.expression_std.cpu().numpy(),
            albedo_mean=None if self.albedo_mean is None else self.albedo_mean[keep].cpu().numpy(),
            albedo_basis=None if self.albedo_basis is None else self.albedo_basis[:, keep].cpu().numpy(),
            assets=assets,
            checksum=self.checksum,
        )
        sub.parent_vertices = torch.as_tensor(keep, device=self.mean.device)
        return sub.to(self.mean.device)

    def describe(self) -> dict[str, object]:
        """A JSON-friendly summary (name, sizes, checksum)."""
        return {
            "name": self.name,
            "checksum": self.checksum,
            "vertices": self.num_vertices,
            "face_vertices": int(self.face_vertices.numel()),
            "triangles": int(self.triangles.shape[0]),
            "identity": self.num_identity,
            "expression": self.num_expression,
            "albedo": self.num_albedo,
            "units": "cm",
            "parts": list(PART_NAMES) if self.has_parts else [],
        }


def _combine(coeffs: Tensor, basis: Tensor, what: str) -> Tensor:
    """Σ_k c[b, k] · basis[k] for the first K' = c.shape[1] basis vectors: (B, K') × (K, V, 3) → (B, V, 3)."""
    if coeffs.ndim != 2 or coeffs.shape[1] > basis.shape[0]:
        raise ValueError(f"{what} coefficients must be (B, ≤{basis.shape[0]}), got {tuple(coeffs.shape)}")
    k = coeffs.shape[1]
    flat = basis[:k].reshape(k, -1)
    return (coeffs.to(flat.dtype) @ flat).reshape(coeffs.shape[0], -1, 3)


def file_checksum(path: str) -> str:
    """sha256 of a file, hex, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
