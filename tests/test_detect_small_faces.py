"""The small-face fallback of detection: tiles, face windows, the mapping back to the photo, and mediapipe on
small faces pasted into large grey photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fit3dmm.observe.detect import (
    Detection,
    NoFaceError,
    _make_detection,
    detect_in_window,
    detect_small_faces,
    face_window,
    tile_windows,
)
from fit3dmm.observe.image import downscale_for_detection, load_image
from fit3dmm.observe.observe import FaceTooSmallError, ObserveOptions, observe_photo

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


class CentroidDetector:
    """A landmark 'detector' that reports the intensity centroid of the image as landmark 0 and the corners of
    its bright pixels' box as the others, and nothing on a black image; it records the shapes it saw."""

    name = "centroid"
    num_landmarks = 478

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.shapes.append(image.shape)
        weight = image[..., 0].astype(np.float64)
        if weight.sum() == 0:
            return []
        rows, cols = np.indices(weight.shape)
        centre = np.array([(cols * weight).sum(), (rows * weight).sum()]) / weight.sum()
        landmarks = np.repeat(centre[None], self.num_landmarks, axis=0)
        landmarks[1::2] = cols[weight > 0].min(), rows[weight > 0].min()
        landmarks[2::2] = cols[weight > 0].max(), rows[weight > 0].max()
        return [_make_detection(landmarks, 1.0)]


class BoxLocator:
    """A face locator that finds each bright square of a photo only where it spans at least ``fraction`` of the
    tile it is shown (the full-range detector's habit), plus a false alarm in every tile; records tile sizes."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.tiles: list[tuple[int, int]] = []

    def locate(self, image: np.ndarray) -> np.ndarray:
        self.tiles.append(image.shape[:2])
        boxes = [[0.0, 0.0, 4.0, 4.0, 0.6]]  # dark: the landmark detector does not confirm it
        _, _, stats, _ = cv2.connectedComponentsWithStats((image[..., 0] > 0).astype(np.uint8))
        for x, y, w, h, _ in stats[1:]:
            if max(w, h) >= self.fraction * max(image.shape[:2]):
                boxes.append([x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5, 0.9])
        return np.array(boxes)


def test_tile_windows_cover_the_image_and_hold_every_third_of_a_tile() -> None:
    for width, height, tile in [(1000, 700, 192), (2048, 1536, 384), (150, 900, 192), (192, 192, 192)]:
        windows = tile_windows(width, height, tile)
        assert (windows[:, :2] >= 0).all() and (windows[:, 2] <= width).all() and (windows[:, 3] <= height).all()
        sides = windows[:, 2:] - windows[:, :2]
        assert (sides == np.minimum(tile, [width, height])).all()
        # every square of a third of a tile, anywhere, lies wholly inside one window
        third = min(tile // 3, width, height)
        for x in range(0, width - third + 1, 7):
            for y in range(0, height - third + 1, 7):
                inside = ((windows[:, 0] <= x) & (windows[:, 1] <= y)
                          & (windows[:, 2] >= x + third) & (windows[:, 3] >= y + third))
                assert inside.any(), (width, height, tile, x, y)
    assert len(tile_windows(1000, 700, 1000)) == 1


def test_face_window_is_a_square_twice_the_box_around_its_centre() -> None:
    window = face_window(np.array([100.0, 50.0, 132.0, 74.0]), size=256)
    corners = window[:2, :2] @ np.array([[-0.5, 255.5], [-0.5, 255.5]]) + window[:2, 2:]
    np.testing.assert_allclose(corners.T, [[116 - 32, 62 - 32], [116 + 32, 62 + 32]])


def test_crop_and_upscale_map_back_to_the_photo_exactly() -> None:
    # one bright photo pixel at (x, y) = (120, 70); the window is 64 px upscaled 4× to 256: the centroid of the
    # interpolated spot in the crop, mapped back, is the pixel itself (a half-pixel slip would move it 0.375 px)
    photo = np.zeros((200, 200, 3), np.uint8)
    photo[70, 120] = 255
    window = face_window(np.array([100.0, 50.0, 132.0, 82.0]), size=256)
    assert window[0, 0] == pytest.approx(0.25)
    detector = CentroidDetector()
    found = detect_in_window(detector, photo, window, size=256, score=0.7)
    assert detector.shapes == [(256, 256, 3)]
    assert len(found) == 1 and found[0].score == 0.7
    np.testing.assert_allclose(found[0].landmarks[0], [120.0, 70.0], atol=1e-9)
    # the bright crop pixels are those whose centres lie within a photo pixel of the spot
    np.testing.assert_allclose(found[0].box, [119.125, 69.125, 120.875, 70.875], atol=1e-9)


def test_small_faces_are_located_in_tiles_of_the_small_copy_and_measured_on_the_photo() -> None:
    # a 9 × 9 px 'face' in a 2400 × 1800 photo, 5 px in the copy shrunk to 1200 px that the locator sees; it
    # finds it in tiles it spans an 80th of: not whole, not in 768 px tiles, first in 384 px tiles (several times)
    photo = np.zeros((1800, 2400, 3), np.uint8)
    photo[1000:1009, 1500:1509] = 255
    small, scale = downscale_for_detection(photo, 1200)
    locator, detector = BoxLocator(fraction=1 / 80), CentroidDetector()
    found = detect_small_faces(detector, locator, photo, small, scale)
    assert len(found) == 1  # overlapping tiles found it more than once
    np.testing.assert_allclose(found[0].landmarks[0], [1504.0, 1004.0], atol=0.05)
    assert found[0].score == 0.9
    assert locator.tiles[0] == (900, 1200)
    assert {max(shape) for shape in locator.tiles} == {1200, 768, 384}  # stops at the first level that finds
    assert set(detector.shapes) == {(256, 256, 3)}


def test_every_level_finds_faces_of_every_size_once() -> None:
    # a 41 px square, found whole, and a 9 px one, found first in 384 px tiles of the 1200 px copy
    photo = np.zeros((1800, 2400, 3), np.uint8)
    photo[1000:1009, 1500:1509] = 255
    photo[380:421, 380:421] = 255
    small, scale = downscale_for_detection(photo, 1200)
    locator = BoxLocator(fraction=1 / 80)
    (large,) = detect_small_faces(CentroidDetector(), locator, photo, small, scale)
    assert locator.tiles == [(900, 1200)]
    found = detect_small_faces(CentroidDetector(), locator, photo, small, scale, every_level=True)
    assert len(found) == 2  # each seen in several tiles and at several levels
    np.testing.assert_allclose([face.landmarks[0] for face in found], [[400.0, 400.0], [1504.0, 1004.0]], atol=0.05)
    np.testing.assert_allclose(large.landmarks[0], found[0].landmarks[0], atol=0.05)


def test_no_face_anywhere_looks_down_to_the_smallest_tiles() -> None:
    photo = np.zeros((500, 700, 3), np.uint8)
    locator = BoxLocator(fraction=1.0)
    assert detect_small_faces(CentroidDetector(), locator, photo) == []
    assert {max(shape) for shape in locator.tiles} == {700, 384, 192}


def _grey_canvas(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured grey photo: blotches at three scales and pixel noise."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((height, width), np.float32)
    for cell, amplitude in ((64, 80.0), (8, 30.0)):
        blotches = rng.uniform(-amplitude, amplitude, (height // cell + 2, width // cell + 2)).astype(np.float32)
        canvas += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC)
    canvas += 120.0 + rng.normal(0.0, 8.0, (height, width)).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _paste_face(face_width: float, width: int, height: int, reference: Detection, photo: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head and shoulders scaled so that the landmark box is ``face_width`` px wide, pasted
    in grey at (0.3 W, 0.6 H) into a grey canvas; returns the (H, W, 3) photo and the reference's 478
    landmarks carried along (the ground truth)."""
    x0, y0, x1, y1 = reference.box
    k = face_width / (x1 - x0)
    half = 0.9 * max(x1 - x0, y1 - y0)
    left, top = int((x0 + x1) / 2 - half), int((y0 + y1) / 2 - half)
    patch = photo[top:top + int(2 * half), left:left + int(2 * half)]
    side = round(patch.shape[1] * k)
    grey = cv2.cvtColor(cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    canvas = _grey_canvas(width, height)
    px, py = int(0.3 * width - side / 2), int(0.6 * height - side / 2)
    canvas[py:py + side, px:px + side] = grey
    truth = (reference.landmarks - [left, top] + 0.5) * (side / patch.shape[1]) - 0.5 + [px, py]
    return np.repeat(canvas[..., None], 3, axis=2), truth


@pytest.fixture(scope="module")
def mediapipe_detector():
    from fit3dmm.observe.detect import MediaPipeDetector

    with MediaPipeDetector() as detector:
        yield detector


@pytest.fixture(scope="module")
def small_face(mediapipe_detector) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut 100 px wide in a 1600 × 2000 grey photo, and its ground-truth landmarks."""
    astronaut = load_image(ASTRONAUT)
    reference = mediapipe_detector.detect(astronaut)[0]
    return _paste_face(100.0, 1600, 2000, reference, astronaut)


@pytest.mark.slow  # mediapipe
@pytest.mark.parametrize("detect_max_side", [2048, 1024])
def test_small_face_in_a_large_grey_photo_is_found(mediapipe_detector, small_face, detect_max_side: int) -> None:
    photo, truth = small_face
    assert np.array_equal(photo[..., 0], photo[..., 2])
    small, _ = downscale_for_detection(photo, detect_max_side)
    assert mediapipe_detector.detect(small) == []  # FaceMesh alone misses it
    observation = observe_photo(photo, mediapipe_detector, ObserveOptions(detect_max_side=detect_max_side))[0]
    landmarks = observation.crop_points_to_photo(observation.landmarks.double())[0].numpy()
    error = np.linalg.norm(landmarks - truth, axis=1)
    assert error.mean() < 0.03 * 100 and np.median(error) < 0.02 * 100


@pytest.mark.slow  # mediapipe
def test_small_face_below_the_minimum_size_is_too_small(mediapipe_detector, small_face) -> None:
    with pytest.raises(FaceTooSmallError, match="minimum 150 px"):
        observe_photo(small_face[0], mediapipe_detector, ObserveOptions(min_face_size=150), name="small")


@pytest.mark.slow  # mediapipe
def test_blank_grey_canvas_has_no_face(mediapipe_detector) -> None:
    canvas = np.repeat(_grey_canvas(1600, 2000, seed=3)[..., None], 3, axis=2)
    with pytest.raises(NoFaceError, match="blank: no face found"):
        observe_photo(canvas, mediapipe_detector, ObserveOptions(), name="blank")
