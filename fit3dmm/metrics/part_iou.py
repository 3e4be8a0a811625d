"""Part IoU: how well a rendered part-label map covers the target part masks.

For part (or group of parts) k of image b, with P_k the predicted pixels and T_k the target pixels,

    IoU[b, k] = |P_k ∩ T_k| / |P_k ∪ T_k|,

and NaN where T_k is empty: a part absent from the target is not scored (averages skip it).  A part whose
weight is 0 counts as absent, whatever its mask holds.  A prediction that covers a part the target lacks is
therefore not penalised by that part's IoU; it still lowers the IoU of the target parts it overlaps.

Inputs are numpy arrays or torch tensors; results come back as the same kind (float64, on the input's device).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from fit3dmm.metrics._array import ArrayLike, as_tensor, like_input
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES


def _validated(pred_labels: ArrayLike, target_masks: ArrayLike, part_weights: ArrayLike | None
               ) -> tuple[Tensor, Tensor]:
    """Checked ``(labels (B, H, W), effective target masks (B, P, H, W))``; zero-weight parts emptied."""
    labels = as_tensor(pred_labels, "pred_labels")
    masks = as_tensor(target_masks, "target_masks")
    integer = not (labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool)
    if labels.ndim != 3 or not integer:
        raise ValueError(f"pred_labels must be an integer (B, H, W) label map, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    if masks.ndim != 4 or masks.dtype != torch.bool:
        raise ValueError(f"target_masks must be bool (B, P, H, W), got {masks.dtype} {tuple(masks.shape)}")
    b, p, h, w = masks.shape
    if labels.shape != (b, h, w):
        raise ValueError(f"pred_labels must be (B, H, W) = {(b, h, w)} to match target_masks, "
                         f"got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= p):
        raise ValueError(f"pred_labels must lie in [-1, {p - 1}] (-1 = no part), "
                         f"got values in [{int(labels.min())}, {int(labels.max())}]")
    labels = labels.to(masks.device)
    if part_weights is None:
        return labels, masks
    weights = as_tensor(part_weights, "part_weights")
    if weights.shape != (b, p):
        raise ValueError(f"part_weights must be (B, P) = {(b, p)}, got {tuple(weights.shape)}")
    if bool((weights < 0).any()):
        raise ValueError("part_weights must be >= 0 (0 = part absent from the target), got a negative weight")
    present = (weights != 0).to(masks.device)
    return labels, masks & present[:, :, None, None]


def _grouped_iou(labels: Tensor, masks: Tensor, groups: Sequence[Sequence[int]]) -> Tensor:
    """IoU of each union of parts: labels (B, H, W), masks (B, P, H, W), G groups of part indices → (B, G)."""
    out = []
    for members in groups:
        index = torch.tensor(members, dtype=torch.long, device=masks.device)
        pred = torch.isin(labels, index)
        target = masks.index_select(1, index).any(1)
        inter = (pred & target).sum((-2, -1)).double()
        union = (pred | target).sum((-2, -1)).double()
        out.append(torch.where(target.any(-1).any(-1), inter / union, torch.nan))
    return torch.stack(out, dim=1)


def part_iou(pred_labels: ArrayLike, target_masks: ArrayLike, part_weights: ArrayLike | None = None
             ) -> ArrayLike:
    """Per-part IoU of a label map against per-part target masks.

    Args:
        pred_labels: (B, H, W) integer part index per pixel (:data:`~fit3dmm.types.parts.PART_NAMES` order when
            P = 8), -1 = no part.
        target_masks: (B, P, H, W) bool target mask of each part (masks may overlap).
        part_weights: optional (B, P) non-negative weights; 0 marks a part absent from the target.

    Returns:
        (B, P) float64 IoU, NaN where the part's target is empty or its weight is 0.
    """
    labels, masks = _validated(pred_labels, target_masks, part_weights)
    iou = _grouped_iou(labels, masks, [[k] for k in range(masks.shape[1])])
    return like_input(iou, pred_labels)


def merged_part_iou(pred_labels: ArrayLike, target_masks: ArrayLike, groups: Mapping[str, Sequence[str]],
                    part_weights: ArrayLike | None = None) -> ArrayLike:
    """IoU of unions of parts, e.g. FASSEG's classes ``{"eyes": ["left_eye", "right_eye"],
    "mouth": ["up_lip", "down_lip"], "nose": ["nose"]}``.

    For group g, the predicted region is every pixel labelled with one of its parts and the target region is
    the union of its parts' target masks (zero-weight parts contributing nothing), so a dataset with a single
    "eyes" class may put that mask in either eye's channel, or in both.

    Args:
        pred_labels: (B, H, W) integer part index per pixel (:data:`~fit3dmm.types.parts.PART_NAMES` order),
            -1 = no part.
        target_masks: (B, 8, H, W) bool masks in :data:`~fit3dmm.types.parts.PART_NAMES` order.
        groups: group name → non-empty list of part names.
        part_weights: optional (B, 8) non-negative weights; 0 marks a part absent from the target.

    Returns:
        (B, G) float64 IoU, columns in the order of ``groups``; NaN where a group's target union is empty.
    """
    if not groups:
        raise ValueError("groups must name at least one group, got an empty mapping")
    indices = []
    for name, members in groups.items():
        unknown = [m for m in members if m not in PART_INDEX]
        if not members or unknown:
            raise ValueError(f"group {name!r} must list part names from {PART_NAMES}, got {list(members)}")
        indices.append([PART_INDEX[m] for m in members])
    labels, masks = _validated(pred_labels, target_masks, part_weights)
    if masks.shape[1] != NUM_PARTS:
        raise ValueError(f"target_masks must have one channel per part of PART_NAMES ({NUM_PARTS}), "
                         f"got {masks.shape[1]}")
    return like_input(_grouped_iou(labels, masks, indices), pred_labels)


def mean_part_iou(iou: ArrayLike, dim: int | None = -1) -> ArrayLike:
    """Mean IoU ignoring NaN (absent parts).

    Args:
        iou: (B, P) IoU from :func:`part_iou` or :func:`merged_part_iou`.
        dim: -1 → (B,) mean over parts per image; 0 → (P,) mean over images per part; None → overall scalar.

    Returns:
        float64 means; NaN where every value averaged is NaN.
    """
    values = as_tensor(iou, "iou")
    if values.ndim != 2 or not values.dtype.is_floating_point:
        raise ValueError(f"iou must be a floating (B, P) array, got {values.dtype} {tuple(values.shape)}")
    return like_input(torch.nanmean(values.double(), dim=dim), iou)
