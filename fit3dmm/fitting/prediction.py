"""Turn the current coefficients into a :class:`~fit3dmm.losses.base.Prediction`.

This is where the paper's prediction-side rules live: V_p(α) keeps only the vertices of part p that are
visible for the current pose, lie below the forehead line of the target, and (for skin) do not fall on
pixels the target marks as hair.  The eyes are the samples over the visible openings between the lids where
the model has them (:mod:`fit3dmm.annotate.eyes`), not the eyeball behind.  The landmarks are the model's
landmark correspondence (:mod:`fit3dmm.fitting.landmarks`) with their noise for the current pose.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fit3dmm.fitting.landmarks import DENSE, LandmarkSupport
from fit3dmm.losses.base import Prediction
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.detect import MEDIAPIPE_TO_68
from fit3dmm.render.camera import PerspectiveCamera, transform_points
from fit3dmm.render.rasterize import vertex_visibility
from fit3dmm.render.shading import render_shaded, vertex_normals
from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.parts import PART_NAMES


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
        openings = model.assets.eye_openings
        self.part_vertices = {p: torch.nonzero(labels == i).flatten() for i, p in enumerate(PART_NAMES)
                              if p not in openings}
        self.openings = {p: (torch.as_tensor(s.triangles, device=device), torch.as_tensor(s.bary, device=device))
                         for p, s in openings.items()}
        self.landmarks = LandmarkSupport.of(model)
        self._visible: Tensor | None = None
        self._calls = 0

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
        sets: dict[str, tuple[Tensor, Tensor]] = {}
        for name, idx in self.part_vertices.items():
            if idx.numel():
                sets[name] = (points2d[:, idx], visible[:, idx].clone())
        for name, (tri, bary) in self.openings.items():
            pts = (points2d[:, tri] * bary.to(points2d)[..., None]).sum(-2)
            sets[name] = (pts, visible[:, tri].all(-1))
        parts: dict[str, PointSet] = {}
        for name in PART_NAMES:
            if name not in sets:
                continue
            pts, valid = sets[name]
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

    def __call__(self, params, render_image: bool = False) -> Prediction:
        """The prediction of ``params`` (coefficients with ``identity``, ``expression``, ``translation``,
        ``albedo``, ``lighting`` and ``rotation_matrix()``: a :class:`~fit3dmm.fitting.params.FitParameters`
        or a regressor's output)."""
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
        lmk_cam, lmk_normals = self.landmarks.points(verts_cam)
        landmarks, _ = self.camera.project(lmk_cam)
        sigma = self.landmarks.noise(lmk_normals, lmk_cam, self.observation.size)
        coeffs = {"identity": params.identity, "expression": params.expression,
                  "rotation": params.rotation, "translation": params.translation}
        if params.albedo is not None:
            coeffs["albedo"] = params.albedo
        if params.lighting is not None:
            coeffs["lighting"] = params.lighting
        dense = self.landmarks.target == DENSE
        return Prediction(
            vertices=out.vertices,
            vertices_cam=verts_cam,
            points2d=points2d,
            depth=depth,
            visible=visible,
            triangles=model.triangles,
            part_labels=model.part_labels,
            landmarks68=landmarks[:, MEDIAPIPE_TO_68] if dense else landmarks,
            landmarks=landmarks,
            landmark_sigma=sigma,
            landmark_target=self.landmarks.target,
            parts=self.part_points(points2d, visible),
            coefficients=coeffs,
            image=image,
            image_mask=mask,
        )
