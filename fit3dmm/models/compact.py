"""The compact ICT-FaceKit Light that ships inside the package: 16-bit blendshapes, the rest unchanged.

The float32 ``ict_facekit_light.npz`` is 23 MB; its 157 displacement bases (100 identity modes, 57 expressions)
are 99 % of it.  Here each basis k and axis c is stored as int16 with its own scale
``s[k, c] = max_v |B[k, v, c]| / 32767`` (so ``B ≈ s · q``, error ≤ s/2 per entry), delta-coded along the vertex
order (neighbouring vertices move alike) and split into low and high byte planes, which deflate well:
about 14 MB in all.  Measured against the float32 original (``tests/test_models_compact.py``): the largest
vertex error over random faces (identity ~ N(0, 1) or U(−3, 3), expressions U(0, 1)) is about 0.003 mm,
under the 0.01 mm we allow.  Every other array (mean, mesh, uv, landmarks, names, materials) is copied
exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fit3dmm.io.atomic import atomic_write

COMPACT_NPZ = "ict_facekit_light_q16.npz"
QUANTIZED = ("identity", "expression")
"""The arrays stored as 16-bit bases; the others are copied as they are."""
_LEVELS = 32767


def quantize_basis(basis: np.ndarray) -> dict[str, np.ndarray]:
    """(K, V, 3) float displacements → ``scale`` (K, 1, 3) float32, ``low`` and ``high`` (K, 3, V) uint8.

    ``low``/``high`` are the byte planes of the int16 codes delta-coded along V (wrapping modulo 2¹⁶, undone
    exactly by :func:`dequantize_basis`).
    """
    basis = np.asarray(basis, np.float32)
    if basis.ndim != 3 or basis.shape[2] != 3:
        raise ValueError(f"basis must be (K, V, 3), got {basis.shape}")
    peak = np.abs(basis).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / _LEVELS, 1.0).astype(np.float32)
    codes = np.round(basis / scale).astype(np.int16).transpose(0, 2, 1)  # (K, 3, V)
    delta = np.diff(codes, axis=2, prepend=np.zeros_like(codes[:, :, :1]))  # int16, wraps
    planes = delta.view(np.uint16)
    return {"scale": scale, "low": (planes & 0xFF).astype(np.uint8), "high": (planes >> 8).astype(np.uint8)}


def dequantize_basis(scale: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The inverse of :func:`quantize_basis`: (K, V, 3) float32 ``scale · q``."""
    delta = (high.astype(np.uint16) << 8 | low.astype(np.uint16)).view(np.int16)
    codes = np.cumsum(delta, axis=2, dtype=np.int16)  # the same wrap-around undoes the deltas
    return codes.transpose(0, 2, 1).astype(np.float32) * scale


def write_compact_ict(source: str | Path, dest: str | Path) -> Path:
    """Write the compact form of the float32 ``ict_facekit_light.npz`` at ``source`` to ``dest`` (atomic)."""
    source, dest = Path(source), Path(dest)
    with np.load(source, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    missing = [name for name in QUANTIZED if name not in arrays]
    if missing:
        raise ValueError(f"{source}: not an ICT-FaceKit npz (no {', '.join(missing)})")
    packed: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if name in QUANTIZED:
            packed.update({f"{name}__{key}": part for key, part in quantize_basis(value).items()})
        else:
            packed[name] = value
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest) as out:
        np.savez_compressed(out, **packed)
    return dest


def read_compact_ict(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a compact npz under the names of the float32 original (bases as float32)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if "__" not in name}
        for name in QUANTIZED:
            arrays[name] = dequantize_basis(*(data[f"{name}__{key}"] for key in ("scale", "low", "high")))
    return arrays
