"""Algorithm 1: voting rules on hand-made inputs, and a short real run on ICT-FaceKit."""

from __future__ import annotations

import numpy as np
import pytest

from fit3dmm.annotate.algorithm1 import (
    MIRROR_PART,
    AnnotationConfig,
    RenderedView,
    annotate_model,
    drop_islands,
    landmark_part_labels,
    mirror_map,
    symmetrize_votes,
    vote_landmarks,
    vote_parts,
)
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES


def test_mirror_part_swaps_left_and_right():
    for i, name in enumerate(PART_NAMES):
        other = PART_NAMES[MIRROR_PART[i]]
        assert other == name.replace("left", "#").replace("right", "left").replace("#", "right")


def test_votes_take_the_pixel_label_of_visible_vertices_only():
    labels = np.full((4, 4), -1)
    labels[:, 2:] = PART_INDEX["nose"]
    view = RenderedView(np.zeros((4, 4, 3), np.uint8), np.array([[0.2, 1.0], [2.6, 0.4], [3.0, 3.0]]),
                        np.array([True, True, False]))
    votes = vote_parts([view, view], [labels, None], 3)
    expected = np.zeros((3, NUM_PARTS + 1))
    expected[0, NUM_PARTS] = 1  # visible on an unlabelled pixel: a vote for "no part"
    expected[1, PART_INDEX["nose"]] = 1  # (2.6, 0.4) rounds to column 3, row 0
    np.testing.assert_array_equal(votes, expected)


def test_landmark_votes_pick_the_nearest_visible_vertex():
    view = RenderedView(np.zeros((8, 8, 3), np.uint8), np.array([[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]]),
                        np.array([True, True, False]))
    dense = vote_landmarks([view, view, view], [np.array([[1.2, 1.1], [4.0, 4.0]]), None,
                                                 np.array([[0.1, 0.0], [6.0, 6.0]])], 3, 2)
    np.testing.assert_array_equal(dense, [0, 1])  # vertex 2 is closer to the first landmark but hidden


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


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_algorithm1_on_ict_covers_the_face_and_is_symmetric(ict_model):
    from fit3dmm.observe.detect import MediaPipeDetector

    with MediaPipeDetector(max_faces=1) as detector:
        assets = annotate_model(ict_model, detector, landmark_part_labels,
                                AnnotationConfig(views=6, size=384, seed=1))
    labels = assets.part_labels
    assert labels.shape == (ict_model.num_vertices,)
    assert labels.min() >= -1 and labels.max() < NUM_PARTS
    region = ict_model.face_vertices.numpy()
    outside = np.setdiff1d(np.arange(ict_model.num_vertices), region)
    assert (labels[outside] == -1).all()  # only the fitted region is annotated; the rest is explicitly none
    counts = np.bincount(labels[region][labels[region] >= 0], minlength=NUM_PARTS)
    assert (counts > 10).all(), dict(zip(PART_NAMES, counts.tolist(), strict=True))
    assert counts[PART_INDEX["left_eye"]] == counts[PART_INDEX["right_eye"]] or \
        abs(counts[PART_INDEX["left_eye"]] - counts[PART_INDEX["right_eye"]]) < 0.1 * counts[PART_INDEX["left_eye"]]
    # left/right mirror each other: the mirror partner of a labelled vertex carries the swapped label
    mean = ict_model.mean.numpy()[region]
    mirror = mirror_map(mean)
    lab = labels[region]
    has = lab >= 0
    agree = lab[mirror][has] == MIRROR_PART[lab[has]]
    assert agree.mean() > 0.97, agree.mean()
    # subject's left eye lies at +x in model space
    assert mean[lab == PART_INDEX["left_eye"], 0].mean() > 0
    # dense landmarks: FaceMesh nose tip (1) sits near the model's nose tip (vertex 4857)
    tip = assets.dense_landmarks[1]
    assert tip >= 0 and np.linalg.norm(ict_model.mean.numpy()[tip] - ict_model.mean.numpy()[4857]) < 1.0
