"""Synthetic faces for training and benchmarks: rendered instances of the face model
(:mod:`fit3dmm.models.instances`) with the observation a perfect detector and segmenter would give.

The observation holds the exact projected landmarks (the model's landmark correspondence, or its 68
landmarks), and, when the model has part annotations, the part masks rendered from its part labels with their
point sets.  Everything is a function of (seed, index).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from fit3dmm.fitting.landmarks import DENSE
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.instances import render_instance
from fit3dmm.models.regressor import CoefficientLayout, Coefficients
from fit3dmm.observe.points import DEFAULT_COUNTS, mask_point_sets
from fit3dmm.render.camera import euler_to_matrix, matrix_to_axis_angle
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


def smooth_trajectory(layout: CoefficientLayout, frames: int, seed: int, *, fps: float = 30.0,
                      active: int = 8, max_yaw: float = 30.0, max_pitch: float = 12.0, max_roll: float = 8.0,
                      identity_scale: float = 0.8) -> list[Coefficients]:
    """Coefficients of a face moving smoothly over ``frames`` frames (a synthetic video with known truth).

    One identity (N(0, ``identity_scale``²) per mode); ``active`` expressions, each a sum of two raised
    sinusoids of 0.2–0.8 Hz with a random phase, peaking at 0.3–0.9 (bounded models; ±0.5 for PCA
    expressions); yaw, pitch and roll sinusoids of 0.1–0.3 Hz within ±``max_yaw``/``max_pitch``/``max_roll``
    degrees; the translation drifts by ±1 cm around the nominal one.  A function of ``seed`` alone.
    """
    if frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {frames}")
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float64) / fps

    def wave(low: float, high: float) -> Tensor:  # (frames,) in [-1, 1], smooth
        freq = low + (high - low) * torch.rand(1, generator=gen, dtype=torch.float64)
        phase = 2 * math.pi * torch.rand(1, generator=gen, dtype=torch.float64)
        return torch.sin(2 * math.pi * freq * t + phase)

    identity = identity_scale * torch.randn(1, layout.identity, generator=gen)
    expression = torch.zeros(frames, layout.expression, dtype=torch.float64)
    chosen = torch.randperm(layout.expression, generator=gen)[:active]
    for e in chosen.tolist():
        peak = 0.3 + 0.6 * float(torch.rand(1, generator=gen))
        mix = 0.5 * (wave(0.2, 0.8) + wave(0.2, 0.8))
        if layout.expression_range is not None:
            lo, hi = layout.expression_range
            expression[:, e] = (lo + (hi - lo) * peak * mix.clamp_min(0)).clamp(lo, hi)
        else:
            expression[:, e] = 0.5 * peak * mix
    pose = torch.stack([max_yaw * wave(0.1, 0.3), max_pitch * wave(0.1, 0.3), max_roll * wave(0.1, 0.3)], -1)
    rotation = matrix_to_axis_angle(euler_to_matrix(pose.float()))
    drift = torch.stack([wave(0.05, 0.15), wave(0.05, 0.15), wave(0.05, 0.15)], -1).float()
    translation = torch.tensor([layout.nominal_translation]) + drift
    return [Coefficients(identity, expression[i: i + 1].float(), rotation[i: i + 1], translation[i: i + 1])
            for i in range(frames)]
