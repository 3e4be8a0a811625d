"""Image outputs: PNG files (8 or 16 bit), colour-coded part maps and depth maps, all written atomically.

Depth PNG format: single-channel 16-bit, value = round(depth · :data:`DEPTH_UNITS_PER_CM`), i.e. units of
0.1 mm, with 0 meaning background (no surface); the largest storable depth is 655.35 cm.  Depth is the
camera depth −Z in cm (:mod:`fit3dmm.render.camera`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fit3dmm.io.atomic import atomic_write
from fit3dmm.types.parts import BACKGROUND_COLOR, HAIR_COLOR, NUM_PARTS, PART_COLORS

DEPTH_UNITS_PER_CM = 100
"""Depth PNG values per centimetre (1 unit = 0.1 mm)."""


def encode_png(image: np.ndarray) -> bytes:
    """Encode (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, uint8 or uint16, as PNG bytes."""
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG images must be uint8 or uint16, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))) or min(image.shape[:2]) < 1:
        raise ValueError(f"PNG images must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} image as PNG")
    return buffer.tobytes()


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Atomically write an (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA image, uint8 or uint16, as PNG."""
    data = encode_png(image)
    with atomic_write(path) as handle:
        handle.write(data)


def colorize_labels(labels: np.ndarray, hair_index: int | None = None) -> np.ndarray:
    """Colour-code a part label map: (H, W) int → (H, W, 3) uint8 RGB.

    Labels index :data:`fit3dmm.types.parts.PART_NAMES` (colours :data:`~fit3dmm.types.parts.PART_COLORS`); −1 is
    background (:data:`~fit3dmm.types.parts.BACKGROUND_COLOR`) and ``hair_index``, when given, is hair
    (:data:`~fit3dmm.types.parts.HAIR_COLOR`).  Any other value is an error.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an (H, W) integer array, got {labels.shape} {labels.dtype}")
    if hair_index is not None and -1 <= hair_index < NUM_PARTS:
        raise ValueError(f"hair_index {hair_index} collides with background (-1) or a part "
                         f"(0..{NUM_PARTS - 1})")
    palette = np.array([*PART_COLORS, HAIR_COLOR, BACKGROUND_COLOR], np.uint8)
    index = labels.astype(np.int64)
    unknown = (index < -1) | (index >= NUM_PARTS)
    if hair_index is not None:
        hair = index == hair_index
        unknown &= ~hair
        index = np.where(hair, NUM_PARTS, index)
    if unknown.any():
        raise ValueError(f"labels hold values that are neither a part, background (-1) nor hair: "
                         f"{sorted(np.unique(labels[unknown]).tolist())[:10]}")
    return palette[np.where(index == -1, NUM_PARTS + 1, index)]


def write_depth_png(path: str | Path, depth: np.ndarray) -> None:
    """Atomically write an (H, W) depth map in cm, +inf for background, as a 16-bit PNG (module docstring).

    Raises:
        ValueError: NaN or −inf values, or a finite depth outside [0.01, 655.35] cm (not storable).
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    surface = np.isfinite(depth)
    if (np.isnan(depth) | (depth == -np.inf)).any():
        raise ValueError("depth holds NaN or -inf; background must be +inf")
    units = np.rint(np.where(surface, depth, 0.0) * DEPTH_UNITS_PER_CM)
    if surface.any() and (units[surface].min() < 1 or units[surface].max() > 65535):
        lo, hi = 1 / DEPTH_UNITS_PER_CM, 65535 / DEPTH_UNITS_PER_CM
        raise ValueError(f"finite depth must lie in [{lo}, {hi}] cm, "
                         f"got [{depth[surface].min():.4g}, {depth[surface].max():.4g}]")
    write_png(path, units.astype(np.uint16))


def read_depth_png(path: str | Path) -> np.ndarray:
    """Read a :func:`write_depth_png` file back: (H, W) float32 depth in cm, +inf for background."""
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None:
        raise ValueError(f"cannot read depth PNG {path}: missing or not a PNG")
    if values.dtype != np.uint16 or values.ndim != 2:
        raise ValueError(f"{path} is not a 16-bit single-channel depth PNG ({values.dtype}, {values.shape})")
    depth = values.astype(np.float32) / DEPTH_UNITS_PER_CM
    depth[values == 0] = np.inf
    return depth
