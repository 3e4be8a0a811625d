"""Algorithm 1: voting rules, the landmark fit and its noise, the eye openings on hand-made inputs, and a
short real run on ICT-FaceKit."""

from __future__ import annotations

import numpy as np
import pytest

from fit3dmm.annotate.algorithm1 import AnnotationConfig, annotate_model, landmark_part_labels
from fit3dmm.annotate.eyes import boundary_loops, cap_samples, ear_clip, eye_openings
from fit3dmm.annotate.landmarks import fit_weights, landmark_noise, vote_landmarks
from fit3dmm.annotate.parts import MIRROR_PART, drop_islands, mirror_map, symmetrize_votes, vote_parts
from fit3dmm.annotate.views import AnnotationView
from fit3dmm.observe.crop import crop_box
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES


def view(points2d, visible, landmarks=None, labels=None, depth=-100.0):
    """A view of vertices at ``points2d`` (facing the camera at ``depth``), 512 px."""
    points2d = np.asarray(points2d, float)
    cam = np.concatenate([points2d / 10.0, np.full((len(points2d), 1), depth)], axis=1)
    return AnnotationView(np.zeros((512, 512, 3), np.uint8), points2d, cam, np.asarray(visible, bool),
                          None if landmarks is None else np.asarray(landmarks, float), labels)


def test_mirror_part_swaps_left_and_right():
    for i, name in enumerate(PART_NAMES):
        other = PART_NAMES[MIRROR_PART[i]]
        assert other == name.replace("left", "#").replace("right", "left").replace("#", "right")


def test_votes_take_the_pixel_label_of_visible_vertices_only():
    labels = np.full((4, 4), -1)
    labels[:, 2:] = PART_INDEX["nose"]
    a = view([[0.2, 1.0], [2.6, 0.4], [3.0, 3.0]], [True, True, False], labels=labels)
    b = view([[0.2, 1.0], [2.6, 0.4], [3.0, 3.0]], [True, True, False])  # no detection: no labels, no votes
    votes = vote_parts([a, b], np.arange(3))
    expected = np.zeros((3, NUM_PARTS + 1))
    expected[0, NUM_PARTS] = 1  # visible on an unlabelled pixel: a vote for "no part"
    expected[1, PART_INDEX["nose"]] = 1  # (2.6, 0.4) rounds to column 3, row 0
    np.testing.assert_array_equal(votes, expected)


def test_landmark_votes_pick_the_nearest_visible_vertex():
    points = [[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]]
    views = [view(points, [True, True, False], [[1.2, 1.1], [4.0, 4.0]]), view(points, [True, True, False]),
             view(points, [True, True, False], [[0.1, 0.0], [6.0, 6.0]])]
    np.testing.assert_array_equal(vote_landmarks(views, np.arange(3), 2), [0, 1])  # vertex 2 is hidden


def test_symmetry_and_islands():
    verts = np.array([[-1.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]])
    mirror = mirror_map(verts)
    np.testing.assert_array_equal(mirror, [1, 0, 2])
    votes = np.zeros((3, NUM_PARTS + 1))
    votes[0, PART_INDEX["left_eye"]] = 3
    sym = symmetrize_votes(votes, mirror)
    assert sym[1, PART_INDEX["right_eye"]] == 3 and sym[0, PART_INDEX["left_eye"]] == 3
    tri = np.array([[0, 1, 2], [3, 4, 5]])
    labels = np.array([6, 6, 6, 6, -1, -1])  # a 3-vertex nose component and a 1-vertex island
    np.testing.assert_array_equal(drop_islands(labels, tri, 0.5), [6, 6, 6, -1, -1, -1])


def random_views(weights, count=30, noise=0.0, seed=0):
    """Views of 4 vertices moving at random; landmark 0 is ``weights`` · the vertices' image points."""
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(count):
        points = np.array([[200.0, 200], [300, 200], [250, 300], [250, 240]]) + rng.normal(0, 15, (4, 2))
        landmark = weights @ points + rng.normal(0, noise, 2)
        views.append(view(points, [True] * 4, [landmark, [100.0, 100.0], [400.0, 400.0]]))
    return views


def test_landmark_fit_recovers_convex_weights():
    true = np.array([0.2, 0.5, 0.0, 0.3])
    candidates = np.arange(4)[None]
    tri = np.array([[0, 1, 2]])  # counter-clockwise in the image: faces the camera at negative depth
    weights = fit_weights(random_views(true), candidates, np.array([3]), tri, ridge=1e-6, size=224)
    np.testing.assert_allclose(weights[0], true, atol=1e-3)
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)


def test_landmark_noise_is_the_residual_per_axis():
    true = np.array([0.25, 0.25, 0.25, 0.25])
    views = random_views(true, count=400, noise=3.0, seed=1)  # 3 px per axis in the image
    vertices, weights = np.tile(np.arange(4), (3, 1)), np.tile(true, (3, 1))  # landmarks 1, 2: anything
    sigma, hidden = landmark_noise(views, vertices, weights, np.tile([0, 1, 2], (3, 1)), size=224)
    side = crop_box(views[0].landmarks)[2]  # the crop around the landmark box (300 px, fixed by landmarks 1, 2)
    assert sigma[0] == pytest.approx(3.0 * 224 / side, rel=0.1)
    assert hidden[0] == pytest.approx(2 * sigma[0])  # never seen from behind: twice the front noise


def test_ear_clipping_covers_a_concave_polygon():
    polygon = np.array([[0, 0], [4, 0], [4, 3], [2, 1], [0, 3]], float)  # an arrow: concave at (2, 1)
    tri = ear_clip(polygon)
    assert tri.shape == (3, 3)
    corners = polygon[tri]
    area = 0.5 * np.abs(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])).sum()
    assert area == pytest.approx(8.0)  # 4 × 3 minus the notch 2 × 2 / 2 ... = 12 − 4 = 8


def test_boundary_loops_and_cap_samples_of_a_hole():
    # a square annulus: outer ring 0..7, inner hole ring 8..11
    outer = [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    inner = [(0.5, 0.5), (1.5, 0.5), (1.5, 1.5), (0.5, 1.5)]
    mean = np.array([(x, y, 0.0) for x, y in outer + inner])
    tri = np.array([[0, 1, 8], [1, 9, 8], [1, 2, 9], [2, 3, 9], [3, 4, 10], [3, 10, 9], [4, 5, 10], [5, 11, 10],
                    [5, 6, 11], [6, 7, 11], [7, 0, 8], [7, 8, 11]])
    loops = sorted(boundary_loops(tri), key=len)
    assert [sorted(loop.tolist()) for loop in loops] == [[8, 9, 10, 11], list(range(8))]
    samples = cap_samples(loops[0], mean, count=50)
    points = (mean[samples.triangles] * samples.bary[..., None]).sum(1)
    assert len(points) == 50 and (samples.bary >= 0).all()
    np.testing.assert_allclose(samples.bary.sum(1), 1.0, atol=1e-6)
    assert (points[:, :2] >= 0.5 - 1e-6).all() and (points[:, :2] <= 1.5 + 1e-6).all()  # inside the hole
    labels = np.full(12, -1)
    labels[[8, 9, 10, 11]] = PART_INDEX["left_eye"]
    openings, relabelled = eye_openings(mean, tri, labels)
    assert list(openings) == ["left_eye"] and (relabelled == labels).all()  # no mesh behind the hole


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_algorithm1_on_ict_covers_the_face_is_symmetric_and_places_the_landmarks(ict_model):
    from fit3dmm.observe.detect import MediaPipeDetector

    with MediaPipeDetector(max_faces=1) as detector:
        assets = annotate_model(ict_model, detector, landmark_part_labels, AnnotationConfig(views=16, seed=1))
    labels = assets.part_labels
    assert labels.shape == (ict_model.num_vertices,)
    assert labels.min() >= -1 and labels.max() < NUM_PARTS
    region = ict_model.face_vertices.numpy()
    outside = np.setdiff1d(np.arange(ict_model.num_vertices), region)
    assert (labels[outside] == -1).all()  # only the fitted region is annotated; the rest is explicitly none
    counts = np.bincount(labels[region][labels[region] >= 0], minlength=NUM_PARTS)
    assert (counts > 10).all(), dict(zip(PART_NAMES, counts.tolist(), strict=True))
    # left/right mirror each other: the mirror partner of a labelled vertex carries the swapped label
    mean = ict_model.mean.numpy()[region]
    mirror = mirror_map(mean)
    lab = labels[region]
    has = lab >= 0
    agree = lab[mirror][has] == MIRROR_PART[lab[has]]
    assert agree.mean() > 0.97, agree.mean()
    assert mean[lab == PART_INDEX["left_eye"], 0].mean() > 0  # subject's left eye lies at +x in model space
    # landmarks: FaceMesh's nose tip (1) sits near the model's nose tip (vertex 4857); noise was measured
    full = ict_model.mean.numpy()
    c = assets.landmarks
    tip = (full[c.vertices[1]] * c.weights[1, :, None]).sum(0)
    assert np.linalg.norm(tip - full[4857]) < 1.0
    assert c.num_landmarks == 478 and (c.sigma > 0).all() and (c.sigma_hidden >= c.sigma).all()
    assert np.median(c.sigma) < 6.0  # px of a 224 px crop
    # both eye openings: samples between the lids, in front of the eyeballs, on their side of the face
    assert set(assets.eye_openings) == {"left_eye", "right_eye"}
    for name, sign in (("left_eye", 1), ("right_eye", -1)):
        s = assets.eye_openings[name]
        points = (full[s.triangles] * s.bary[..., None]).sum(1)
        assert (np.sign(points[:, 0]) == sign).all() and (s.triangles < 9409).all()
