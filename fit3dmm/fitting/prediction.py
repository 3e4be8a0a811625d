"""Turn the current coefficients into a :class:`~fit3dmm.losses.base.Prediction`.

This is where the paper's prediction-side rules live: V_p(α) keeps only the vertices of part p that are
visible for the current pose, lie below the forehead line of the target, and (for skin) do not fall on
pixels the target marks as hair; the jaw-contour landmarks slide to the silhouette (landmark marching).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fit3dmm.fitting.params import FitParameters
from fit3dmm.losses.base import Prediction
from fit3dmm.models.face_model import FaceModel
from fit3dmm.render.camera import PerspectiveCamera, transform_points
from fit3dmm.render.rasterize import vertex_visibility
from fit3dmm.render.shading import render_shaded, vertex_normals
from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.parts import PART_NAMES


def _pad_lines(lines: list[np.ndarray], device: torch.device) -> tuple[Tensor, Tensor]:
    """Candidate lists → (J, N) index tensor (0-padded) and (J, N) validity."""
    n = max((len(c) for c in lines), default=0)
    idx = np.zeros((len(lines), max(n, 1)), dtype=np.int64)
    ok = np.zeros_like(idx, dtype=bool)
    for j, c in enumerate(lines):
        idx[j, : len(c)] = c
        ok[j, : len(c)] = True
    return torch.as_tensor(idx, device=device), torch.as_tensor(ok, device=device)


class PredictionBuilder:
    """Builds predictions for a (region) face model seen by a crop camera.

    Args:
        model: the face model restricted to the fitted region (:meth:`FaceModel.region`).
        camera: the crop camera.
        observation: the target (for the forehead line and hair mask that filter V_p).
        visibility_every: recompute vertex visibility (a z-buffer pass, no gradient) every n calls.
        use_visibility: False when no loss needs it (landmarks, regulariser): every vertex counts as visible
            and no z-buffer is drawn.
    """

    def __init__(self, model: FaceModel, camera: PerspectiveCamera, observation: Observation,
                 visibility_every: int = 10, use_visibility: bool = True) -> None:
        self.model = model
        self.camera = camera
        self.observation = observation
        self.visibility_every = max(1, visibility_every)
        self.use_visibility = use_visibility
        device = model.mean.device
        labels = model.part_labels
        self.part_vertices = {p: torch.nonzero(labels == i).flatten() for i, p in enumerate(PART_NAMES)}
        self.contour_index, self.contour_ok = _pad_lines(model.contour_lines, device)
        dense = model.assets.dense_landmarks
        self.dense_index = None if dense is None else torch.as_tensor(np.maximum(dense, 0), device=device)
        self.dense_valid = None if dense is None else torch.as_tensor(dense >= 0, device=device)
        self._visible: Tensor | None = None
        self._calls = 0

    def _marched_landmarks(self, points2d: Tensor, rotation: Tensor) -> Tensor:
        """(B, 68, 2): the 68 landmarks with the jaw contour of the side turned away moved to the silhouette."""
        lmk = self.model.landmarks68
        out = points2d[:, lmk]
        if not self.model.contour_lines:
            return out
        nose_x = rotation[:, 0, 2]  # image-x direction of the face's forward axis
        # side turned away: subject's left (model x > 0, image right) when the nose points to image right
        for j in range(17):
            if not bool(self.contour_ok[j].any()):
                continue
            side = float(np.sign(self.model.mean[lmk[j], 0].item()))
            cand = self.contour_index[j][self.contour_ok[j]]
            u = points2d[:, cand, 0]
            best = cand[(side * u).argmax(dim=1)]  # outermost candidate in the image
            away = (nose_x * side) > 0
            chosen = torch.where(away, best, lmk[j].expand_as(best))
            out[:, j] = points2d[torch.arange(points2d.shape[0], device=points2d.device), chosen]
        return out

    def visibility(self, points2d: Tensor, depth: Tensor, vertices_cam: Tensor, force: bool = False) -> Tensor:
        """(B, V) visibility, recomputed every ``visibility_every`` calls (no gradient)."""
        if not self.use_visibility and not force:
            return torch.ones(points2d.shape[:2], dtype=torch.bool, device=points2d.device)
        if force or self._visible is None or self._calls % self.visibility_every == 0:
            with torch.no_grad():
                normals = vertex_normals(vertices_cam, self.model.triangles)
                size = self.observation.size
                self._visible = vertex_visibility(points2d, depth, self.model.triangles, (size, size), normals)
        return self._visible

    def part_points(self, points2d: Tensor, visible: Tensor) -> dict[str, PointSet]:
        """V_p(α) for every annotated part, with the visibility / forehead / hair filters applied."""
        obs = self.observation
        parts: dict[str, PointSet] = {}
        for name, idx in self.part_vertices.items():
            if idx.numel() == 0:
                continue
            pts = points2d[:, idx]
            valid = visible[:, idx].clone()
            if obs.forehead_line is not None:
                line = obs.forehead_line.to(pts.dtype)
                side = pts[..., 0] * line[:, None, 0] + pts[..., 1] * line[:, None, 1] + line[:, None, 2]
                valid &= side.detach() >= 0
            if name == "skin" and obs.hair is not None:
                s = obs.size
                col = pts[..., 0].detach().round().long().clamp(0, s - 1)
                row = pts[..., 1].detach().round().long().clamp(0, s - 1)
                batch = torch.arange(pts.shape[0], device=pts.device)[:, None]
                valid &= ~obs.hair[batch, row, col]
            parts[name] = PointSet(pts, valid)
        return parts

    def __call__(self, params: FitParameters, render_image: bool = False) -> Prediction:
        model = self.model
        out = model(params.identity, params.expression, params.albedo)
        rotation = params.rotation_matrix()
        verts_cam = transform_points(out.vertices, rotation, params.translation)
        points2d, depth = self.camera.project(verts_cam)
        visible = self.visibility(points2d, depth, verts_cam)
        self._calls += 1
        image = mask = None
        if render_image:
            normals = vertex_normals(verts_cam, model.triangles)
            size = self.observation.size
            image, mask = render_shaded(points2d, depth, model.triangles, normals, (size, size),
                                        albedo=out.albedo, light=params.lighting)
        dense = None
        if self.dense_index is not None:
            dense = points2d[:, self.dense_index]
        coeffs = {"identity": params.identity, "expression": params.expression,
                  "rotation": params.rotation, "translation": params.translation}
        if params.albedo is not None:
            coeffs["albedo"] = params.albedo
        if params.lighting is not None:
            coeffs["lighting"] = params.lighting
        return Prediction(
            vertices=out.vertices,
            vertices_cam=verts_cam,
            points2d=points2d,
            depth=depth,
            visible=visible,
            triangles=model.triangles,
            part_labels=model.part_labels,
            landmarks68=self._marched_landmarks(points2d, rotation),
            landmarks=dense,
            landmark_valid=self.dense_valid,
            parts=self.part_points(points2d, visible),
            coefficients=coeffs,
            image=image,
            image_mask=mask,
        )
