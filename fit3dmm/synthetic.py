"""Synthetic faces for training and benchmarks: rendered instances of the face model
(:mod:`fit3dmm.models.instances`) with the observation a perfect detector and segmenter would give.

The observation holds the exact projected landmarks (the model's landmark correspondence, or its 68
landmarks), and, when the model has part annotations, the part masks rendered from its part labels with their
point sets.  Everything is a function of (seed, index).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fit3dmm.fitting.landmarks import DENSE
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.instances import render_instance
from fit3dmm.models.regressor import Coefficients
from fit3dmm.observe.points import DEFAULT_COUNTS, mask_point_sets
from fit3dmm.render.rasterize import render_labels
from fit3dmm.types.observation import Observation
from fit3dmm.types.parts import NUM_PARTS


@torch.no_grad()
def render_synthetic(model: FaceModel, coeffs: Coefficients, size: int, index_seed: tuple[int, int],
                     counts: Mapping[str, int] = DEFAULT_COUNTS, region: FaceModel | None = None) -> Observation:
    """Render one synthetic face (B = 1) of ``model`` with ``coeffs`` into an Observation of a ``size`` crop.

    ``index_seed`` = (seed, index) draws the appearance.  Part masks, hair (empty), part weights, point sets
    and the forehead line ("keep all") are filled when the model has part annotations.  Pass ``region``
    (``model.region()``) when drawing many faces.
    """
    rendered = render_instance(model, coeffs, size, index_seed)
    device = model.mean.device
    region = region if region is not None else model.region()
    blank = Observation(image=rendered.image, crop_to_photo=torch.eye(3, dtype=torch.float64, device=device)[None],
                        photo_size=torch.tensor([[float(size)] * 2], device=device))
    pred = PredictionBuilder(region, rendered.camera, blank)(coeffs.to(device))
    dense = pred.landmarks.clone() if pred.landmark_target == DENSE else None
    values: dict[str, object] = {"landmarks68": pred.landmarks68.clone(), "landmarks": dense}
    if region.has_parts:
        labels = render_labels(pred.points2d, pred.depth, region.triangles, region.part_labels, (size, size))
        masks = torch.stack([labels == p for p in range(NUM_PARTS)], dim=1)
        line = torch.tensor([[0.0, 1.0, 10.0 * size]], device=device)  # segment_observation's "no line"
        values.update(masks=masks, hair=torch.zeros((1, size, size), dtype=torch.bool, device=device),
                      part_weights=masks.flatten(2).any(-1).to(torch.float32), forehead_line=line,
                      points=mask_point_sets(masks, counts))
    return Observation(image=blank.image, crop_to_photo=blank.crop_to_photo, photo_size=blank.photo_size,
                       names=[f"synthetic_{index_seed[1]:06d}"], **values)
