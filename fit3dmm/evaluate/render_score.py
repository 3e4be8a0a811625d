"""Part IoU the paper's way: segment a render of the fit, not the model's own part labels.

:func:`~fit3dmm.metrics.fit_metrics.render_fit_labels` rasterises the Algorithm 1 vertex labels, the very
labels that PRDL, chamfer and ICP pull onto the target masks, so it favours those losses (issue #13).  The
paper instead renders the fitted mesh with a mean texture at the fitted pose in the photo frame, segments the
render with its face parser and scores that against the reference labels.  This module does the same with
fit3dmm's own parser:

1. :func:`render_fit_photo`: the fitted mesh, uniform grey with headlight shading (the look that mediapipe
   detects as a face, :func:`~fit3dmm.render.shading.render_shaded`'s default), at the photo's resolution
   with the crop undone (the fit's crop camera followed by ``crop_to_photo``, as ``FitResult.vertices_photo``),
   on a plain grey background.  No part colour is painted, so the vertex labels cannot leak into the score;
   uniform grey stands in for the mean texture so that every model (with an albedo or not) looks the same.
2. :func:`segment_render`: mediapipe FaceMesh on the render, then the built-in landmark segmenter
   (:func:`~fit3dmm.observe.segment.segment_from_landmarks`, without its hair step, which reads skin colour).
3. :func:`render_segment_iou`: the IoU of each scored group
   (:func:`~fit3dmm.metrics.part_iou.merged_part_iou`, groups as in :mod:`fit3dmm.metrics.fit_metrics`)
   against the reference masks.  A render in which no face is found is not scored: the result carries the
   reason instead, and the caller counts such photos.

A fit equal to the reference's own render therefore scores exactly 1 (the whole chain is deterministic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fit3dmm.metrics.fit_metrics import PART_GROUPS
from fit3dmm.metrics.part_iou import merged_part_iou
from fit3dmm.models.instances import to_uint8
from fit3dmm.observe.crop import apply_affine
from fit3dmm.observe.detect import LandmarkDetector
from fit3dmm.observe.segment import segment_from_landmarks
from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.render.rasterize import triangle_winding
from fit3dmm.render.shading import render_shaded, vertex_normals
from fit3dmm.types.parts import NUM_PARTS
from fit3dmm.types.result import FitResult

BACKGROUND = 128
"""Grey level (uint8) of the render's plain background."""
NOT_IN_PHOTO = "the fitted mesh covers no pixel of the photo"
NO_FACE = "no face detected in the render of the fit"


@dataclass(frozen=True)
class RenderSegmentScore:
    """The score of one fit.

    Attributes:
        iou: (G,) float64 IoU per scored group (NaN where the reference has none of the group), or None when
            the render was not segmented.
        labels: (H, W) int64 part labels segmented on the render (−1 none), or None with ``iou``.
        reason: why the fit was not scored (:data:`NOT_IN_PHOTO`, :data:`NO_FACE`), None when scored.
    """

    iou: np.ndarray | None
    labels: np.ndarray | None
    reason: str | None


def render_fit_photo(
    vertices_cam: Tensor,
    triangles: Tensor,
    camera: PerspectiveCamera,
    crop_to_photo: Tensor | np.ndarray,
    photo_shape: tuple[int, int],
) -> np.ndarray:
    """The fitted mesh shaded grey in the photo's pixel frame (module docstring, step 1).

    Rendered on the CPU in float64 whatever the fit's device, so the same fit gives the same pixels.

    Args:
        vertices_cam: (V, 3) the fitted vertices in camera space (cm), e.g. ``result.vertices_cam[b]``.
        triangles: (T, 3) int64 the triangles to draw (``result.triangles``, the full mesh).
        camera: the fit's crop camera for this face (batch of one).
        crop_to_photo: (3, 3) affine map from crop pixels to photo pixels (``observation.crop_to_photo[b]``).
        photo_shape: (H, W) of the photo.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    verts = torch.as_tensor(vertices_cam).detach().cpu().double()
    if verts.ndim != 2 or verts.shape[1] != 3 or not bool(torch.isfinite(verts).all()):
        raise ValueError(f"vertices_cam must be finite (V, 3), got {tuple(verts.shape)}")
    if camera.focal.shape != (1,) or camera.principal.shape != (1, 2):
        raise ValueError(f"camera must hold one face (focal (1,), principal (1, 2)), got "
                         f"{tuple(camera.focal.shape)} and {tuple(camera.principal.shape)}")
    affine = np.asarray(torch.as_tensor(crop_to_photo).detach().cpu().double())
    if affine.shape != (3, 3) or not np.allclose(affine[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"crop_to_photo must be a (3, 3) affine matrix (last row 0, 0, 1), got {affine.shape}")
    if len(photo_shape) != 2 or min(photo_shape) < 1:
        raise ValueError(f"photo_shape must be (H, W) with H, W ≥ 1, got {photo_shape}")
    tri = torch.as_tensor(triangles).cpu()
    camera = PerspectiveCamera(camera.focal.detach().cpu().double(), camera.principal.detach().cpu().double())
    crop_pix, depth = camera.project(verts[None])
    pix = torch.from_numpy(apply_affine(affine, crop_pix[0].double().numpy()))[None]
    normals = vertex_normals(verts[None], tri)
    front = tri[triangle_winding(pix, tri)[0] < 0]  # the z-buffer hides back faces anyway: skip them
    image, mask = render_shaded(pix, depth, front, normals, (int(photo_shape[0]), int(photo_shape[1])))
    return to_uint8(image * mask + BACKGROUND / 255.0 * (1.0 - mask))


def segment_render(image: np.ndarray, detector: LandmarkDetector) -> np.ndarray | None:
    """Part labels of a render (module docstring, step 2): (H, W) int64, −1 none; None when ``detector`` (a
    FaceMesh backend in image mode, not tracking) finds no face.  The largest face found is segmented."""
    found = detector.detect(image)
    if not found:
        return None
    return segment_from_landmarks(found[0].landmarks, image.shape[:2]).labels


def render_segment_iou(
    result: FitResult,
    index: int,
    reference_masks: np.ndarray | Tensor,
    detector: LandmarkDetector,
    groups: Mapping[str, Sequence[str]] = PART_GROUPS,
) -> RenderSegmentScore:
    """Score face ``index`` of a fit by segmenting its render (module docstring).

    Args:
        result: a fit of B faces.
        index: the face to score.
        reference_masks: (8, H, W) bool reference part masks in photo pixels
            (:data:`~fit3dmm.types.parts.PART_NAMES` order; ``FitTarget.masks``).
        detector: FaceMesh backend in image mode (e.g. ``MediaPipeDetector(max_faces=1)``).
        groups: unions of parts to score (e.g. :data:`~fit3dmm.metrics.fit_metrics.FASSEG_GROUPS`); default
            every part on its own.
    Returns:
        the IoU per group (in the order of ``groups``) and the segmented labels, or the reason it is unscored.
    """
    if not 0 <= index < result.batch_size:
        raise IndexError(f"face index {index} is outside the batch of {result.batch_size}")
    width, height = (int(v) for v in result.observation.photo_size[index].round())
    masks = torch.as_tensor(reference_masks).cpu()
    if masks.shape != (NUM_PARTS, height, width) or masks.dtype != torch.bool:
        raise ValueError(f"reference_masks must be bool ({NUM_PARTS}, {height}, {width}) like the photo, got "
                         f"{masks.dtype} {tuple(masks.shape)}")
    camera = PerspectiveCamera(result.camera.focal[index: index + 1], result.camera.principal[index: index + 1])
    image = render_fit_photo(result.vertices_cam[index], result.triangles, camera,
                             result.observation.crop_to_photo[index], (height, width))
    if bool((image == BACKGROUND).all()):
        return RenderSegmentScore(None, None, NOT_IN_PHOTO)
    labels = segment_render(image, detector)
    if labels is None:
        return RenderSegmentScore(None, None, NO_FACE)
    iou = merged_part_iou(labels[None], masks.numpy()[None], groups)[0]
    return RenderSegmentScore(iou, labels, None)
