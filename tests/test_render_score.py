"""The render-segment scorer (issue #13): render the fit grey in the photo frame, segment the render, score it.

The ground truth is the shipped annotated ICT rendered at a known pose through a crop of a non-square photo
and segmented by the same chain; the scorer must give IoU 1.0 for that very fit and degrade monotonically
as the fit is shifted in the image plane.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import torch

from fit3dmm.annotate.views import framed
from fit3dmm.evaluate.render_score import (
    BACKGROUND,
    NO_FACE,
    NOT_IN_PHOTO,
    render_fit_photo,
    render_segment_iou,
    segment_render,
)
from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS, PART_GROUPS
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.regressor import Coefficients
from fit3dmm.observe.crop import apply_affine, crop_matrix
from fit3dmm.observe.detect import Detection, MediaPipeDetector
from fit3dmm.render.camera import PerspectiveCamera, euler_to_matrix, matrix_to_axis_angle, transform_points
from fit3dmm.types.observation import Observation
from fit3dmm.types.parts import NUM_PARTS
from fit3dmm.types.result import FitResult

CROP = 224
PHOTO = (512, 448)  # (H, W): not square, so that a swapped axis shows
BOX = (40.0, 70.0, 380.0)  # the crop's left, top, side in photo pixels


def _crop_to_photo(size: int = CROP) -> torch.Tensor:
    return torch.from_numpy(crop_matrix(*BOX, size))


def _result(vertices_cam: torch.Tensor, triangles: torch.Tensor, size: int = CROP) -> FitResult:
    """A B = 1 FitResult of camera-space vertices (V, 3) seen by the ``size`` crop camera of :data:`BOX` in a
    :data:`PHOTO` photo; fields the scorer does not read are placeholders."""
    camera = PerspectiveCamera.for_crop(size, 1, dtype=torch.float64)
    crop_to_photo = _crop_to_photo(size)
    pix = torch.from_numpy(apply_affine(crop_to_photo.numpy(), camera.project(vertices_cam[None])[0][0].numpy()))
    obs = Observation(image=torch.zeros(1, 3, size, size), crop_to_photo=crop_to_photo[None],
                      photo_size=torch.tensor([[PHOTO[1], PHOTO[0]]], dtype=torch.float32))
    return FitResult(
        coefficients={}, vertices=vertices_cam[None], triangles=triangles, face_triangles=triangles,
        vertices_cam=vertices_cam[None], vertices_photo=pix[None], rotation=torch.eye(3)[None],
        pose_deg=torch.zeros(1, 3), camera=camera, observation=obs, landmarks68_photo=torch.zeros(1, 68, 2),
        landmarks68_cam=torch.zeros(1, 68, 3),
    )


def _render(result: FitResult) -> np.ndarray:
    return render_fit_photo(result.vertices_cam[0], result.triangles, result.camera,
                            result.observation.crop_to_photo[0], PHOTO)


class _NoDetector:
    """A detector that must not be called (the scorer gives up before detecting)."""

    name = "none"
    num_landmarks = 478

    def detect(self, image: np.ndarray) -> list[Detection]:
        raise AssertionError("the detector should not run")


def _pyramid(tiny_model: FaceModel, distance: float = 60.0) -> torch.Tensor:
    """The tiny model's pyramid (10 cm base, apex towards the camera) ``distance`` cm in front of it."""
    return tiny_model.mean.double() + torch.tensor([0.0, 0.0, -distance], dtype=torch.float64)


def test_render_is_in_photo_pixels_with_the_crop_undone(tiny_model):
    verts = _pyramid(tiny_model)
    image = _render(_result(verts, tiny_model.triangles))
    assert image.shape == (*PHOTO, 3) and image.dtype == np.uint8
    # the pyramid's outline is its square base: pixel centres inside its projection through the crop
    camera = PerspectiveCamera.for_crop(CROP, 1, dtype=torch.float64)
    corners = apply_affine(_crop_to_photo().numpy(), camera.project(verts[None, :4])[0][0].numpy())
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    covered = (image != BACKGROUND).any(-1)
    rows, cols = np.nonzero(covered)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (math.ceil(x0), math.floor(x1),
                                                                 math.ceil(y0), math.floor(y1))
    assert covered.sum() == (math.floor(x1) - math.ceil(x0) + 1) * (math.floor(y1) - math.ceil(y0) + 1)
    # grey headlight shading: the four faces lean away from the camera, so they are darker than a frontal one
    assert (image[covered] < 0.75 * 255).all() and (image[covered] > 0.3 * 0.75 * 255).all()
    # a crop of another size over the same box is the same camera in the photo: the same render
    other = _render(_result(verts, tiny_model.triangles, size=112))
    assert (np.abs(other.astype(int) - image.astype(int)) <= 1).all()
    assert ((other != image).any(-1)).mean() < 1e-3


def test_mesh_outside_the_photo_is_not_scored(tiny_model):
    verts = _pyramid(tiny_model) + torch.tensor([200.0, 0.0, 0.0], dtype=torch.float64)  # far to the right
    result = _result(verts, tiny_model.triangles)
    masks = np.zeros((NUM_PARTS, *PHOTO), bool)
    assert (_render(result) == BACKGROUND).all()
    score = render_segment_iou(result, 0, masks, _NoDetector())
    assert score.iou is None and score.labels is None and score.reason == NOT_IN_PHOTO


def test_inputs_are_checked(tiny_model):
    verts = _pyramid(tiny_model)
    result = _result(verts, tiny_model.triangles)
    camera, affine = result.camera, _crop_to_photo()
    with pytest.raises(ValueError, match="vertices_cam"):
        render_fit_photo(verts[:, :2], tiny_model.triangles, camera, affine, PHOTO)
    with pytest.raises(ValueError, match="one face"):
        render_fit_photo(verts, tiny_model.triangles, PerspectiveCamera.for_crop(CROP, 2), affine, PHOTO)
    with pytest.raises(ValueError, match="affine"):
        render_fit_photo(verts, tiny_model.triangles, camera, torch.ones(3, 3), PHOTO)
    with pytest.raises(ValueError, match="photo_shape"):
        render_fit_photo(verts, tiny_model.triangles, camera, affine, (0, 10))
    with pytest.raises(ValueError, match="reference_masks"):
        render_segment_iou(result, 0, np.zeros((NUM_PARTS, PHOTO[1], PHOTO[0]), bool), _NoDetector())
    with pytest.raises(IndexError):
        render_segment_iou(result, 1, np.zeros((NUM_PARTS, *PHOTO), bool), _NoDetector())


# ------------------------------------------------------------------ the shipped model through mediapipe


def _posed(model: FaceModel, yaw: float, pitch: float = 0.0) -> torch.Tensor:
    """The mean ICT face at (yaw, pitch) degrees framed in the crop: (V, 3) float64 camera-space vertices."""
    rotation = matrix_to_axis_angle(euler_to_matrix(torch.tensor([[yaw, pitch, 0.0]])))
    coeffs = framed(model, Coefficients(torch.zeros(1, model.num_identity), torch.zeros(1, model.num_expression),
                                        rotation, torch.zeros(1, 3)), CROP, 0.6)
    with torch.no_grad():
        verts = transform_points(model(coeffs.identity, coeffs.expression).vertices, coeffs.rotation_matrix(),
                                 coeffs.translation)
    return verts[0].double()


def _shifted(verts: torch.Tensor, pixels: float) -> torch.Tensor:
    """``verts`` moved sideways by the distance that is ``pixels`` photo pixels at the face's mean depth."""
    focal_photo = PerspectiveCamera.for_crop(CROP).focal.item() * BOX[2] / CROP
    step = pixels * float(-verts[:, 2].mean()) / focal_photo
    return verts + torch.tensor([step, 0.0, 0.0], dtype=torch.float64)


@pytest.fixture(scope="module")
def detector():
    with MediaPipeDetector(max_faces=1) as found:
        yield found


@pytest.fixture(scope="module")
def ground_truth(annotated_ict, detector):
    """The reference: the 20° yaw ICT face rendered and segmented, (8, H, W) bool part masks in photo pixels."""
    result = _result(_posed(annotated_ict, 20.0, 5.0), annotated_ict.triangles)
    labels = segment_render(_render(result), detector)
    assert labels is not None and labels.shape == PHOTO
    return labels[None] == np.arange(NUM_PARTS)[:, None, None]


@pytest.mark.slow
def test_fit_equal_to_the_ground_truth_scores_one(annotated_ict, detector, ground_truth):
    assert ground_truth.any((1, 2)).all()  # every part is seen on the render
    result = _result(_posed(annotated_ict, 20.0, 5.0), annotated_ict.triangles)
    score = render_segment_iou(result, 0, ground_truth, detector)
    assert score.reason is None
    np.testing.assert_array_equal(score.iou, np.ones(len(PART_GROUPS)))
    np.testing.assert_array_equal(score.labels[None] == np.arange(NUM_PARTS)[:, None, None], ground_truth)
    merged = render_segment_iou(result, 0, ground_truth, detector, FASSEG_GROUPS)
    np.testing.assert_array_equal(merged.iou, np.ones(len(FASSEG_GROUPS)))


@pytest.mark.slow
def test_iou_falls_monotonically_with_a_known_shift(annotated_ict, detector, ground_truth):
    verts = _posed(annotated_ict, 20.0, 5.0)
    means = []
    for pixels in (0.0, 2.0, 4.0, 8.0, 16.0):
        score = render_segment_iou(_result(_shifted(verts, pixels), annotated_ict.triangles), 0, ground_truth,
                                   detector, FASSEG_GROUPS)
        assert score.reason is None
        means.append(float(np.nanmean(score.iou)))
    assert means[0] == 1.0
    assert all(a > b for a, b in pairwise(means)), means
    assert means[-1] < 0.5, means


@pytest.mark.slow
def test_fit_turned_away_is_not_scored(annotated_ict, detector, ground_truth):
    result = _result(_posed(annotated_ict, 180.0), annotated_ict.triangles)
    assert (_render(result) != BACKGROUND).any()  # the back of the head is in the photo, but is no face
    score = render_segment_iou(result, 0, ground_truth, detector)
    assert score.iou is None and score.labels is None and score.reason == NO_FACE
