"""Camera projection and rotations against hand computations."""

from __future__ import annotations

import math

import torch

from fit3dmm.render.camera import (
    PerspectiveCamera,
    axis_angle_to_matrix,
    euler_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler,
    transform_points,
)


def test_projection_by_hand():
    cam = PerspectiveCamera(torch.tensor([1000.0]), torch.tensor([[111.5, 111.5]]))
    pts = torch.tensor([[[2.0, 1.0, -100.0], [0.0, 0.0, -50.0]]])
    pix, depth = cam.project(pts)
    # u = cx + f X / (−Z) = 111.5 + 1000·2/100 = 131.5 ; v = cy − f Y / (−Z) = 111.5 − 10 = 101.5
    torch.testing.assert_close(pix, torch.tensor([[[131.5, 101.5], [111.5, 111.5]]]))
    torch.testing.assert_close(depth, torch.tensor([[100.0, 50.0]]))
    torch.testing.assert_close(cam.unproject(pix, depth), pts)


def test_default_crop_camera():
    cam = PerspectiveCamera.for_crop(224)
    assert math.isclose(float(cam.focal), 1015.0, rel_tol=1e-6)
    torch.testing.assert_close(cam.principal, torch.tensor([[111.5, 111.5]]))


def test_axis_angle_round_trip_and_known_rotation():
    r = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    torch.testing.assert_close(r[0] @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]),
                               atol=1e-6, rtol=0)
    gen = torch.Generator().manual_seed(0)
    axis = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    axis = axis / axis.norm(dim=1, keepdim=True) * torch.rand(200, 1, generator=gen, dtype=torch.float64) * 3.1
    mats = axis_angle_to_matrix(axis)
    torch.testing.assert_close(mats @ mats.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(200, 3, 3))
    torch.testing.assert_close(matrix_to_axis_angle(mats), axis, atol=1e-7, rtol=0)
    near_pi = torch.tensor([[0.0, math.pi - 1e-5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(axis_angle_to_matrix(matrix_to_axis_angle(axis_angle_to_matrix(near_pi))),
                               axis_angle_to_matrix(near_pi), atol=1e-6, rtol=0)


def test_axis_angle_gradient_is_finite_at_zero():
    v = torch.zeros(1, 3, requires_grad=True)
    axis_angle_to_matrix(v).sum().backward()
    assert torch.isfinite(v.grad).all()


def test_euler_round_trip():
    angles = torch.tensor([[30.0, -20.0, 10.0], [-80.0, 45.0, -170.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(matrix_to_euler(euler_to_matrix(angles)), angles)


def test_yaw_turns_the_nose_towards_the_image_left():
    cam = PerspectiveCamera.for_crop(224)
    nose = torch.tensor([[[0.0, 0.0, 10.0]]])
    rot = euler_to_matrix(torch.tensor([[30.0, 0.0, 0.0]]))
    pix, _ = cam.project(transform_points(nose, rot, torch.tensor([[0.0, 0.0, -100.0]])))
    assert pix[0, 0, 0] < 111.5  # left of the principal point
