"""Loader for the ICT-FaceKit Light model (repacked ``ict_facekit_light.npz``, see its SOURCE.md, or the compact
copy shipped in the package, :mod:`fit3dmm.models.compact`).

Identity modes are unit-variance PCA displacements; the first 53 expressions are ARKit-named blendshapes
whose weights live in [0, 1].  The face region (vertices 0..9408) plus the two eyeballs is used for
fitting; the full head and mouth interior stay available for output.  The transparent eye layers and the
eyelashes (polygons 24692..26383) are left out of the triangles (their vertices stay, unused).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fit3dmm.models.compact import COMPACT_NPZ, read_compact_ict
from fit3dmm.models.face_model import FaceModel, FaceModelAssets, file_checksum, quads_to_triangles

ICT_NPZ = "ict_facekit_light.npz"
ICT_FILES = (ICT_NPZ, COMPACT_NPZ)
"""The ICT model files a folder may hold, in order of preference: float32 original, then the compact copy."""
ICT_FACE_VERTICES = 9409  # vertices 0..9408 are the face region
ICT_EYEBALLS = (21451, 24591)  # both eyeballs (sclera and iris), vertices 21451..24590
# polygons from 24692 on are the lacrimal fluid, eye blend, eye occlusion and eyelash layers: thin shells
# meant for transparent shading that would hide the eyes in an opaque render or mesh viewer; not drawn
ICT_OPAQUE_POLYGONS = 24692
ICT_NUM_ARKIT = 53  # the expressions the repository's own loader uses; 4 extras follow in the npz


def ict_file(directory: str | Path) -> Path | None:
    """The ICT model file in ``directory`` (first of :data:`ICT_FILES` present), or None."""
    for name in ICT_FILES:
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    return None


def load_ict(directory: str | Path, *, num_identity: int = 100, extra_expressions: bool = False) -> FaceModel:
    """Load ICT-FaceKit Light from a folder holding ``ict_facekit_light.npz`` or its compact copy.

    Args:
        directory: folder with the npz (a model folder found by :mod:`fit3dmm.models.store`).
        num_identity: how many identity modes to keep (≤ 100).
        extra_expressions: also keep the 4 shapes the repository's loader ignores (pupils, cheek raisers).
    """
    path = ict_file(directory)
    if path is None:
        raise FileNotFoundError(f"{Path(directory) / ICT_NPZ}: no ICT-FaceKit npz here")
    try:
        data = read_compact_ict(path) if path.name == COMPACT_NPZ else np.load(path)
        neutral = data["neutral"]
        identity = data["identity"][:num_identity]
        n_exp = len(data["expression_names"]) if extra_expressions else ICT_NUM_ARKIT
        expression = data["expression"][:n_exp]
        names = [str(n) for n in data["expression_names"][:n_exp]]
        faces = data["faces"][:ICT_OPAQUE_POLYGONS]
        faces_uv = data["faces_uv"][:ICT_OPAQUE_POLYGONS]
        uv = data["uv"]
        landmarks = data["landmarks_multipie68"]
    except (KeyError, ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a valid ICT-FaceKit npz ({exc})") from exc
    face = np.arange(ICT_FACE_VERTICES)
    # the fitted region is the face plus the eyeballs: the face mesh is open at the eyes, and the eye parts
    # of PRDL need the vertices seen through that opening (sclera and iris), not only the eyelid rims
    region = np.concatenate([face, np.arange(*ICT_EYEBALLS)])
    return FaceModel(
        "ict",
        neutral,
        identity,
        expression,
        quads_to_triangles(faces),
        landmarks,
        expression_names=names,
        expression_range=(0.0, 1.0),
        face_vertices=region,
        assets=FaceModelAssets(),
        uv=uv,
        triangles_uv=quads_to_triangles(faces_uv),
        checksum=file_checksum(str(path)),
    )
