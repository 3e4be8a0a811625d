"""Annotating a face model from renders of itself (the paper's Algorithm 1): per-vertex part labels and the
correspondence of the detector's dense landmarks, cached with the model."""

from fit3dmm.annotate.algorithm1 import (
    AnnotationConfig,
    annotate_model,
    annotation_figure,
    ensure_annotations,
    landmark_part_labels,
)

__all__ = ["AnnotationConfig", "annotate_model", "annotation_figure", "ensure_annotations", "landmark_part_labels"]
