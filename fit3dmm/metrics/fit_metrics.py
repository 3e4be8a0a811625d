"""Metrics of a :class:`~fit3dmm.types.result.FitResult` against photo-level ground truth.

* **Part IoU of a fit** (the paper's Table 1 metric, with a renderer standing in for its parser).  The fitted
  mesh's face-region triangles (``result.face_triangles``) are rasterised with a hard z-buffer at the photo's
  resolution from ``result.vertices_photo`` and the camera depth ``−vertices_cam[..., 2]``; each covered pixel
  takes the part label of its winning triangle's nearest corner (:func:`~fit3dmm.render.rasterize.render_labels`
  with the model's ``part_labels``), so only visible parts count.  The paper segments a render of the fit with
  a face-parsing network instead, which we do not have.  The label map is then scored with
  :func:`~fit3dmm.metrics.part_iou.part_iou` / :func:`~fit3dmm.metrics.part_iou.merged_part_iou`.

  Only the fitted region is drawn (for ICT-FaceKit it includes the eyeballs, whose fronts Algorithm 1 labels
  as eyes, so the eye openings are covered).

* **Landmark NME of a fit**: the projected fitted 68 landmarks (``result.landmarks68_photo``: the model's landmark
  correspondence at the 68 points, as the detector's 478 map to them) against ground-truth points,
  :func:`~fit3dmm.metrics.nme.nme` (bounding-box size).
* **Pose error of a fit**: ``result.pose_deg`` against ground truth, :func:`~fit3dmm.metrics.pose.pose_mae`.

Batches whose photos differ in size are rendered into a common (H_max, W_max) frame, top-left aligned; pixels
outside an item's own photo are set to −1, so the labels equal a render at each photo's own size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from fit3dmm.metrics._array import ArrayLike, as_tensor
from fit3dmm.metrics.nme import nme
from fit3dmm.metrics.part_iou import merged_part_iou, part_iou
from fit3dmm.metrics.pose import pose_mae
from fit3dmm.render.rasterize import render_labels
from fit3dmm.types.parts import NUM_PARTS, PART_NAMES
from fit3dmm.types.result import FitResult

#: every part scored on its own
PART_GROUPS: dict[str, tuple[str, ...]] = {name: (name,) for name in PART_NAMES}
#: FASSEG's classes as unions of fit3dmm parts (FASSEG has one eye class, one mouth class and paints the brows
#: as hair, so brows have no class).
FASSEG_GROUPS: dict[str, tuple[str, ...]] = {
    "eyes": ("left_eye", "right_eye"),
    "nose": ("nose",),
    "mouth": ("up_lip", "down_lip"),
    "skin": ("skin",),
}
#: The same with each eye scored on its own as well (FASSEG's eye class split by connected component, see
#: :func:`~fit3dmm.observe.labelmaps.split_sides`).
FASSEG_GROUPS_BY_SIDE: dict[str, tuple[str, ...]] = {
    "left_eye": ("left_eye",),
    "right_eye": ("right_eye",),
    **FASSEG_GROUPS,
}


def photo_frame(result: FitResult) -> tuple[int, int]:
    """(H_max, W_max) over the batch's photos (``observation.photo_size`` holds (W, H) per item)."""
    size = result.observation.photo_size.detach().round().long().cpu()
    return int(size[:, 1].max()), int(size[:, 0].max())


def render_fit_labels(
    result: FitResult,
    part_labels: Tensor,
    image_size: tuple[int, int] | None = None,
) -> Tensor:
    """The fitted mesh's visible part labels at photo resolution (module docstring).

    Args:
        result: a fit of B faces.
        part_labels: (V,) int64 part index per full-model vertex (``FaceModel.part_labels``), −1 = none.
        image_size: (H, W) of the frame; default :func:`photo_frame`.
    Returns:
        (B, H, W) int64 part labels (:data:`~fit3dmm.types.parts.PART_NAMES` order), −1 = no part, on the device of
        ``result.vertices_photo``.
    """
    points = result.vertices_photo.detach()
    nv = points.shape[1]
    if part_labels.shape != (nv,) or part_labels.dtype != torch.long:
        raise ValueError(f"part_labels must be int64 ({nv},) for the fitted model, got {part_labels.dtype} "
                         f"{tuple(part_labels.shape)}")
    if int(part_labels.max()) < 0:
        raise ValueError("the model has no part labels (all -1); annotate it first (ensure_annotations)")
    h, w = image_size or photo_frame(result)
    depth = -result.vertices_cam.detach()[..., 2].to(points.dtype)
    triangles = result.face_triangles.to(points.device)
    labels = render_labels(points, depth, triangles, part_labels.to(points.device), (h, w))
    size = result.observation.photo_size.detach().round().long().to(labels.device)
    cols = torch.arange(w, device=labels.device)
    rows = torch.arange(h, device=labels.device)
    inside = (cols[None, None, :] < size[:, 0, None, None]) & (rows[None, :, None] < size[:, 1, None, None])
    return torch.where(inside, labels, torch.full_like(labels, -1))


def pad_masks(masks: Sequence[np.ndarray | Tensor], image_size: tuple[int, int]) -> Tensor:
    """Stack per-photo part masks (P, H_b, W_b) into (B, P, H, W) bool, top-left aligned, padded with False."""
    h, w = image_size
    items = [as_tensor(np.asarray(m) if not isinstance(m, Tensor) else m, "masks") for m in masks]
    if not items:
        raise ValueError("no masks given")
    out = torch.zeros((len(items), items[0].shape[0], h, w), dtype=torch.bool)
    for b, m in enumerate(items):
        if m.ndim != 3 or m.shape[0] != items[0].shape[0] or m.shape[1] > h or m.shape[2] > w:
            raise ValueError(f"masks[{b}] must be (P, ≤{h}, ≤{w}) like masks[0], got {tuple(m.shape)}")
        out[b, :, : m.shape[1], : m.shape[2]] = m.to(torch.bool).cpu()
    return out


def fit_part_iou(
    result: FitResult,
    part_labels: Tensor,
    target_masks: ArrayLike,
    groups: Mapping[str, Sequence[str]] | None = None,
    part_weights: ArrayLike | None = None,
    labels: Tensor | None = None,
) -> Tensor:
    """Part IoU of a fit against target masks at photo resolution.

    Args:
        result: a fit of B faces.
        part_labels: (V,) int64 the model's part label per vertex.
        target_masks: (B, 8, H, W) bool masks in :data:`~fit3dmm.types.parts.PART_NAMES` order in photo pixels
            (e.g. :func:`~fit3dmm.observe.labelmaps.load_label_map`'s ``masks``; padded with :func:`pad_masks`
            for photos of different sizes).
        groups: unions of parts to score (e.g. :data:`FASSEG_GROUPS`); None scores each part on its own.
        part_weights: optional (B, 8); 0 marks a part absent from the target (see :func:`part_iou`).
        labels: a ready (B, H, W) :func:`render_fit_labels` map to reuse.
    Returns:
        (B, G) float64 IoU (G = len(groups), or 8 parts), NaN where the target region is empty.
    """
    masks = as_tensor(target_masks, "target_masks")
    if masks.ndim != 4 or masks.shape[1] != NUM_PARTS:
        raise ValueError(f"target_masks must be (B, {NUM_PARTS}, H, W), got {tuple(masks.shape)}")
    if labels is None:
        labels = render_fit_labels(result, part_labels, tuple(masks.shape[-2:]))
    labels = labels.to(masks.device)
    if groups is None:
        return part_iou(labels, masks, part_weights)
    return merged_part_iou(labels, masks, groups, part_weights)


def fit_landmark_nme(result: FitResult, gt_landmarks: ArrayLike) -> Tensor:
    """(B,) NME of the fitted projected 68 landmarks against (B, 68, 2) ground truth in photo pixels."""
    return nme(result.landmarks68_photo.detach().double().cpu(), as_tensor(gt_landmarks, "gt_landmarks").cpu())


def fit_pose_error(result: FitResult, gt_pose_deg: ArrayLike) -> dict[str, float]:
    """Mean absolute yaw, pitch, roll error (and their mean) of ``result.pose_deg`` against (B, 3) degrees."""
    return pose_mae(result.pose_deg.detach().double().cpu(), as_tensor(gt_pose_deg, "gt_pose_deg").cpu())
