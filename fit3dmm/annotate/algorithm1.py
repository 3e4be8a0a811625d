"""The paper's Algorithm 1: annotate a face model from renders of itself.

Render the model (grey, shaded) in many identities, expressions and poses; run the same landmark detector
and part segmenter that fit3dmm runs on photos; give each visible vertex the part label of the pixel it
lands on, and give each detected landmark its nearest visible vertex; vote over all renders.  Then clean
up: enforce left/right symmetry through the mesh's mirror map and drop small disconnected islands.

The results (``part_labels`` (V,), ``dense_landmarks`` (478,)) make PRDL's V_p(α) and the dense landmark
loss use exactly the semantics of the photo side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import torch
from scipy.spatial import cKDTree

from fit3dmm.models.face_model import FaceModel, FaceModelAssets
from fit3dmm.observe.detect import LandmarkDetector
from fit3dmm.render.camera import PerspectiveCamera, euler_to_matrix, transform_points
from fit3dmm.render.rasterize import vertex_visibility
from fit3dmm.render.shading import render_shaded, vertex_normals
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES

# swap subject-left and subject-right parts (mirror symmetry)
MIRROR_PART = np.array([PART_INDEX[n.replace("left", "@").replace("right", "left").replace("@", "right")]
                        for n in PART_NAMES])


@dataclass
class AnnotationConfig:
    """Renders for Algorithm 1: how many, how big, and the ranges of the random draws."""

    views: int = 40
    size: int = 512
    seed: int = 0
    identity_std: float = 0.8
    expression_max: float = 0.5
    expression_active: int = 4
    yaw_range: float = 35.0
    pitch_range: float = 15.0
    roll_range: float = 10.0
    face_fraction: float = 0.75
    min_island: float = 0.05


@dataclass
class RenderedView:
    """One render: the image, the region vertices' pixels and their visibility."""

    image: np.ndarray
    points2d: np.ndarray
    visible: np.ndarray


def mirror_map(vertices: np.ndarray) -> np.ndarray:
    """(V,) index of each vertex's mirror partner (x → −x) by nearest neighbour."""
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    return cKDTree(vertices).query(mirrored)[1]


def render_views(model: FaceModel, config: AnnotationConfig) -> list[RenderedView]:
    """Grey shaded renders of random instances of ``model`` (full mesh drawn, region vertices reported)."""
    gen = torch.Generator().manual_seed(config.seed)
    device = model.mean.device
    camera = PerspectiveCamera.for_crop(config.size, 1, device=device)
    region = model.face_vertices
    height = float(model.mean[region, 1].max() - model.mean[region, 1].min())
    distance = float(camera.focal[0]) * height / (config.face_fraction * config.size)
    views = []
    for _ in range(config.views):
        identity = config.identity_std * torch.randn(1, model.num_identity, generator=gen)
        expression = torch.zeros(1, model.num_expression)
        active = torch.randperm(model.num_expression, generator=gen)[: config.expression_active]
        high = model.expression_range[1] if model.expression_range else 1.0
        expression[0, active] = torch.rand(len(active), generator=gen) * config.expression_max * high
        angles = (torch.rand(1, 3, generator=gen) * 2 - 1) * torch.tensor(
            [config.yaw_range, config.pitch_range, config.roll_range])
        verts = model(identity.to(device), expression.to(device)).vertices
        centre = verts[:, region].mean(1)
        rotation = euler_to_matrix(angles.to(device))
        translation = torch.tensor([[0.0, 0.0, -distance]], device=device) - (rotation @ centre[..., None])[..., 0]
        cam = transform_points(verts, rotation, translation)
        pix, depth = camera.project(cam)
        normals = vertex_normals(cam, model.triangles)
        image, _ = render_shaded(pix, depth, model.triangles, normals, (config.size, config.size))
        visible = vertex_visibility(pix, depth, model.triangles, (config.size, config.size), normals)
        rgb = (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
        views.append(RenderedView(rgb, pix[0, region].cpu().numpy(), visible[0, region].cpu().numpy()))
    return views


def vote_landmarks(views: list[RenderedView], detections: list[np.ndarray | None], num_vertices: int,
                   num_landmarks: int) -> np.ndarray:
    """For each landmark the region vertex that was most often the nearest visible one; −1 if never seen."""
    votes = np.zeros((num_landmarks, num_vertices), dtype=np.int32)
    for view, lmk in zip(views, detections, strict=True):
        if lmk is None:
            continue
        idx = np.flatnonzero(view.visible)
        nearest = idx[cKDTree(view.points2d[idx]).query(lmk)[1]]
        votes[np.arange(num_landmarks), nearest] += 1
    best = votes.argmax(1)
    return np.where(votes.max(1) > 0, best, -1).astype(np.int64)


def vote_parts(views: list[RenderedView], label_maps: list[np.ndarray | None], num_vertices: int) -> np.ndarray:
    """(V, P + 1) votes: column p for part p, the last for "no part" (a visible vertex on unlabelled pixels)."""
    votes = np.zeros((num_vertices, NUM_PARTS + 1), dtype=np.float64)
    for view, labels in zip(views, label_maps, strict=True):
        if labels is None:
            continue
        h, w = labels.shape
        idx = np.flatnonzero(view.visible)
        col = np.clip(np.round(view.points2d[idx, 0]).astype(int), 0, w - 1)
        row = np.clip(np.round(view.points2d[idx, 1]).astype(int), 0, h - 1)
        lab = labels[row, col]
        lab = np.where(lab < 0, NUM_PARTS, lab)
        np.add.at(votes, (idx, lab), 1.0)
    return votes


def symmetrize_votes(votes: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Add each vertex's mirror partner's votes with left and right parts swapped."""
    swapped = votes[mirror][:, np.append(MIRROR_PART, NUM_PARTS)]
    return votes + swapped


def drop_islands(labels: np.ndarray, triangles: np.ndarray, min_fraction: float) -> np.ndarray:
    """Per part, drop connected components (over mesh edges within the part) smaller than ``min_fraction``
    of the part's largest component; dropped vertices become −1."""
    labels = labels.copy()
    n = len(labels)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    for part in range(NUM_PARTS):
        inside = labels == part
        if not inside.any():
            continue
        e = edges[inside[edges[:, 0]] & inside[edges[:, 1]]]
        graph = scipy.sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
        _, comp = scipy.sparse.csgraph.connected_components(graph, directed=False)
        sizes = np.bincount(comp[inside], minlength=comp.max() + 1)
        small = sizes < min_fraction * sizes.max()
        labels[inside & small[comp]] = -1
    return labels


def annotate_model(
    model: FaceModel,
    detector: LandmarkDetector,
    segmenter: Callable[[np.ndarray, tuple[int, int], np.ndarray], np.ndarray],
    config: AnnotationConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FaceModelAssets:
    """Run Algorithm 1 on ``model``.

    Args:
        detector: the landmark backend used on photos (mediapipe).
        segmenter: ``segmenter(landmarks (L, 2), (H, W), image) -> labels (H, W)`` with part indices and −1,
            the built-in segmenter used on photos.
        progress: called as ``progress(done, total)`` after each render.
    Returns:
        assets with ``part_labels`` (V,) and ``dense_landmarks`` (L,) in full-model vertex indices.
    """
    config = config or AnnotationConfig()
    with torch.no_grad():
        views = render_views(model, config)
    region = model.face_vertices.cpu().numpy()
    detections: list[np.ndarray | None] = []
    label_maps: list[np.ndarray | None] = []
    for i, view in enumerate(views):
        found = detector.detect(view.image)
        lmk = found[0].landmarks if found else None
        detections.append(lmk)
        label_maps.append(None if lmk is None else segmenter(lmk, view.image.shape[:2], view.image))
        if progress is not None:
            progress(i + 1, len(views))
    detected = sum(d is not None for d in detections)
    if detected == 0:
        raise RuntimeError(f"{model.name}: the detector found no face in any of {len(views)} renders")
    region_mean = model.mean[region].cpu().numpy()
    region_tri = model.region().triangles.cpu().numpy()
    mirror = mirror_map(region_mean)
    votes = symmetrize_votes(vote_parts(views, label_maps, len(region)), mirror)
    labels_region = np.where(votes.sum(1) > 0, votes.argmax(1), NUM_PARTS)
    labels_region = np.where(labels_region == NUM_PARTS, -1, labels_region)
    labels_region = drop_islands(labels_region, region_tri, config.min_island)
    part_labels = np.full(model.num_vertices, -1, dtype=np.int64)
    part_labels[region] = labels_region
    dense_region = vote_landmarks(views, detections, len(region), detector.num_landmarks)
    dense = np.where(dense_region >= 0, region[np.maximum(dense_region, 0)], -1)
    source = {"method": "Algorithm 1 (Wang et al. CVPR 2024) on model renders",
              "views": str(config.views), "detected": str(detected), "seed": str(config.seed),
              "size": str(config.size), "detector": detector.name}
    return FaceModelAssets(part_labels=part_labels, dense_landmarks=dense.astype(np.int64), source=source)


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


def ensure_annotations(model: FaceModel, config: AnnotationConfig | None = None,
                       progress: Callable[[int, int], None] | None = None, force: bool = False) -> FaceModel:
    """Give ``model`` part labels and dense landmarks, running Algorithm 1 once and caching the result
    in the user's model cache (:func:`fit3dmm.models.store.save_assets`); a no-op when present."""
    from fit3dmm.models.store import save_assets
    from fit3dmm.observe.detect import MediaPipeDetector

    if not force and model.has_parts and model.assets.dense_landmarks is not None:
        return model
    with MediaPipeDetector(max_faces=1) as detector:
        assets = annotate_model(model, detector, landmark_part_labels, config, progress)
    if model.has_parts and not force:  # keep the model's own part labels (3DDFA-V3 ships them)
        assets.part_labels = model.assets.part_labels
    model.assets = assets
    save_assets(model, assets)
    return model
