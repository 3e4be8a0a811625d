"""The mesh overlay changes exactly the covered pixels; landmark dots land where they should."""

from __future__ import annotations

import numpy as np
import pytest

from fit3dmm.render.overlay import draw_points, overlay_mesh

# a square with edges at 9.5 and 19.5 in x, 4.5 and 14.5 in y: it covers pixel columns 10..19, rows 5..14
SQUARE = np.array([[9.5, 4.5], [19.5, 4.5], [19.5, 14.5], [9.5, 14.5]])
TRIANGLES = np.array([[0, 3, 2], [0, 2, 1]])


def _photo(h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_overlay_changes_exactly_the_covered_pixels() -> None:
    photo = _photo()
    normals = np.tile([0.0, 0.0, 1.0], (4, 1))  # facing the headlight: shade 1
    color = (255, 0, 128)
    out = overlay_mesh(photo, SQUARE, np.full(4, 50.0), TRIANGLES, alpha=0.6, color=color, normals=normals)
    assert out.dtype == np.uint8 and out.shape == photo.shape
    region = np.zeros(photo.shape[:2], dtype=bool)
    region[5:15, 10:20] = True
    np.testing.assert_array_equal(out[~region], photo[~region])
    expect = np.rint(0.4 * photo[region].astype(np.float64) + 0.6 * np.array(color, dtype=np.float64))
    np.testing.assert_array_equal(out[region], expect.astype(np.uint8))
    assert (photo == _photo()).all()  # the input is not modified


def test_overlay_without_normals_shades_by_depth() -> None:
    photo = np.zeros((24, 32, 3), dtype=np.uint8)
    depth = np.array([40.0, 60.0, 60.0, 40.0])  # the left edge is nearer
    out = overlay_mesh(photo, SQUARE, depth, TRIANGLES, alpha=1.0, color=(200, 200, 200))
    row = out[10, 10:20, 0].astype(int)
    assert (np.diff(row) <= 0).all() and row[0] > row[-1]  # nearer is brighter
    assert (out[:5] == 0).all() and (out[15:] == 0).all()


def test_overlay_validates_inputs() -> None:
    with pytest.raises(ValueError, match="uint8"):
        overlay_mesh(np.zeros((8, 8, 3)), SQUARE, np.ones(4), TRIANGLES)
    with pytest.raises(ValueError, match="alpha"):
        overlay_mesh(_photo(), SQUARE, np.ones(4), TRIANGLES, alpha=2.0)
    with pytest.raises(ValueError, match="depth"):
        overlay_mesh(_photo(), SQUARE, np.ones(3), TRIANGLES)


def test_draw_points() -> None:
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    out = draw_points(image, np.array([[5.0, 7.0], [np.nan, 3.0], [14.0, 12.0]]), (0, 255, 0), radius=2)
    assert (image == 0).all()  # drawn on a copy
    np.testing.assert_array_equal(out[7, 5], [0, 255, 0])  # (x, y) = (5, 7) is row 7, column 5
    np.testing.assert_array_equal(out[12, 14], [0, 255, 0])
    assert out[7, 9].sum() == 0 and out[2, 5].sum() == 0  # beyond the radius
    drawn = out.any(-1)
    rows, cols = np.nonzero(drawn)
    near_first = (np.abs(rows - 7) <= 3) & (np.abs(cols - 5) <= 3)
    near_second = (np.abs(rows - 12) <= 3) & (np.abs(cols - 14) <= 3)
    assert (near_first | near_second).all()  # nothing else drawn (the NaN point is skipped)
