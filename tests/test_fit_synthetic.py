"""End-to-end fits of synthetic faces with known coefficients (engine level, no detector)."""

from __future__ import annotations

import torch

from fit3dmm.fitting.engine import fit_observation
from fit3dmm.fitting.params import FitParameters
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.render.camera import PerspectiveCamera, euler_to_matrix, matrix_to_axis_angle
from fit3dmm.types.observation import Observation


def _synthetic_observation(model, pose_deg, translation, seed=0, size=224):
    """Observation whose 68 landmarks are the exact projections of a random instance of ``model``."""
    region = model.region()
    batch = pose_deg.shape[0]
    gen = torch.Generator().manual_seed(seed)
    params = FitParameters(region, batch)
    with torch.no_grad():
        params.identity.copy_(0.7 * torch.randn(params.identity.shape, generator=gen))
        params.expression.copy_(0.3 * torch.rand(params.expression.shape, generator=gen))
        params.rotation.copy_(matrix_to_axis_angle(euler_to_matrix(pose_deg)))
        params.translation.copy_(translation)
    camera = PerspectiveCamera.for_crop(size, batch)
    blank = Observation(image=torch.zeros(batch, 3, size, size), crop_to_photo=torch.eye(3).repeat(batch, 1, 1),
                        photo_size=torch.full((batch, 2), float(size)))
    with torch.no_grad():
        pred = PredictionBuilder(region, camera, blank)(params)
    obs = Observation(image=blank.image, crop_to_photo=blank.crop_to_photo, photo_size=blank.photo_size,
                      landmarks=pred.landmarks.clone(), landmarks68=pred.landmarks68.clone())
    return obs, params


def test_landmark_fit_recovers_pose_and_landmarks(annotated_ict):
    pose = torch.tensor([[25.0, -10.0, 5.0], [-15.0, 12.0, -8.0]])
    translation = torch.tensor([[1.0, -2.0, -115.0], [-2.0, 1.0, -105.0]])
    obs, _ = _synthetic_observation(annotated_ict, pose, translation)
    result = fit_observation(annotated_ict, obs, {"lmk": 1.0, "reg": 1e-3}, Schedule())
    err = (result.pose_deg - pose).abs()
    assert err.max() < 0.5, f"pose error {err.tolist()} deg"
    lmk_crop = obs.photo_points_to_crop(result.landmarks68_photo)
    px = (lmk_crop - obs.landmarks68).norm(dim=-1).mean(-1)
    assert px.max() < 0.2, f"mean landmark error {px.tolist()} px"
    assert result.status == ["ok", "ok"]
    assert result.vertices.shape == (2, annotated_ict.num_vertices, 3)
