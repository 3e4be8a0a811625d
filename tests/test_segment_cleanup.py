"""Clean-up: the line over both brows, removal above it, islands, ears, the combined clean-up."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from fit3dmm.observe.cleanup import (
    LINE_TOLERANCE,
    brow_tangent_line,
    clean_part_masks,
    drop_ears,
    remove_above_line,
    remove_small_components,
    transform_line,
    upper_common_tangent,
)
from fit3dmm.observe.crop import apply_affine, crop_matrix
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX


def _ellipse_mask(shape: tuple[int, int], center: tuple[int, int], axes: tuple[int, int], angle: float
                  ) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, center, axes, angle, 0, 360, 1, thickness=-1)
    return mask.astype(bool)


def _values(line: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return line[0] * cols + line[1] * rows + line[2]


@pytest.mark.parametrize(("angle_left", "angle_right", "dy"), [(-15, 15, 0), (-25, 5, 9), (10, 30, -6)])
def test_tangent_over_two_tilted_ellipse_brows(angle_left: float, angle_right: float, dy: int) -> None:
    shape = (120, 160)
    right = _ellipse_mask(shape, (45, 50), (22, 6), angle_left)  # the subject's right brow: image left
    left = _ellipse_mask(shape, (115, 50 + dy), (22, 6), angle_right)
    line = brow_tangent_line(left, right)
    a, b, _ = line
    assert np.isclose(a * a + b * b, 1.0) and b > 0  # normal points down: below is positive
    value = _values(line, shape)
    for brow in (left, right):  # tangent: touches each brow, every brow pixel on or below
        assert value[brow].min() >= -LINE_TOLERANCE
        assert value[brow].min() <= 1e-9
    cut = remove_above_line(np.ones(shape, bool), line)
    assert np.array_equal(cut, value >= -LINE_TOLERANCE)
    assert (cut | ~(left | right)).all()  # the brows survive
    assert not cut[0].any() and cut[-1].all()
    # against a brute-force search: the only line through a pixel of each brow with both brows below it
    pa, pb = np.argwhere(left)[:, ::-1].astype(float), np.argwhere(right)[:, ::-1].astype(float)
    both = np.concatenate([pa, pb])
    found = []
    for p, q in itertools.product(_tops(left), _tops(right)):
        n = np.array([-(p - q)[1], (p - q)[0]])
        n = n / np.linalg.norm(n) * (1 if n[1] > 0 else -1)
        if (both @ n - n @ p >= -1e-9).all():
            found.append(np.array([n[0], n[1], -n @ p]))
    assert found and all(np.allclose(f, line, atol=1e-9) for f in found)


def _tops(mask: np.ndarray) -> np.ndarray:
    cols = np.flatnonzero(mask.any(0))
    return np.stack([cols, mask[:, cols].argmax(0)], -1).astype(float)


def test_upper_common_tangent_special_cases() -> None:
    # one point each: the line through them; orientation: above is negative
    line = upper_common_tangent(np.array([[0.0, 10.0]]), np.array([[10.0, 0.0]]))
    assert np.isclose(line @ [5.0, 5.0, 1.0], 0.0) and line @ [0.0, 0.0, 1.0] < 0 < line @ [10.0, 10.0, 1.0]
    # identical single points: horizontal line through them
    assert np.allclose(upper_common_tangent(np.array([[3.0, 4.0]]), np.array([[3.0, 4.0]])), [0, 1, -4])
    # one set under the other's hull: no bridge; the hull edge above the midpoint of the centroids
    big = np.array([[0.0, 0.0], [20.0, 0.0], [10.0, 8.0]])
    small = np.array([[9.0, 5.0], [11.0, 5.0]])
    assert np.allclose(upper_common_tangent(big, small), [0, 1, 0])
    with pytest.raises(ValueError, match="non-empty"):
        upper_common_tangent(np.zeros((0, 2)), big)


def test_one_or_no_brow() -> None:
    shape = (60, 80)
    brow = _ellipse_mask(shape, (30, 30), (12, 4), 20)
    line = brow_tangent_line(brow, np.zeros(shape, bool))
    top = np.argwhere(brow)[:, 0].min()
    assert np.allclose(line, [0.0, 1.0, -top])
    assert np.allclose(brow_tangent_line(np.zeros(shape, bool), brow), line)
    assert brow_tangent_line(np.zeros(shape, bool), np.zeros(shape, bool)) is None
    assert np.array_equal(remove_above_line(brow, None), brow)
    with pytest.raises(ValueError, match="differ"):
        brow_tangent_line(brow, np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="bool"):
        brow_tangent_line(brow.astype(np.uint8), brow)


def test_transform_line_between_photo_and_crop() -> None:
    photo_line = np.array([0.2, 0.9, -100.0])
    photo_line /= np.hypot(*photo_line[:2])
    to_photo = crop_matrix(37.0, 21.5, 300.0, 224)
    crop_line = transform_line(photo_line, to_photo)
    assert np.isclose(np.hypot(*crop_line[:2]), 1.0)
    rng = np.random.default_rng(0)
    crop_points = rng.uniform(0, 224, size=(200, 2))
    photo_points = apply_affine(to_photo, crop_points)
    photo_side = np.sign(photo_points @ photo_line[:2] + photo_line[2])
    crop_side = np.sign(crop_points @ crop_line[:2] + crop_line[2])
    assert np.array_equal(photo_side, crop_side)
    # distances scale by the crop's zoom
    k = to_photo[0, 0]
    assert np.allclose((crop_points @ crop_line[:2] + crop_line[2]) * k, photo_points @ photo_line[:2] + photo_line[2])


def test_remove_small_components() -> None:
    mask = np.zeros((40, 40), bool)
    mask[5:25, 5:25] = True  # 400 px
    mask[30:33, 30:33] = True  # 9 px: 9 / 434 ≈ 2 %
    mask[0:5, 35:40] = True  # 25 px: ≈ 5.8 %
    assert np.array_equal(remove_small_components(mask, 0.05), mask & ~_box(30, 33, 30, 33))
    assert np.array_equal(remove_small_components(mask, 0.1), _box(5, 25, 5, 25))
    assert np.array_equal(remove_small_components(mask, 0.0), mask)
    diagonal = np.eye(6, dtype=bool)  # 8-connected: one component
    assert np.array_equal(remove_small_components(diagonal, 0.9), diagonal)
    with pytest.raises(ValueError, match="min_fraction"):
        remove_small_components(mask, 1.5)


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    out = np.zeros((40, 40), bool)
    out[r0:r1, c0:c1] = True
    return out


def test_drop_ears_and_margin() -> None:
    face = _ellipse_mask((80, 80), (40, 40), (20, 30), 0)
    skin = np.ones((80, 80), bool)
    assert np.array_equal(drop_ears(skin, face), face)
    grown = drop_ears(skin, face, margin=3)
    assert (grown >= face).all() and grown[40, 17] and grown[40, 57] and not grown[40, 16] and not grown[40, 64]
    with pytest.raises(ValueError, match="differ"):
        drop_ears(skin, face[:10])


def test_clean_part_masks_in_order() -> None:
    h, w = 60, 60
    masks = np.zeros((NUM_PARTS, h, w), bool)
    skin, nose = PART_INDEX["skin"], PART_INDEX["nose"]
    masks[skin] = True
    masks[nose, 30:40, 25:35] = True
    masks[nose, 2:4, 2:4] = True  # an island, and above the line anyway
    hair = np.zeros((h, w), bool)
    hair[15:25, 0:10] = True
    face = np.zeros((h, w), bool)
    face[5:55, 5:55] = True
    line = np.array([0.0, 1.0, -10.0])  # y = 10
    out = clean_part_masks(masks, hair=hair, face=face, forehead_line=line, min_fraction=0.05)
    expected_skin = face & ~hair
    expected_skin[:10] = False
    assert np.array_equal(out[skin], expected_skin)
    assert np.array_equal(out[nose], masks[nose] & (np.arange(h) >= 10)[:, None])
    masks[nose, 45:47, 45:47] = True  # 4 px next to 100 px: below 5 %
    out = clean_part_masks(masks, min_fraction=0.05)
    assert not out[nose, 45:47, 45:47].any() and out[nose, 30:40, 25:35].all() and out[skin].all()
    assert masks[nose, 45:47, 45:47].all()  # the input is not modified
    with pytest.raises(ValueError, match="masks must be"):
        clean_part_masks(masks[:3])
