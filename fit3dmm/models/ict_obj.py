"""Convert an original ICT-FaceKit checkout (158 OBJ files) into the ``ict_facekit_light.npz`` layout.

The layout is the one of the shared ``ict-facekit-light/SOURCE.md``: ``neutral`` (V, 3) float32 from
``FaceXModel/generic_neutral_mesh.obj``; ``faces`` / ``faces_uv`` (F, 4) int32, 0-based, quads with 4
entries and triangles padded with -1; ``uv`` (Nuv, 2) float32; ``identity[k]`` = ``identityNNN.obj`` −
neutral and ``expression[e]`` = ``<name>.obj`` − neutral, each difference of the two float32 vertex arrays
taken in float64 and rounded to float32; ``expression_names``: the ``expressions`` list of
``vertex_indices.json`` in its order, then any other expression OBJ of the folder sorted by name (code
points); ``material_names`` (``usemtl`` groups in order of first use) and ``face_material`` int8;
``landmarks_multipie68`` int32 = ``idx_to_landmark_verts`` of the json.  Lengths stay in cm as in the OBJs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fit3dmm.io.atomic import atomic_write
from fit3dmm.models.ict import ICT_NPZ

ICT_NEUTRAL_OBJ = "generic_neutral_mesh.obj"
ICT_INDEX_JSON = "vertex_indices.json"
_IDENTITY = re.compile(r"identity(\d+)\.obj")
ICT_NPZ_KEYS: tuple[str, ...] = (
    "neutral", "faces", "uv", "faces_uv", "identity", "expression", "expression_names", "material_names",
    "face_material", "landmarks_multipie68",
)


@dataclass
class ObjMesh:
    """What :func:`read_obj` returns: the arrays of the npz layout for one OBJ file."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 4) int32, 0-based, -1 padded
    uv: np.ndarray  # (Nuv, 2) float32
    faces_uv: np.ndarray  # (F, 4) int32, 0-based, -1 padded (-1 where a corner has no uv)
    material_names: list[str]
    face_material: np.ndarray  # (F,) int8, -1 before any usemtl


def _floats(lines: list[str], width: int, path: Path, what: str) -> np.ndarray:
    """Parse ``tag x y [z]`` lines into (N, width) float32 (decimal → float64 → float32)."""
    rows = [line.split()[1 : 1 + width] for line in lines]
    if any(len(r) != width for r in rows):
        raise ValueError(f"{path}: a '{what}' line has fewer than {width} numbers")
    try:
        return np.asarray(rows, dtype=np.float64).reshape(-1, width).astype(np.float32)
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable '{what}' line ({exc})") from exc


def read_obj(path: str | Path) -> ObjMesh:
    """Read the vertices, texture coordinates, faces (triangles and quads) and materials of an OBJ file.

    Face corners may be ``v``, ``v/vt``, ``v/vt/vn`` or ``v//vn`` with positive 1-based indices.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    v_lines, vt_lines = [], []
    faces, faces_uv, face_material = [], [], []
    materials: dict[str, int] = {}
    current = -1
    for line in text:
        if line.startswith("v "):
            v_lines.append(line)
        elif line.startswith("vt "):
            vt_lines.append(line)
        elif line.startswith("usemtl"):
            name = line[6:].strip()
            current = materials.setdefault(name, len(materials))
        elif line.startswith("f "):
            corners = [c.split("/") for c in line.split()[1:]]
            if len(corners) not in (3, 4):
                raise ValueError(f"{path}: only triangles and quads are supported, got a {len(corners)}-gon")
            try:
                vi = [int(c[0]) - 1 for c in corners]
                ti = [int(c[1]) - 1 if len(c) > 1 and c[1] else -1 for c in corners]
            except ValueError as exc:
                raise ValueError(f"{path}: unreadable face line {line!r}") from exc
            if min(vi) < 0 or min(ti) < -1:
                raise ValueError(f"{path}: negative (relative) OBJ indices are not supported: {line!r}")
            pad = [-1] * (4 - len(corners))
            faces.append(vi + pad)
            faces_uv.append(ti + pad)
            face_material.append(current)
    vertices = _floats(v_lines, 3, path, "v")
    faces_arr = np.asarray(faces, dtype=np.int32).reshape(-1, 4)
    if faces_arr.size and faces_arr.max() >= len(vertices):
        raise ValueError(f"{path}: a face refers to vertex {faces_arr.max() + 1} of {len(vertices)}")
    return ObjMesh(
        vertices=vertices,
        faces=faces_arr,
        uv=_floats(vt_lines, 2, path, "vt"),
        faces_uv=np.asarray(faces_uv, dtype=np.int32).reshape(-1, 4),
        material_names=list(materials),
        face_material=np.asarray(face_material, dtype=np.int8),
    )


def read_obj_vertices(path: str | Path) -> tuple[np.ndarray, int]:
    """Only the vertices (V, 3) float32 of an OBJ file, and its number of faces (a cheap topology check)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    n_faces = sum(1 for line in lines if line.startswith("f "))
    return _floats([line for line in lines if line.startswith("v ")], 3, path, "v"), n_faces


def find_facex_folder(source: str | Path) -> Path:
    """The folder holding ``generic_neutral_mesh.obj``: ``source/FaceXModel`` or ``source`` itself."""
    source = Path(source)
    for folder in (source / "FaceXModel", source):
        if (folder / ICT_NEUTRAL_OBJ).is_file():
            return folder
    raise FileNotFoundError(f"{source}: no FaceXModel/{ICT_NEUTRAL_OBJ} (not an ICT-FaceKit checkout)")


def ict_expression_files(folder: Path, listed: list[str]) -> list[Path]:
    """Expression OBJs in npz order: the json's ``expressions`` first, then the other OBJs sorted by name."""
    missing = [name for name in listed if not (folder / f"{name}.obj").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: expression OBJ(s) listed in {ICT_INDEX_JSON} missing: {missing}")
    known = {*listed, Path(ICT_NEUTRAL_OBJ).stem}
    extra = sorted(
        p.stem for p in folder.glob("*.obj") if p.stem not in known and not _IDENTITY.fullmatch(p.name)
    )
    return [folder / f"{name}.obj" for name in [*listed, *extra]]


def _deltas(paths: list[Path], neutral: np.ndarray, n_faces: int) -> np.ndarray:
    """(N, V, 3) float32 ``float32(obj) − neutral`` computed in float64, topology checked."""
    out = np.empty((len(paths), *neutral.shape), dtype=np.float32)
    base = neutral.astype(np.float64)
    for i, path in enumerate(paths):
        verts, faces = read_obj_vertices(path)
        if verts.shape != neutral.shape or faces != n_faces:
            raise ValueError(
                f"{path}: {len(verts)} vertices / {faces} faces, the neutral mesh has "
                f"{len(neutral)} / {n_faces}"
            )
        out[i] = (verts.astype(np.float64) - base).astype(np.float32)
    return out


def check_ict_npz(path: str | Path) -> None:
    """Raise ValueError unless ``path`` holds the npz layout above with mutually consistent shapes."""
    try:
        with np.load(path, allow_pickle=False) as data:
            shapes = {k: data[k].shape for k in ICT_NPZ_KEYS}
            faces = data["faces"]
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not an ICT-FaceKit npz ({exc})") from exc
    nv = shapes["neutral"][0]
    problems = [
        what for what, ok in (
            ("neutral (V, 3)", shapes["neutral"] == (nv, 3)),
            ("identity (K, V, 3)", shapes["identity"][1:] == (nv, 3)),
            ("expression (E, V, 3)", shapes["expression"][1:] == (nv, 3)),
            ("expression_names (E,)", shapes["expression_names"] == shapes["expression"][:1]),
            ("faces (F, 4) in [-1, V)", faces.ndim == 2 and faces.shape[1] == 4 and faces.size > 0
             and faces.min() >= -1 and faces.max() < nv),
            ("faces_uv like faces", shapes["faces_uv"] == faces.shape),
            ("landmarks_multipie68 (68,)", shapes["landmarks_multipie68"] == (68,)),
        ) if not ok
    ]
    if problems:
        raise ValueError(f"{path}: wrong array shapes: {', '.join(problems)}")


def convert_ict_checkout(source: str | Path, dest: str | Path) -> Path:
    """Write ``dest/ict_facekit_light.npz`` and a copy of ``vertex_indices.json`` from an ICT checkout.

    Args:
        source: the checkout root (with ``FaceXModel/``) or the ``FaceXModel`` folder; read only.
        dest: an existing folder to write into (each file appears only once complete).
    Returns:
        The path of the npz.
    """
    folder = find_facex_folder(source)
    index_path = folder / ICT_INDEX_JSON
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        listed = [str(n) for n in index["expressions"]]
        landmarks = np.asarray(index["idx_to_landmark_verts"], dtype=np.int32)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{index_path}: missing (needed for the expression list)") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{index_path}: not an ICT-FaceKit vertex_indices.json ({exc!r})") from exc
    neutral = read_obj(folder / ICT_NEUTRAL_OBJ)
    if landmarks.shape != (68,) or landmarks.min() < 0 or landmarks.max() >= len(neutral.vertices):
        raise ValueError(f"{index_path}: idx_to_landmark_verts must be 68 vertex indices")
    matches = [(_IDENTITY.fullmatch(p.name), p) for p in folder.glob("identity*.obj")]
    by_number = {int(m.group(1)): p for m, p in matches if m}
    if sorted(by_number) != list(range(len(by_number))):
        raise ValueError(f"{folder}: identity OBJs must be numbered 0..N-1, found {sorted(by_number)}")
    expressions = ict_expression_files(folder, listed)
    n_faces = len(neutral.faces)
    arrays = {
        "neutral": neutral.vertices,
        "faces": neutral.faces,
        "uv": neutral.uv,
        "faces_uv": neutral.faces_uv,
        "identity": _deltas([by_number[k] for k in range(len(by_number))], neutral.vertices, n_faces),
        "expression": _deltas(expressions, neutral.vertices, n_faces),
        "expression_names": np.asarray([p.stem for p in expressions], dtype=str),
        "material_names": np.asarray(neutral.material_names, dtype=str),
        "face_material": neutral.face_material,
        "landmarks_multipie68": landmarks,
    }
    dest = Path(dest)
    with atomic_write(dest / ICT_NPZ) as out:
        np.savez_compressed(out, **arrays)
    with atomic_write(dest / ICT_INDEX_JSON) as out:
        out.write(index_path.read_bytes())
    return dest / ICT_NPZ
