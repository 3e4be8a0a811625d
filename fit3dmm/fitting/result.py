"""The outcome of a fit, in the spirit of smplx's named outputs."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from fit3dmm.observe.observation import Observation
from fit3dmm.render.camera import PerspectiveCamera


@dataclass
class FitResult:
    """Fitted coefficients and geometry for B faces.

    Attributes:
        coefficients: by name: ``identity`` (B, K), ``expression`` (B, E), ``rotation`` (B, 3) axis-angle,
            ``translation`` (B, 3) cm, optionally ``albedo`` (B, Ka) and ``lighting`` (B, 27) SH.
        vertices: (B, V, 3) full-model vertices in model space (cm), before the rigid motion.
        triangles: (T, 3) the full model's triangles.
        face_triangles: (T', 3) the triangles of the fitted face region (full-model indices), for overlays.
        vertices_cam: (B, V, 3) the same in camera space (cm).
        vertices_photo: (B, V, 2) full-model vertices projected into photo pixels.
        rotation: (B, 3, 3) model→camera rotation.
        pose_deg: (B, 3) yaw, pitch, roll in degrees (convention of :mod:`fit3dmm.render.camera`).
        camera: the camera in crop pixels (focal, principal point).
        observation: the Observation the fit used (crop transform, landmarks, masks).
        landmarks68_photo: (B, 68, 2) projected fitted landmarks in photo pixels.
        landmarks68_cam: (B, 68, 3) the fitted landmarks in camera space (cm).
        losses: final unweighted value of each loss term, (B,) each.
        weights: the weight of each loss term.
        history: total loss per iteration, (iterations, B).
        timings: seconds spent per stage.
        expression_names: names of the expression coefficients (ARKit names for ICT).
        model_info: the model's :meth:`~fit3dmm.models.face_model.FaceModel.describe`.
        status: per item, "ok" or why the fit failed (e.g. "diverged").
    """

    coefficients: dict[str, Tensor]
    vertices: Tensor
    triangles: Tensor
    face_triangles: Tensor
    vertices_cam: Tensor
    vertices_photo: Tensor
    rotation: Tensor
    pose_deg: Tensor
    camera: PerspectiveCamera
    observation: Observation
    landmarks68_photo: Tensor
    landmarks68_cam: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    history: Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)
    expression_names: list[str] = field(default_factory=list)
    model_info: dict[str, object] = field(default_factory=dict)
    status: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.vertices.shape[0]
