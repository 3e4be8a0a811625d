"""The renders Algorithm 1 annotates from: random instances of the model with known coefficients, seen by the
same landmark detector and part segmenter that fit3dmm runs on photos."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.instances import SyntheticConfig, render_instance, sample_coefficients, to_uint8
from fit3dmm.models.regressor import CoefficientLayout, Coefficients
from fit3dmm.observe.crop import crop_box, crop_matrix
from fit3dmm.observe.detect import LandmarkDetector
from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.render.rasterize import vertex_visibility

Segmenter = Callable[[np.ndarray, tuple[int, int], np.ndarray], np.ndarray]
"""``segmenter(landmarks (L, 2), (H, W), image) -> labels (H, W)``: part index per pixel, −1 none."""


@dataclass
class AnnotationView:
    """One render and what was measured on it.

    Attributes:
        image: (S, S, 3) uint8 RGB.
        points2d: (V, 2) every model vertex projected into the image (pixels).
        vertices_cam: (V, 3) every model vertex in camera space (cm).
        visible: (V,) bool, facing the camera and not occluded (a z-buffer test).
        landmarks: (L, 2) the detector's landmarks in the image, or None when it found no face.
        labels: (S, S) the segmenter's part labels (−1 none), or None without landmarks.
    """

    image: np.ndarray
    points2d: np.ndarray
    vertices_cam: np.ndarray
    visible: np.ndarray
    landmarks: np.ndarray | None
    labels: np.ndarray | None

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Image points (..., 2) in the pixels of the ``size`` crop the observe path would cut around the
        detected landmarks (where landmark noise is measured)."""
        left, top, side = crop_box(self.landmarks)
        inverse = np.linalg.inv(crop_matrix(left, top, side, size))
        return points @ inverse[:2, :2].T + inverse[:2, 2]


SEED_STREAM = 1_000_000
"""Annotation renders draw the instances of seed ``SEED_STREAM + seed``: never those of the synthetic benchmark
(seed 0) or of training, so that no benchmark face is used to build the model's annotation."""


def framed(model: FaceModel, coeffs: Coefficients, size: int, face_fraction: float) -> Coefficients:
    """``coeffs`` with the translation that centres the face region and makes its height ``face_fraction`` of
    the image (as a face in a portrait photo), whatever the landmarks the model has."""
    camera = PerspectiveCamera.for_crop(size, 1)
    region = model.face_vertices
    verts = model(coeffs.identity, coeffs.expression).vertices[0, region]
    height = float(verts[:, 1].max() - verts[:, 1].min())
    distance = float(camera.focal[0]) * height / (face_fraction * size)
    centre = verts.mean(0)
    translation = torch.tensor([0.0, 0.0, -distance]) - coeffs.rotation_matrix()[0] @ centre
    return replace(coeffs, translation=translation[None])


def render_views(model: FaceModel, count: int, size: int, seed: int, detector: LandmarkDetector,
                 segmenter: Segmenter, progress: Callable[[int, int], None] | None = None,
                 face_fraction: float = 0.6) -> list[AnnotationView]:
    """``count`` renders of random instances (:mod:`fit3dmm.models.instances`, seed ``SEED_STREAM + seed``)
    framed by :func:`framed`, each detected and segmented."""
    layout = CoefficientLayout.for_model(model, size)
    config = SyntheticConfig(size=size, seed=SEED_STREAM + seed)
    views = []
    for index in range(count):
        with torch.no_grad():
            coeffs = framed(model, sample_coefficients(layout, config, index), size, face_fraction)
            rendered = render_instance(model, coeffs, size, (config.seed, index))
            visible = vertex_visibility(rendered.points2d, rendered.depth, model.triangles, (size, size),
                                        rendered.normals)
        image = to_uint8(rendered.image)
        found = detector.detect(image)
        landmarks = found[0].landmarks if found else None
        labels = None if landmarks is None else segmenter(landmarks, image.shape[:2], image)
        views.append(AnnotationView(image, rendered.points2d[0].cpu().double().numpy(),
                                    rendered.vertices_cam[0].cpu().double().numpy(), visible[0].cpu().numpy(),
                                    landmarks, labels))
        if progress is not None:
            progress(index + 1, count)
    return views
