"""Animated glTF 2.0 binary (GLB): a face mesh whose morph targets are the model's blendshapes, with their
weights (and optionally the head pose) animated per frame, so a face track plays in Blender or a glTF viewer.

trimesh cannot write morph-target animation, so the GLB is assembled here with numpy and json, following the
glTF 2.0 specification: a 12-byte header (``glTF``, version 2, total length), a JSON chunk padded with spaces
and a BIN chunk padded with zeros, both to 4 bytes; every bufferView starts on a 4-byte boundary and holds one
tightly packed accessor (no ``byteStride``).

Conventions:

- Units and axes: inputs are in fit3dmm's model frame (centimetres, +y up, +z out of the face towards the
  viewer, +x towards the subject's left); glTF is metres with +Y up and the asset's front facing +Z — the
  same right-handed axes, so positions are only scaled by 0.01 (``CM_TO_M``).
- Morph targets: one per blendshape, POSITION displacements only, named in ``mesh.extras.targetNames`` (the
  convention Blender and three.js read); ``mesh.weights`` are zeros (the neutral face when no animation
  plays).  Each target is stored as a sparse accessor (only the vertices it moves) when that is smaller than
  dense, as a dense accessor otherwise, and as an accessor without data (all zeros) when it moves nothing.
- Normals: the rest shape's smooth (area-weighted) vertex normals, so viewers shade smoothly; targets carry no
  normal displacements (they would about double the file), so a moving region is lit with its rest normals.
- Gaps: a frame whose weights (rotation, translation) hold a NaN gets no keyframe in that channel; viewers
  interpolate linearly (spherically for rotations) between the neighbouring valid keyframes and hold the first
  and last valid values outside them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fit3dmm import __version__
from fit3dmm.io.atomic import atomic_write

CM_TO_M = 0.01
_MAGIC, _VERSION = b"glTF", 2
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_COMPONENT_TYPES = {np.dtype("<f4"): 5126, np.dtype("<u2"): 5123, np.dtype("<u4"): 5125}
_TYPES = {1: "SCALAR", 3: "VEC3", 4: "VEC4"}


def _numeric(name: str, value: np.ndarray, shape: tuple[int | None, ...]) -> np.ndarray:
    """Check a numeric array's shape (None = any size); returns it as float64 (NaN allowed, ±inf not)."""
    array = np.asarray(value)
    if array.ndim != len(shape) or any(s not in (None, n) for s, n in zip(shape, array.shape, strict=True)):
        wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {wanted}, got {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be numeric, got {array.dtype}")
    array = array.astype(np.float64)
    if np.isinf(array).any():
        raise ValueError(f"{name} holds infinite values")
    return array


def _finite(name: str, value: np.ndarray, shape: tuple[int | None, ...]) -> np.ndarray:
    """Like :func:`_numeric`, rejecting NaN too."""
    array = _numeric(name, value, shape)
    if np.isnan(array).any():
        raise ValueError(f"{name} holds NaN values")
    return array


def _index_dtype(count: int) -> np.dtype:
    """uint16 while every index is below 65535 (the restart value glTF forbids in indices), else uint32."""
    return np.dtype("<u2") if count <= 0xFFFF else np.dtype("<u4")


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals; (0, 0, 1) for vertices without area (unused or degenerate)."""
    corners = vertices[triangles]
    face = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 0, normals / np.where(length > 0, length, 1.0), [0.0, 0.0, 1.0])


class _Binary:
    """The BIN chunk with its bufferViews and accessors, built one array at a time."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def view(self, data: np.ndarray, target: int | None = None) -> int:
        """Append ``data`` (little-endian, C order) at the next 4-byte boundary; returns its bufferView."""
        pad = -self.size % 4
        raw = np.ascontiguousarray(data).tobytes()
        self.parts += [bytes(pad), raw]
        self.size += pad
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self.size, "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.size += len(raw)
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, data: np.ndarray, *, target: int | None = None, bounds: bool = False) -> int:
        """A dense accessor over (N,) or (N, C) ``data``, with min/max when ``bounds``; returns its index."""
        accessor = _header(data)
        accessor["bufferView"] = self.view(data, target)
        if bounds:
            accessor.update(_bounds(data))
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def morph_target(self, delta: np.ndarray) -> int:
        """A POSITION displacement accessor for (V, 3) float32 ``delta``.

        Sparse (indices + values of the vertices that move, over an implicit zero array) when that takes
        fewer bytes than dense; no data at all when nothing moves.  min/max are those of the full array.
        """
        accessor = {**_header(delta), **_bounds(delta)}
        index = np.flatnonzero((delta != 0).any(axis=1)).astype(_index_dtype(len(delta)))
        if index.size and index.size * (index.itemsize + delta.itemsize * 3) < delta.nbytes:
            accessor["sparse"] = {
                "count": int(index.size),
                "indices": {"bufferView": self.view(index), "componentType": _COMPONENT_TYPES[index.dtype]},
                "values": {"bufferView": self.view(delta[index])},
            }
        elif index.size:
            accessor["bufferView"] = self.view(delta, _ARRAY_BUFFER)
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def chunk(self) -> bytes:
        """The BIN chunk's content, zero-padded to 4 bytes."""
        return b"".join(self.parts) + bytes(-self.size % 4)


def _header(data: np.ndarray) -> dict[str, Any]:
    """componentType, count and type of an accessor over (N,) or (N, C) ``data``."""
    width = 1 if data.ndim == 1 else data.shape[1]
    return {"componentType": _COMPONENT_TYPES[data.dtype], "count": len(data), "type": _TYPES[width]}


def _bounds(data: np.ndarray) -> dict[str, list[float]]:
    """Per-component min and max, exact float32 values (viewers and the validator compare them bit for bit)."""
    rows = data.reshape(len(data), -1)
    return {"min": [float(v) for v in rows.min(axis=0)], "max": [float(v) for v in rows.max(axis=0)]}


def _check_times(times: np.ndarray) -> np.ndarray:
    """(N,) float32 seconds, ≥ 0 and strictly increasing (glTF's rules for animation inputs)."""
    seconds = _finite("times", times, (None,)).astype(np.float32)
    if len(seconds) == 0:
        raise ValueError("times must hold at least one frame")
    if seconds[0] < 0:
        raise ValueError(f"times must start at 0 s or later, got {seconds[0]}")
    if (np.diff(seconds) <= 0).any():
        raise ValueError("times must be strictly increasing (in float32)")
    return seconds


def _check_names(names: Sequence[str], count: int) -> list[str]:
    """``count`` distinct non-empty strings (Blender renames duplicate shape keys)."""
    names = list(names)
    if len(names) != count or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"target_names must be {count} non-empty strings, one per target")
    if len(set(names)) != count:
        raise ValueError("target_names must be distinct")
    return names


def _check_rotations(rotations: np.ndarray, frames: int) -> np.ndarray:
    """(N, 4) unit xyzw quaternions, NaN rows kept; each valid row's sign follows the previous valid row so
    that every viewer interpolates along the short arc."""
    quats = _numeric("rotations", rotations, (frames, 4))
    valid = ~np.isnan(quats).any(axis=1)
    norm = np.linalg.norm(quats[valid], axis=1, keepdims=True)
    if (norm < 1e-6).any():
        raise ValueError("rotations must be non-zero quaternions (x, y, z, w)")
    unit = quats[valid] / norm
    flips = np.cumprod(np.where((unit[1:] * unit[:-1]).sum(axis=1) < 0, -1.0, 1.0))
    unit[1:] *= flips[:, None]
    quats[valid] = unit
    return quats


def write_animated_glb(
    path: str | Path,
    vertices: np.ndarray,
    triangles: np.ndarray,
    targets: np.ndarray,
    target_names: Sequence[str],
    times: np.ndarray,
    weights: np.ndarray,
    *,
    rotations: np.ndarray | None = None,
    translations: np.ndarray | None = None,
    name: str = "face",
    tolerance: float = 0.0,
) -> None:
    """Write an animated GLB atomically: rest mesh, one morph target per blendshape, per-frame weights.

    The animated shape at frame n is ``R_n (vertices + Σ_e weights[n, e] · targets[e]) + translations[n]``
    (``R_n`` the rotation of ``rotations[n]``), scaled to metres (module docstring for all conventions).

    Args:
        path: output file, ``.glb``.
        vertices: (V, 3) rest shape in cm (e.g. the mean plus the fitted identity).
        triangles: (T, 3) vertex indices, counter-clockwise seen from outside (glTF's front faces).
        targets: (E, V, 3) displacement per unit weight in cm (e.g. ``FaceModel.expression_basis``).
        target_names: (E,) distinct names (e.g. ``FaceModel.expression_names``).
        times: (N,) frame times in seconds, ≥ 0 and strictly increasing.
        weights: (N, E) weight per frame and target (any real value; ICT's live in [0, 1]); a row with a NaN
            is a gap frame and gets no keyframe.
        rotations: (N, 4) head rotation per frame as (x, y, z, w) quaternions (normalised here), about the
            model origin in model axes; NaN rows are gaps.  None: no rotation channel.
        translations: (N, 3) head translation per frame in cm, NaN rows are gaps.  None: no channel.
        name: name of the scene node, mesh and animation.
        tolerance: a vertex's displacement in a target is written as zero when none of its three components
            exceeds this (cm); 0 keeps every non-zero displacement exactly.  Smaller files, lossy.
    Raises:
        ValueError: a wrong extension, inconsistent shapes, infinite values, NaN outside the frame arrays,
            invalid times or names, a zero quaternion, or a channel without any valid frame.
    """
    path = Path(path)
    if path.suffix.lower() != ".glb":
        raise ValueError(f"write_animated_glb writes .glb files, got {path}")
    vertices = _finite("vertices", vertices, (None, 3))
    nv = len(vertices)
    if nv == 0:
        raise ValueError("vertices must hold at least one vertex")
    tris = np.asarray(triangles)
    if tris.ndim != 2 or tris.shape[1] != 3 or len(tris) == 0 or not np.issubdtype(tris.dtype, np.integer):
        raise ValueError(f"triangles must be a non-empty (T, 3) integer array, got {tris.shape} {tris.dtype}")
    if tris.min() < 0 or tris.max() >= nv:
        raise ValueError(f"triangles must index 0..{nv - 1}, got values in [{tris.min()}, {tris.max()}]")
    targets = _finite("targets", targets, (None, nv, 3))
    if len(targets) == 0:
        raise ValueError("targets must hold at least one morph target")
    names = _check_names(target_names, len(targets))
    seconds = _check_times(times)
    frames = len(seconds)
    # glTF path → (argument, (N, C) values with NaN rows for gaps)
    channels = {"weights": ("weights", _numeric("weights", weights, (frames, len(targets))))}
    if rotations is not None:
        channels["rotation"] = ("rotations", _check_rotations(rotations, frames))
    if translations is not None:
        channels["translation"] = ("translations", _numeric("translations", translations, (frames, 3)) * CM_TO_M)
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite value ≥ 0 (cm), got {tolerance}")

    binary = _Binary()
    attributes = {
        "POSITION": binary.accessor((vertices * CM_TO_M).astype("<f4"), target=_ARRAY_BUFFER, bounds=True),
        "NORMAL": binary.accessor(_vertex_normals(vertices, tris).astype("<f4"), target=_ARRAY_BUFFER),
    }
    indices = binary.accessor(tris.ravel().astype(_index_dtype(nv)), target=_ELEMENT_ARRAY_BUFFER)
    morphs = []
    for target in targets:
        kept = (np.abs(target) > tolerance).any(axis=1)
        morphs.append({"POSITION": binary.morph_target(np.where(kept[:, None], target * CM_TO_M, 0).astype("<f4"))})

    samplers: list[dict[str, Any]] = []
    inputs: dict[bytes, int] = {}  # channels with the same valid frames share their time accessor
    for argument, values in channels.values():
        valid = ~np.isnan(values).any(axis=1)
        if not valid.any():
            raise ValueError(f"{argument} has no valid (NaN-free) frame")
        if valid.tobytes() not in inputs:
            inputs[valid.tobytes()] = binary.accessor(seconds[valid], bounds=True)
        kept = values[valid].astype("<f4")
        samplers.append({"input": inputs[valid.tobytes()], "interpolation": "LINEAR",
                         "output": binary.accessor(kept.ravel() if argument == "weights" else kept)})
    gltf = {
        "asset": {"version": "2.0", "generator": f"fit3dmm {__version__}"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [{
            "name": name,
            "primitives": [{"attributes": attributes, "indices": indices, "mode": 4, "targets": morphs}],
            "weights": [0.0] * len(targets),
            "extras": {"targetNames": names},
        }],
        "animations": [{
            "name": name,
            "samplers": samplers,
            "channels": [{"sampler": i, "target": {"node": 0, "path": key}} for i, key in enumerate(channels)],
        }],
        "accessors": binary.accessors,
        "bufferViews": binary.views,
        "buffers": [{"byteLength": len(binary.chunk())}],
    }
    with atomic_write(path) as handle:
        handle.write(_glb(gltf, binary.chunk()))


def _glb(gltf: dict[str, Any], chunk: bytes) -> bytes:
    """Header + JSON chunk (space-padded) + BIN chunk (already zero-padded)."""
    text = json.dumps(gltf, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 4)
    length = 12 + 8 + len(text) + 8 + len(chunk)
    return b"".join([
        struct.pack("<4sII", _MAGIC, _VERSION, length),
        struct.pack("<II", len(text), _JSON_CHUNK), text,
        struct.pack("<II", len(chunk), _BIN_CHUNK), chunk,
    ])


def read_glb(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """Read a GLB file: its JSON (as a dict) and its BIN chunk (b"" when it has none).

    Raises:
        ValueError: not a glTF 2.0 binary, a length that disagrees with the file, or a malformed chunk.
    """
    data = Path(path).read_bytes()
    if len(data) < 20 or data[:4] != _MAGIC:
        raise ValueError(f"{path} is not a GLB file (no 'glTF' header)")
    _, version, length = struct.unpack_from("<4sII", data)
    if version != _VERSION:
        raise ValueError(f"{path} is glTF binary version {version}, only version 2 is supported")
    if length != len(data):
        raise ValueError(f"{path}: the header says {length} bytes, the file has {len(data)}")
    chunks: list[tuple[int, bytes]] = []
    offset = 12
    while offset < length:
        if offset + 8 > length:
            raise ValueError(f"{path}: truncated chunk header at byte {offset}")
        size, kind = struct.unpack_from("<II", data, offset)
        if offset + 8 + size > length:
            raise ValueError(f"{path}: chunk at byte {offset} runs past the end of the file")
        chunks.append((kind, data[offset + 8:offset + 8 + size]))
        offset += 8 + size
    if chunks[0][0] != _JSON_CHUNK:
        raise ValueError(f"{path}: the first chunk is not JSON")
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == _BIN_CHUNK else b""
    return json.loads(chunks[0][1].decode("utf-8")), binary
