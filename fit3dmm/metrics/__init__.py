"""Evaluation metrics: Part IoU, landmark NME (AFLW2000-3D protocol), head-pose MAE, 3D vertex error.

Every metric takes numpy arrays or torch tensors, computes in float64 with torch, and returns the kind of
array it was given (plain Python numbers for the summary dictionaries).
:func:`markdown_table` formats results.
"""

from fit3dmm.metrics.nme import YAW_BINS, nme, nme_by_yaw
from fit3dmm.metrics.part_iou import mean_part_iou, merged_part_iou, part_iou
from fit3dmm.metrics.pose import POSE_NAMES, pose_mae, wrap_degrees
from fit3dmm.metrics.report import markdown_table
from fit3dmm.metrics.vertex_error import procrustes, vertex_error

__all__ = [
    "POSE_NAMES",
    "YAW_BINS",
    "markdown_table",
    "mean_part_iou",
    "merged_part_iou",
    "nme",
    "nme_by_yaw",
    "part_iou",
    "pose_mae",
    "procrustes",
    "vertex_error",
    "wrap_degrees",
]
