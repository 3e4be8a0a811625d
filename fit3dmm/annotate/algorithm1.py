"""The paper's Algorithm 1: annotate a face model from renders of itself, and ensure a model has it.

Render the model in many identities, expressions and poses (:mod:`~fit3dmm.annotate.views`); run the same
landmark detector and part segmenter that fit3dmm runs on photos; then

* part labels: each visible vertex votes for the label of the pixel it lands on, made symmetric, small
  islands dropped (:mod:`~fit3dmm.annotate.parts`);
* landmarks: each detected landmark becomes a fixed point on the surface that reprojects best, with its
  measured noise (:mod:`~fit3dmm.annotate.landmarks`);
* eye openings: samples over the lid opening, where the face mesh is open at the eyes
  (:mod:`~fit3dmm.annotate.eyes`).

The results make PRDL's V_p(α) and the landmark term use exactly the semantics of the photo side, and are
cached with the model (reproducible for a given number of views and seed).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from fit3dmm.annotate.eyes import eye_openings
from fit3dmm.annotate.landmarks import fit_correspondence
from fit3dmm.annotate.parts import part_labels
from fit3dmm.annotate.views import AnnotationView, Segmenter, render_views
from fit3dmm.defaults import ANNOTATION_VIEWS
from fit3dmm.models.assets import FaceModelAssets
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.detect import LandmarkDetector
from fit3dmm.render.camera import PerspectiveCamera, euler_to_matrix, transform_points
from fit3dmm.render.shading import render_shaded, vertex_normals


@dataclass
class AnnotationConfig:
    """Algorithm 1's renders and settings: how many, how big, the seed of the random instances; the islands
    dropped from part labels; the support and ridge of the landmark fit."""

    views: int = ANNOTATION_VIEWS
    size: int = 448
    seed: int = 0
    min_island: float = 0.05
    support: int = 24
    ridge: float = 1.0


def annotation_inputs(model_checksum: str, config: AnnotationConfig, detector: str) -> str:
    """sha256 of everything Algorithm 1's result depends on besides the code: the model data (its checksum),
    the settings and the detector with its installed version.  Recorded with the assets (``source["inputs"]``)
    so that shipped assets can be checked against what the code would build."""
    try:
        version = metadata.version(detector)
    except metadata.PackageNotFoundError:
        version = ""
    text = json.dumps({"model": model_checksum, "config": asdict(config), "detector": detector,
                       "version": version}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def annotate_model(
    model: FaceModel,
    detector: LandmarkDetector,
    segmenter: Segmenter,
    config: AnnotationConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FaceModelAssets:
    """Run Algorithm 1 on ``model``.

    Args:
        detector: the landmark backend used on photos (mediapipe).
        segmenter: the built-in segmenter used on photos (:func:`landmark_part_labels`).
        progress: called as ``progress(done, total)`` after each render.
    Returns:
        assets with part labels (V,), the landmark correspondence and the eye openings, in full-model
        vertex indices.
    """
    config = config or AnnotationConfig()
    region = model.face_vertices.cpu().numpy()
    mean = model.mean.cpu().numpy()
    region_triangles = model.region().triangles.cpu().numpy()

    def votes(views: list[AnnotationView]) -> np.ndarray:
        if not any(v.landmarks is not None for v in views):
            raise RuntimeError(f"{model.name}: the detector found no face in any of {len(views)} renders")
        return part_labels(views, region, mean[region], region_triangles, model.num_vertices, config.min_island)

    # a first, plain pass gives the part labels that tint brows, lips and eyes in the renders of the second;
    # plain means without any labels the model already has, so that the result depends on the inputs alone
    untinted = copy.copy(model)
    untinted.assets = FaceModelAssets()
    plain = render_views(untinted, max(1, config.views // 4), config.size, config.seed + 1, detector, segmenter)
    tinted = copy.copy(model)
    tinted.assets = FaceModelAssets(part_labels=votes(plain))
    views = render_views(tinted, config.views, config.size, config.seed, detector, segmenter, progress)
    labels = votes(views)
    detected = sum(v.landmarks is not None for v in views)
    triangles = region[region_triangles]
    landmarks = fit_correspondence(views, region, mean[region], triangles, detector.num_landmarks,
                                   config.support, config.ridge)
    source = {"method": "Algorithm 1 (Wang et al. CVPR 2024) on model renders; landmarks fitted on renders",
              "views": str(config.views), "detected": str(detected), "seed": str(config.seed),
              "size": str(config.size), "detector": detector.name,
              "inputs": annotation_inputs(model.checksum, config, detector.name)}
    openings, labels = eye_openings(mean, triangles, labels)
    return FaceModelAssets(part_labels=labels, landmarks=landmarks, eye_openings=openings, source=source)


def annotation_figure(model: FaceModel, size: int = 512, yaws: tuple[float, ...] = (0.0, 60.0)) -> np.ndarray:
    """The neutral mesh coloured by part (grey where none), one view per yaw, side by side: (size, n·size, 3)."""
    from fit3dmm.types.parts import PART_COLORS

    camera = PerspectiveCamera.for_crop(size, 1, device=model.mean.device)
    verts = model().vertices
    region = model.face_vertices
    height = float(verts[0, region, 1].max() - verts[0, region, 1].min())
    distance = float(camera.focal[0]) * height / (0.8 * size)
    centre = verts[:, region].mean(1)
    labels = model.part_labels
    palette = torch.tensor(PART_COLORS, dtype=torch.float32, device=verts.device) / 255.0
    base = torch.full((model.num_vertices, 3), 0.75, device=verts.device)
    base[labels >= 0] = palette[labels[labels >= 0]]
    panels = []
    with torch.no_grad():
        for yaw in yaws:
            rotation = euler_to_matrix(torch.tensor([[yaw, 0.0, 0.0]], device=verts.device))
            translation = torch.tensor([[0.0, 0.0, -distance]], device=verts.device) - (
                rotation @ centre[..., None])[..., 0]
            cam = transform_points(verts, rotation, translation)
            pix, depth = camera.project(cam)
            normals = vertex_normals(cam, model.triangles)
            image, mask = render_shaded(pix, depth, model.triangles, normals, (size, size), albedo=base[None])
            image = image + (1.0 - mask)  # white background
            panels.append((image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy())
    return np.concatenate(panels, axis=1)


def landmark_part_labels(landmarks: np.ndarray, size: tuple[int, int], image: np.ndarray) -> np.ndarray:
    """The built-in segmenter as Algorithm 1 uses it: labels (H, W) from FaceMesh landmarks.  Renders have
    no hair, so the image is not consulted for it."""
    from fit3dmm.observe.segment import segment_from_landmarks

    return segment_from_landmarks(landmarks, size, None).labels


def is_annotated(model: FaceModel) -> bool:
    """Whether ``model`` has part labels and a landmark correspondence."""
    return model.has_parts and model.assets.landmarks is not None


def ensure_annotations(model: FaceModel, config: AnnotationConfig | None = None,
                       progress: Callable[[int, int], None] | None = None, force: bool = False,
                       folder: str | Path | None = None) -> FaceModel:
    """Give ``model`` part labels, a landmark correspondence and eye openings, running Algorithm 1 once and
    caching the result in the user's model cache, or in the model ``folder`` when given (how the shipped
    model's assets are made; :func:`fit3dmm.models.store.save_assets`); a no-op when present."""
    from fit3dmm.models.store import save_assets
    from fit3dmm.observe.detect import MediaPipeDetector

    if not force and is_annotated(model):
        return model
    with MediaPipeDetector(max_faces=1) as detector:
        assets = annotate_model(model, detector, landmark_part_labels, config, progress)
    if model.has_parts and not force:  # keep the model's own part labels (3DDFA-V3 ships them)
        assets.part_labels = model.assets.part_labels
    model.assets = assets
    save_assets(model, assets, folder)
    return model
