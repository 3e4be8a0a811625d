import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fit3dmm.metrics import pose_mae, procrustes, wrap_degrees
from fit3dmm.render.camera import PerspectiveCamera, euler_to_matrix, matrix_to_euler, transform_points

AFLW = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "aflw2000-16" / "landmarks.npz"

# model space (cm, +y up, +z out of the face): nose tip, subject's left eye (+x), right eye, chin
FACE = torch.tensor([[0.0, 0.0, 10.0], [3.2, 3.0, 7.0], [-3.2, 3.0, 7.0], [0.0, -8.0, 7.0]],
                    dtype=torch.float64)
NOSE, LEFT_EYE, RIGHT_EYE, CHIN = range(4)
DISTANCE = 100.0
CAMERA = PerspectiveCamera.for_crop(224, dtype=torch.float64)
F, C = 1015.0, 111.5  # focal and principal point of that camera


def _project(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    """(4, 2) pixels of FACE rotated by the pose and placed DISTANCE cm in front of the camera."""
    rotation = euler_to_matrix(torch.tensor([[yaw, pitch, roll]], dtype=torch.float64))
    cam = transform_points(FACE[None], rotation, torch.tensor([[0.0, 0.0, -DISTANCE]], dtype=torch.float64))
    return CAMERA.project(cam)[0][0]


def test_wrap_degrees():
    angles = torch.tensor([0.0, 180.0, -180.0, 190.0, -190.0, 360.0, 540.0, -0.5, 179.5])
    torch.testing.assert_close(
        wrap_degrees(angles), torch.tensor([0.0, 180.0, 180.0, -170.0, 170.0, 0.0, 180.0, -0.5, 179.5],
                                           dtype=torch.float64)
    )
    assert isinstance(wrap_degrees(np.array([270.0])), np.ndarray)


def test_pose_mae_hand_example():
    pred = torch.tensor([[10.0, 5.0, -3.0], [179.0, 0.0, 0.0]])
    gt = torch.tensor([[0.0, 0.0, 0.0], [-179.0, 10.0, 2.0]])
    out = pose_mae(pred, gt)
    # yaw |10|, |358 → −2|; pitch 5, 10; roll 3, 2
    assert out == pytest.approx({"yaw": 6.0, "pitch": 7.5, "roll": 2.5, "mean": 16.0 / 3.0})
    assert pose_mae(pred.numpy(), gt.numpy()) == pytest.approx(out)


def test_pose_mae_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        pose_mae(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        pose_mae(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="B >= 1"):
        pose_mae(torch.zeros(0, 3), torch.zeros(0, 3))


def test_frontal_face_layout():
    px = _project(0.0, 0.0, 0.0)
    torch.testing.assert_close(px[NOSE], torch.tensor([C, C], dtype=torch.float64))
    assert px[LEFT_EYE, 0] > C > px[RIGHT_EYE, 0]  # subject's left eye on the image's right
    assert px[CHIN, 1] > C > px[LEFT_EYE, 1]  # chin below, eyes above (image y down)


@pytest.mark.parametrize("yaw", [30.0, -30.0, 60.0])
def test_positive_yaw_moves_nose_to_image_left(yaw):
    px = _project(yaw, 0.0, 0.0)
    # nose (0, 0, 10) → (−10 sin yaw, 0, 10 cos yaw − 100)
    s, c = math.sin(math.radians(yaw)), math.cos(math.radians(yaw))
    expected_u = C - F * 10.0 * s / (DISTANCE - 10.0 * c)
    assert px[NOSE, 0].item() == pytest.approx(expected_u)
    assert px[NOSE, 1].item() == pytest.approx(C)
    assert (px[NOSE, 0].item() < C) == (yaw > 0)


@pytest.mark.parametrize("pitch", [20.0, -20.0])
def test_positive_pitch_moves_nose_up(pitch):
    px = _project(0.0, pitch, 0.0)
    # nose (0, 0, 10) → (0, 10 sin pitch, 10 cos pitch − 100); image v grows downwards
    s, c = math.sin(math.radians(pitch)), math.cos(math.radians(pitch))
    assert px[NOSE, 1].item() == pytest.approx(C - F * 10.0 * s / (DISTANCE - 10.0 * c))
    assert px[NOSE, 0].item() == pytest.approx(C)
    assert (px[NOSE, 1].item() < C) == (pitch > 0)


@pytest.mark.parametrize("roll", [20.0, -35.0])
def test_positive_roll_turns_eye_line_clockwise(roll):
    px = _project(0.0, 0.0, roll)
    # both eyes keep depth 93 cm, so the image eye line turns by exactly the roll angle; with v downwards a
    # positive atan2(dv, du) is clockwise on screen and puts the eye on the image's right lower
    du, dv = (px[LEFT_EYE] - px[RIGHT_EYE]).tolist()
    assert math.degrees(math.atan2(dv, du)) == pytest.approx(roll)
    assert (px[LEFT_EYE, 1].item() > px[RIGHT_EYE, 1].item()) == (roll > 0)


def test_matrix_to_euler_inverts_euler_to_matrix():
    yaws = [-89.0, -60.0, -30.0, 0.0, 15.0, 45.0, 89.0]
    others = [-179.0, -120.0, -45.0, 0.0, 10.0, 90.0, 179.0]
    angles = torch.tensor(list(itertools.product(yaws, others, others)), dtype=torch.float64)
    back = matrix_to_euler(euler_to_matrix(angles))
    torch.testing.assert_close(back, angles, atol=1e-6, rtol=0.0)


@pytest.mark.skipif(not AFLW.exists(), reason=f"shared AFLW2000-3D sample not found at {AFLW}")
def test_convention_matches_aflw2000_ground_truth():
    """Recover each image's rotation from its 3D landmarks and compare with its Pose_Para.

    A frontal template is image00050's 68 3D points rotated back by its own ground-truth pose; the best
    rotation from the template to every other image's points (Kabsch), read with ``matrix_to_euler``, must
    give that image's ground-truth yaw, pitch and roll up to the identity/expression differences (a few
    degrees).
    AFLW points are pixels with y down and z towards the viewer: flipping y gives camera.py's frame.
    """
    data = np.load(AFLW)
    flip_y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    points = torch.from_numpy(data["pts68_original"]).double() * flip_y
    points = points - points.mean(dim=1, keepdim=True)
    gt = torch.from_numpy(data["pose_deg_yaw_pitch_roll"]).double()
    assert str(data["names"][0]) == "image00050"
    template = points[0] @ euler_to_matrix(gt[:1])[0]  # rows: x_cam = R x  →  x = Rᵀ x_cam
    _, rotation, _ = procrustes(template.expand_as(points), points)
    recovered = matrix_to_euler(rotation)
    errors = pose_mae(recovered, gt)
    assert max(errors["yaw"], errors["pitch"], errors["roll"]) < 3.0, errors
    clear = gt.abs() > 5.0  # every clearly non-zero angle has the ground truth's sign
    assert torch.equal(recovered[clear].sign(), gt[clear].sign())
