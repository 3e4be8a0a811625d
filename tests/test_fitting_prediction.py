"""Rigid initialisation, landmark marching and the V_p(α) filters of the prediction builder."""

from __future__ import annotations

import numpy as np
import torch

from fit3dmm.fitting.params import FitParameters
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.fitting.rigid import pose_from_landmarks
from fit3dmm.models.assets import FaceModelAssets
from fit3dmm.render.camera import (
    PerspectiveCamera,
    euler_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler,
    transform_points,
)
from fit3dmm.types.observation import Observation
from fit3dmm.types.parts import PART_INDEX


def _blank(batch=1, size=224):
    return Observation(image=torch.zeros(batch, 3, size, size), crop_to_photo=torch.eye(3).repeat(batch, 1, 1),
                       photo_size=torch.full((batch, 2), float(size)))


def test_pnp_recovers_an_exact_pose(ict_model):
    region = ict_model.region()
    cam = PerspectiveCamera.for_crop(224, 2)
    pose = torch.tensor([[35.0, 15.0, -10.0], [-20.0, -5.0, 3.0]])
    rot = euler_to_matrix(pose)
    trans = torch.tensor([[2.0, -1.0, -120.0], [-3.0, 2.0, -100.0]])
    lmk3d = region.mean[region.landmarks68].expand(2, -1, -1)
    pix, _ = cam.project(transform_points(lmk3d, rot, trans))
    r, t = pose_from_landmarks(region.mean[region.landmarks68], pix, cam)
    from fit3dmm.render.camera import axis_angle_to_matrix

    torch.testing.assert_close(matrix_to_euler(axis_angle_to_matrix(r)), pose, atol=0.05, rtol=0)
    torch.testing.assert_close(t, trans, atol=0.05, rtol=0)


def _params(region, yaw):
    params = FitParameters(region, 1)
    with torch.no_grad():
        params.rotation.copy_(matrix_to_axis_angle(euler_to_matrix(torch.tensor([[yaw, 0.0, 0.0]]))))
        params.translation.copy_(torch.tensor([[0.0, 0.0, -110.0]]))
    return params


def test_part_points_respect_visibility_forehead_and_hair(ict_model):
    region = ict_model.region()
    labels = np.full(region.num_vertices, -1)
    labels[: region.num_vertices // 2] = PART_INDEX["skin"]
    region.assets = FaceModelAssets(part_labels=labels)
    obs = _blank()
    builder = PredictionBuilder(region, PerspectiveCamera.for_crop(224), obs)
    params = _params(region, 0.0)
    base = builder(params).parts["skin"]
    # forehead line y = 100 (a·x + b·y + c with a=0, b=1, c=−100): points above (y < 100) are removed
    obs.forehead_line = torch.tensor([[0.0, 1.0, -100.0]])
    cut = builder(params).parts["skin"]
    assert (cut.points[cut.valid][:, 1] >= 100).all()
    assert cut.valid.sum() < base.valid.sum()
    obs.forehead_line = None
    obs.hair = torch.zeros(1, 224, 224, dtype=torch.bool)
    obs.hair[:, :, :112] = True  # left half of the crop is hair
    haired = builder(params).parts["skin"]
    assert (haired.points[haired.valid][:, 0] >= 111.5).all()
    assert haired.valid.sum() > 0
    assert not (haired.valid & ~base.valid).any()  # filters only remove points
