"""Annotating a face model from renders of itself (the paper's Algorithm 1): per-vertex part labels, where the
detector's landmarks lie on the mesh with their noise, and the visible eye openings; cached with the model."""

from fit3dmm.annotate.algorithm1 import (
    AnnotationConfig,
    annotate_model,
    annotation_figure,
    annotation_inputs,
    ensure_annotations,
    is_annotated,
    landmark_part_labels,
)

__all__ = ["AnnotationConfig", "annotate_model", "annotation_figure", "annotation_inputs", "ensure_annotations",
           "is_annotated", "landmark_part_labels"]
