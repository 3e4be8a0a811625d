"""write_png / colorize_labels / depth PNGs: files read back with OpenCV and compared."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fit3dmm.io.images import colorize_labels, read_depth_png, write_depth_png, write_png
from fit3dmm.types.parts import BACKGROUND_COLOR, HAIR_COLOR, PART_COLORS, PART_INDEX


def test_write_png_rgb_is_stored_as_bgr(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)  # red
    rgb[1, 2] = (1, 2, 3)
    write_png(tmp_path / "c.png", rgb)
    bgr = cv2.imread(str(tmp_path / "c.png"), cv2.IMREAD_UNCHANGED)
    assert tuple(bgr[0, 0]) == (0, 0, 255) and tuple(bgr[1, 2]) == (3, 2, 1)
    assert os.listdir(tmp_path) == ["c.png"]


def test_write_png_gray_16bit_and_rgba(tmp_path: Path) -> None:
    gray16 = np.array([[0, 1, 65535]], np.uint16)
    write_png(tmp_path / "g.png", gray16)
    back = cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, gray16)

    rgba = np.array([[[10, 20, 30, 40]]], np.uint8)
    write_png(tmp_path / "a.png", rgba)
    assert tuple(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)[0, 0]) == (30, 20, 10, 40)


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 2), np.float32), np.zeros((2, 2, 2), np.uint8), np.zeros((0, 3), np.uint8)]
)
def test_write_png_rejects_bad_arrays(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="PNG images must be"):
        write_png(tmp_path / "x.png", bad)
    assert os.listdir(tmp_path) == []


def test_colorize_labels() -> None:
    nose, skin = PART_INDEX["nose"], PART_INDEX["skin"]
    labels = np.array([[-1, nose], [skin, 8]])
    colors = colorize_labels(labels, hair_index=8)
    assert colors.dtype == np.uint8 and colors.shape == (2, 2, 3)
    expected = [BACKGROUND_COLOR, PART_COLORS[nose], PART_COLORS[skin], HAIR_COLOR]
    assert [tuple(c) for c in colors.reshape(-1, 3).tolist()] == expected
    with pytest.raises(ValueError, match=r"neither a part.*\[8\]"):
        colorize_labels(labels)
    with pytest.raises(ValueError, match="collides"):
        colorize_labels(labels, hair_index=3)
    with pytest.raises(ValueError, match="integer"):
        colorize_labels(labels.astype(float))


def test_depth_png_scale_and_round_trip(tmp_path: Path) -> None:
    depth = np.array([[np.inf, 50.0], [123.456, 0.01]])
    write_depth_png(tmp_path / "d.png", depth)
    raw = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    # 0.1 mm units: 50 cm → 5000, 123.456 cm → 12346, 0.01 cm → 1, background → 0
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, [[0, 5000], [12346, 1]])
    back = read_depth_png(tmp_path / "d.png")
    np.testing.assert_allclose(back, [[np.inf, 50.0], [123.46, 0.01]], rtol=1e-6)


@pytest.mark.parametrize("value", [np.nan, -np.inf, 0.001, 700.0, -3.0])
def test_depth_png_rejects_unstorable_values(tmp_path: Path, value: float) -> None:
    with pytest.raises(ValueError, match="depth"):
        write_depth_png(tmp_path / "d.png", np.array([[50.0, value]]))
    assert os.listdir(tmp_path) == []


def test_read_depth_png_rejects_an_8bit_png(tmp_path: Path) -> None:
    write_png(tmp_path / "rgb.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="not a 16-bit"):
        read_depth_png(tmp_path / "rgb.png")
