"""The built-in landmark segmenter: contours, polygon fill, a hand-made face, colour hair, a real photo."""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fit3dmm.observe.cleanup import LINE_TOLERANCE
from fit3dmm.observe.detect import _make_detection
from fit3dmm.observe.labelmaps import LabelMapParts
from fit3dmm.observe.observe import observe_face
from fit3dmm.observe.segment import (
    FACE_OVAL_LOOP,
    LEFT_BROW_LOOP,
    LEFT_EYE_LOOP,
    LOWER_LIP_INNER,
    LOWER_LIP_OUTER,
    MOUTH_OPENING_LOOP,
    NOSE_LOOP,
    RIGHT_BROW_LOOP,
    RIGHT_EYE_LOOP,
    UPPER_LIP_INNER,
    UPPER_LIP_OUTER,
    color_part_map,
    draw_point_sets,
    fill_polygon,
    labels_from_masks,
    point_sets_view,
    segment_from_landmarks,
    segment_observation,
    segment_with_label_map,
)
from fit3dmm.types.parts import HAIR_COLOR, NUM_PARTS, PART_COLORS, PART_INDEX

SHARED = Path(os.environ.get("FIT3DMM_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
FASSEG = SHARED / "datasets" / "fasseg-frontal"
H, W = 200, 160


# ---------------------------------------------------------------------------------------------- contours


def _chain(edges: frozenset[tuple[int, int]], start: int) -> list[int]:
    """Walk a set of undirected edges from an endpoint (or any vertex of a loop) to the end."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    path, previous = [start], None
    while True:
        options = [n for n in neighbours[path[-1]] if n != previous and n not in path]
        if not options:
            return path
        previous = path[-1]
        path.append(options[0])


def _same_cycle(a: tuple[int, ...], b: list[int]) -> bool:
    if len(a) != len(b) or a[0] not in b:
        return False
    k = b.index(a[0])
    rotated = b[k:] + b[:k]
    return list(a) == rotated or list(a) == [rotated[0], *rotated[:0:-1]]


@pytest.mark.slow  # mediapipe
def test_loops_are_mediapipe_contours() -> None:
    from mediapipe.python.solutions import face_mesh_connections as fm

    assert _same_cycle(LEFT_EYE_LOOP, _chain(fm.FACEMESH_LEFT_EYE, LEFT_EYE_LOOP[0]))
    assert _same_cycle(RIGHT_EYE_LOOP, _chain(fm.FACEMESH_RIGHT_EYE, RIGHT_EYE_LOOP[0]))
    assert _same_cycle(FACE_OVAL_LOOP, _chain(fm.FACEMESH_FACE_OVAL, FACE_OVAL_LOOP[0]))
    # brows: two open polylines (upper, lower) joined at their ends
    brows = ((LEFT_BROW_LOOP, fm.FACEMESH_LEFT_EYEBROW), (RIGHT_BROW_LOOP, fm.FACEMESH_RIGHT_EYEBROW))
    for loop, edges in brows:
        upper, lower = list(loop[:5]), list(loop[5:])
        assert _chain(edges, upper[0]) == upper and _chain(edges, lower[-1]) == lower[::-1]
    lips = {frozenset(e) for e in fm.FACEMESH_LIPS}
    for line in (UPPER_LIP_OUTER, LOWER_LIP_OUTER, UPPER_LIP_INNER, LOWER_LIP_INNER):
        assert all(frozenset(e) in lips for e in itertools.pairwise(line))
    # FACEMESH_NOSE is the ridge and the base; the outline uses its bridge (168), base (2, 97, 326) and alae
    assert {a for e in fm.FACEMESH_NOSE for a in e} & set(NOSE_LOOP) == {168, 2, 97, 326, 64, 294}


# ---------------------------------------------------------------------------------------------- polygon fill


def _brute_fill(v: np.ndarray, h: int, w: int) -> np.ndarray:
    """Even-odd test of every pixel centre, top-left rule, one pixel at a time."""
    out = np.zeros((h, w), bool)
    for r in range(h):
        for c in range(w):
            inside = False
            for i in range(len(v)):
                a, b = v[i], v[(i + 1) % len(v)]
                if min(a[1], b[1]) <= r < max(a[1], b[1]):
                    x = a[0] + (r - a[1]) / (b[1] - a[1]) * (b[0] - a[0])
                    inside ^= x <= c
            out[r, c] = inside
    return out


def test_fill_polygon_matches_brute_force_and_partitions() -> None:
    rng = np.random.default_rng(0)
    for k in range(25):  # random (often self-intersecting) polygons, some with integer vertices, some clipped
        v = rng.uniform(-4, 24, size=(rng.integers(3, 9), 2))
        v = np.round(v) if k % 3 == 0 else v
        assert np.array_equal(fill_polygon(v, (20, 18)), _brute_fill(v, 20, 18)), k
    square = fill_polygon(np.array([[1.0, 1.0], [4.0, 1.0], [4.0, 3.0], [1.0, 3.0]]), (6, 6))
    assert square.sum() == 6 and square[1:3, 1:4].all()  # area 3 × 2
    # two polygons sharing an edge: no pixel twice, none lost
    left = np.array([[2.3, 1.7], [9.1, 2.2], [7.7, 14.6], [1.2, 12.1]])
    right = np.array([[9.1, 2.2], [17.4, 3.3], [16.2, 15.8], [7.7, 14.6]])
    whole = np.array([[2.3, 1.7], [9.1, 2.2], [17.4, 3.3], [16.2, 15.8], [7.7, 14.6], [1.2, 12.1]])
    a, b = fill_polygon(left, (18, 20)), fill_polygon(right, (18, 20))
    assert not (a & b).any() and np.array_equal(a | b, fill_polygon(whole, (18, 20)))
    with pytest.raises(ValueError, match="vertices"):
        fill_polygon(np.zeros((2, 2)), (5, 5))


# ---------------------------------------------------------------------------------------------- a drawn face


def _ellipse(center: tuple[float, float], axes: tuple[float, float], n: int, start: float = np.pi
             ) -> np.ndarray:
    t = start + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([center[0] + axes[0] * np.cos(t), center[1] + axes[1] * np.sin(t)], -1)


def synthetic_landmarks(mouth_gap: float = 8.0) -> np.ndarray:
    """A frontal 'face' in a 160 × 200 image: every contour the segmenter uses, on simple shapes.

    The subject's left eye/brow is on the image's right.  The inner lip lines are ``mouth_gap`` px apart.
    """
    lmk = np.full((478, 2), [80.0, 110.0])
    lmk[list(FACE_OVAL_LOOP)] = _ellipse((80, 110), (60, 80), len(FACE_OVAL_LOOP), start=-np.pi / 2)
    lmk[list(RIGHT_EYE_LOOP)] = _ellipse((55, 90), (12, 5), 16)  # starts at the outer corner (image left)
    lmk[list(LEFT_EYE_LOOP)] = _ellipse((105, 90), (12, 5), 16, start=0.0)
    for loop, x0, x1, tilt in ((RIGHT_BROW_LOOP, 38, 70, -4.0), (LEFT_BROW_LOOP, 122, 90, -4.0)):
        xs = np.linspace(x0, x1, 5)
        upper = 70 + tilt * np.sin(np.linspace(0, np.pi, 5)) + np.linspace(3, 0, 5)
        lmk[list(loop[:5])] = np.stack([xs, upper], -1)
        lmk[list(loop[5:])] = np.stack([xs[::-1], upper[::-1] + 5], -1)
    xs = np.linspace(58, 102, 11)
    arc = np.sin(np.linspace(0, np.pi, 11))
    lmk[list(UPPER_LIP_OUTER)] = np.stack([xs, 150 - 9 * arc], -1)
    lmk[list(LOWER_LIP_OUTER)] = np.stack([xs, 150 + (10 + mouth_gap / 2) * arc], -1)
    xi = np.linspace(62, 98, 11)
    arc_i = np.sin(np.linspace(0, np.pi, 11))
    lmk[list(UPPER_LIP_INNER)] = np.stack([xi, 150 - mouth_gap / 2 * arc_i], -1)
    lmk[list(LOWER_LIP_INNER)] = np.stack([xi, 150 + mouth_gap / 2 * arc_i], -1)
    # inner corners sit on the line between the outer corners, so the lips meet at the corners
    lmk[[78, 308]] = [[62, 150], [98, 150]]
    # nose: a narrow bridge widening into alae (not convex: the waist above the alae)
    half = np.array([[83, 92], [83, 98], [83, 104], [84, 110], [85, 116], [90, 120], [97, 124], [100, 130],
                     [97, 135], [92, 138], [86, 139]], float)
    right_half = half.copy()
    right_half[:, 0] = 160 - right_half[:, 0]
    lmk[list(NOSE_LOOP)] = np.concatenate([[[80, 90]], half, [[80, 139]], right_half[::-1]])
    return lmk


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return synthetic_landmarks()


def test_hand_made_face(face: np.ndarray) -> None:
    seg = segment_from_landmarks(face, (H, W))
    masks, idx = seg.masks, PART_INDEX
    assert masks.shape == (NUM_PARTS, H, W) and masks.dtype == bool
    assert (masks.sum(0) <= 1).all(), "parts overlap"
    assert seg.part_weights.tolist() == [1.0] * NUM_PARTS and not seg.hair.any()
    assert np.array_equal(seg.labels, labels_from_masks(masks))
    # the subject's left eye is on the image's right; eye area ≈ the eyelid ellipse π·12·5
    sides = ("left_eye", "right_eye", "left_eyebrow", "right_eyebrow")
    xs = [np.nonzero(masks[idx[p]])[1].mean() for p in sides]
    assert xs[0] > 80 > xs[1] and xs[2] > 80 > xs[3]
    polygon_area = 0.5 * 16 * 12 * 5 * np.sin(2 * np.pi / 16)  # the 16-gon inscribed in the ellipse
    assert abs(masks[idx["left_eye"]].sum() - polygon_area) < 0.1 * polygon_area
    # lips: the opening between the inner lines is neither lip nor skin; the upper lip lies above
    opening = fill_polygon(face[list(MOUTH_OPENING_LOOP)], (H, W))
    assert opening.sum() > 150
    assert not (opening & masks.any(0)).any()
    up_rows = np.nonzero(masks[idx["up_lip"]])[0]
    down_rows = np.nonzero(masks[idx["down_lip"]])[0]
    assert up_rows.max() <= 150 and down_rows.min() >= 150 and up_rows.mean() < down_rows.mean()
    # nose follows the outline: clearly smaller than its convex hull (waist above the alae)
    nose = masks[idx["nose"]]
    hull = cv2.convexHull(np.argwhere(nose)[:, ::-1].astype(np.int32))
    assert np.array_equal(nose, fill_polygon(face[list(NOSE_LOOP)], (H, W)))
    assert nose.sum() < 0.85 * cv2.contourArea(hull)
    # skin: inside the oval, nothing above the line over both brows, and the line touches both brows
    a, b, c = seg.forehead_line
    assert np.isclose(a * a + b * b, 1.0) and b > 0
    rows, cols = np.mgrid[:H, :W]
    value = a * cols + b * rows + c
    for p in ("left_eyebrow", "right_eyebrow"):
        brow_values = value[masks[idx[p]]]
        assert brow_values.min() >= -LINE_TOLERANCE and brow_values.min() < 1e-6
    skin = masks[idx["skin"]]
    assert (value[skin] >= -LINE_TOLERANCE).all() and skin.sum() > 5000
    assert not (skin & ~seg.face).any() and (seg.face & (value >= 0) & ~masks.any(0) & ~opening).sum() == 0


def test_closed_mouth_lips_meet(face: np.ndarray) -> None:
    closed = synthetic_landmarks(mouth_gap=0.0)
    seg = segment_from_landmarks(closed, (H, W))
    lips = seg.masks[PART_INDEX["up_lip"]] | seg.masks[PART_INDEX["down_lip"]]
    outer = fill_polygon(closed[list(UPPER_LIP_OUTER + LOWER_LIP_OUTER[::-1])], (H, W))
    assert np.array_equal(lips, outer)  # nothing of the mouth is lost when the inner lines coincide


def test_colour_hair_at_the_outline_only(face: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal([200, 150, 120], 6, size=(H, W, 3)), 0, 255).astype(np.uint8)
    image[80:120, 10:40] = (40, 30, 20)  # dark hair entering the oval from the image's left side
    image[125:133, 115:123] = (45, 35, 25)  # a dark blob inside the cheek, away from the outline: not hair
    seg = segment_from_landmarks(face, (H, W), image)
    plain = segment_from_landmarks(face, (H, W))
    skin = seg.masks[PART_INDEX["skin"]]
    assert seg.hair[85:115, 25:38].all() and not skin[85:115, 25:38].any()
    assert plain.masks[PART_INDEX["skin"]][85:115, 25:38].all()
    assert not seg.hair[125:133, 115:123].any() and skin[125:133, 115:123].all()
    assert seg.hair.sum() < 1.2 * (seg.face[80:120, 10:40].sum())
    colors = color_part_map(seg.labels, seg.hair)
    assert tuple(colors[100, 30]) == HAIR_COLOR and tuple(colors[129, 119]) == PART_COLORS[PART_INDEX["skin"]]


def test_label_map_path_cleans_up(face: np.ndarray) -> None:
    reference = segment_from_landmarks(face, (H, W))
    masks = reference.masks.copy()
    skin = PART_INDEX["skin"]
    masks[skin] |= ~reference.face  # a parser's skin reaching the ears and the neck
    masks[skin, :40] = True  # and the forehead
    masks[PART_INDEX["nose"], 5:7, 5:7] = True  # a speck far away
    hair = np.zeros((H, W), bool)
    hair[100:110, 30:50] = True
    masks[skin] &= ~hair
    parts = LabelMapParts(masks=masks, hair=hair, part_weights=np.ones(NUM_PARTS, np.float32))
    seg = segment_with_label_map(parts, face)
    out = seg.masks[skin]
    assert not (out & hair).any()
    # ears and neck are dropped, but skin just outside FaceMesh's oval (2 % of its height: 3 px) is kept
    distance = cv2.distanceTransform((~reference.face).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    assert distance[out].max() <= 3.5 and (out & ~reference.face).any()
    assert not out[:40].any()  # the forehead is cut at the line over the imported brows
    assert np.array_equal(seg.forehead_line, reference.forehead_line)
    assert not seg.masks[PART_INDEX["nose"], 5:7, 5:7].any()  # the speck is an island
    assert seg.masks[PART_INDEX["nose"]].sum() == reference.masks[PART_INDEX["nose"]].sum()
    no_brow = masks * (np.arange(NUM_PARTS) != PART_INDEX["left_eyebrow"])[:, None, None]
    brows_gone = LabelMapParts(masks=no_brow, hair=hair, part_weights=np.ones(NUM_PARTS, np.float32))
    assert segment_with_label_map(brows_gone, face).part_weights[PART_INDEX["left_eyebrow"]] == 0


def test_segment_observation_fills_the_target(face: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    photo = np.clip(rng.normal([200, 150, 120], 6, size=(H, W, 3)), 0, 255).astype(np.uint8)
    obs = segment_observation(observe_face(photo, _make_detection(face, 1.0), size=96))
    assert obs.masks.shape == (1, NUM_PARTS, 96, 96) and obs.masks.dtype == torch.bool
    assert obs.part_weights.tolist() == [[1.0] * NUM_PARTS] and obs.forehead_line.shape == (1, 3)
    assert obs.hair.shape == (1, 96, 96)
    for p, name in enumerate(PART_INDEX):
        got = obs.points[name].item(0)
        assert len(got) == min(int(obs.masks[0, p].sum()), 3000 if name == "skin" else 10**9), name
        rc = got[:, [1, 0]].long()
        assert obs.masks[0, p][rc[:, 0], rc[:, 1]].all()
    with pytest.raises(ValueError, match="landmarks"):
        segment_observation(replace(obs, landmarks=obs.landmarks[:, :68]))


def test_point_sets_show_the_photo_and_every_point() -> None:
    # a 6 × 8 frame enlarged 8×: skin everywhere but a 2 × 2 nose and an unlabelled last column
    labels = np.full((6, 8), PART_INDEX["skin"])
    labels[2:4, 3:5] = PART_INDEX["nose"]
    labels[:, 7] = -1
    rows, cols = np.mgrid[:48, :64]
    photo = np.stack([100 + 80 * np.sin(cols / 5.0), 60 + 2 * rows, 200 - 2 * cols + rows], -1).astype(np.uint8)
    skin_points = np.array([[0.0, 0.0], [6.0, 4.0], [1.0, 5.0]])
    nose_points = np.argwhere(labels == PART_INDEX["nose"])[:, ::-1].astype(float)  # every nose pixel, (x, y)
    out = draw_point_sets(photo, labels, None, {"skin": skin_points, "nose": nose_points}, scale=8)
    assert out.shape == photo.shape and out.dtype == np.uint8
    dots = np.zeros((48, 64), bool)
    for name, pts in (("skin", skin_points), ("nose", nose_points)):
        color = PART_COLORS[PART_INDEX[name]]
        for x, y in pts.astype(int):
            cy, cx = 8 * y + 4, 8 * x + 4  # the middle of the point's 8 × 8 block
            assert tuple(out[cy, cx]) == color, (name, x, y)
            ring = out[cy, cx + 2]
            assert tuple(ring) in {(0, 0, 0), (255, 255, 255)} and np.abs(ring - np.array(color)).max() > 100
            dots[cy - 3:cy + 4, cx - 3:cx + 4] = True
    # away from the dots, parts are the photo tinted at 35 %: it shows through, not a flat colour
    for name in ("skin", "nose"):
        away = (labels == PART_INDEX[name]).repeat(8, 0).repeat(8, 1) & ~dots
        tint = 0.65 * photo[away] + 0.35 * np.array(PART_COLORS[PART_INDEX[name]])
        assert np.abs(out[away] - tint).max() <= 1
        for ch in range(3):
            assert np.corrcoef(out[away][:, ch], photo[away][:, ch])[0, 1] > 0.99
    assert np.array_equal(out[:, 56:], photo[:, 56:])  # no part: the photo itself
    with pytest.raises(ValueError, match="image must be"):
        draw_point_sets(photo[:40], labels, None, {}, scale=8)


def test_point_sets_view_draws_every_target_point(face: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    photo = np.clip(rng.normal([200, 150, 120], 6, size=(H, W, 3)), 0, 255).astype(np.uint8)
    obs = segment_observation(observe_face(photo, _make_detection(face, 1.0), size=96))
    view = point_sets_view(photo, obs)
    assert view.shape == (768, 768, 3)  # 8× the crop
    for name in ("skin", "nose", "left_eye"):
        pts = obs.points[name].item(0).numpy()
        fill = (view == PART_COLORS[PART_INDEX[name]]).all(-1)
        count, _ = cv2.connectedComponents(fill.astype(np.uint8), connectivity=8)
        assert count - 1 == len(pts) > 0, name  # one separate dot per point
        centres = np.rint((pts + 0.5) * 8 - 0.5).astype(int)
        assert fill[centres[:, 1], centres[:, 0]].all(), name
    # a larger crop is enlarged less, to at most 2048 px
    big = segment_observation(observe_face(photo, _make_detection(face, 1.0), size=320))
    assert point_sets_view(photo, big).shape == (1920, 1920, 3)


def test_input_errors(face: np.ndarray) -> None:
    with pytest.raises(ValueError, match="landmarks must be"):
        segment_from_landmarks(face[:100], (H, W))
    bad = face.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        segment_from_landmarks(bad, (H, W))
    with pytest.raises(ValueError, match="image must be"):
        segment_from_landmarks(face, (H, W), np.zeros((H, W + 1, 3), np.uint8))
    with pytest.raises(ValueError, match="size"):
        segment_from_landmarks(face, (0, W))


# ---------------------------------------------------------------------------------------------- real photo


@pytest.mark.slow  # mediapipe
def test_fasseg_photo_sides_and_overlap() -> None:
    if not (FASSEG / "index.csv").is_file():
        pytest.skip(f"FASSEG not found under {FASSEG}")
    from fit3dmm.observe.detect import MediaPipeDetector
    from fit3dmm.observe.image import load_image
    from fit3dmm.observe.labelmaps import load_label_map

    photo = load_image(FASSEG / "images" / "test_20.png")
    with MediaPipeDetector() as detector:
        found = detector.detect(photo)
    assert found, "no face found in test_20"
    seg = segment_from_landmarks(found[0].landmarks, photo.shape[:2], photo)
    target = load_label_map(FASSEG / "labels" / "test_20.png", "fasseg", photo.shape[:2])
    for part in ("left_eye", "right_eye", "nose", "up_lip"):
        p = PART_INDEX[part]
        ours = seg.masks[p] | (seg.masks[PART_INDEX["down_lip"]] if part == "up_lip" else False)
        iou = (ours & target.masks[p]).sum() / (ours | target.masks[p]).sum()
        assert iou > 0.5, f"{part}: IoU {iou:.2f} with the hand label"
