"""Loader for 3DDFA-V3's ``face_model.npy`` (Wang et al., CVPR 2024), the face model the PRDL paper fits.

The file (``assets/face_model.npy`` of https://github.com/wang-zidu/3DDFA-V3, downloaded from its Hugging
Face page) is a pickled dict saved with ``np.save``; its layout, as 3DDFA-V3's ``model/recon.py`` reads it:

=================  ================  ==================================================================
key                shape             content
=================  ================  ==================================================================
``u``              (3V, 1)           mean shape, vertex-major xyz, dm (Deep3DFaceRecon's BFM front face)
``id``             (3V, 80)          identity basis, eigenvalues folded in, dm
``exp``            (3V, 64)          expression basis, eigenvalues folded in, dm
``u_alb``          (3V, 1)           mean albedo, RGB 0..255
``alb``            (3V, 80)          albedo basis, 0..255
``tri``            (T, 3)            triangles, 0-based
``ldm68``          (68,)             68 landmark vertices, 0-based
``annotation``     8 lists           part vertices: right_eye, left_eye, right_eyebrow, left_eyebrow,
                                     nose, up_lip, down_lip, skin
``annotation_tri`` 8 lists           part triangles (not used: parts follow from the vertex lists)
``parallel``       33 lists          face-profile candidates for landmark marching (not used: fitting uses
                                     the landmark correspondence of Algorithm 1)
``point_buf``      (V, 8)            triangles around each vertex (not used)
``uv_coords``      (V, 3)            per-vertex texture coordinates in [0, 1] (optional)
=================  ================  ==================================================================

V = 35,709, T = 70,789.  3DDFA-V3 uses ``tri`` and ``ldm68`` as indices without offset (0-based) and
shares Deep3DFaceRecon's camera (distance 10, near 5, far 15), so lengths are in dm: ×10 gives cm.  Colours
are divided by 255 as in its ``compute_albedo``.  The coefficients are those of 3DDFA-V3 (N(0, 1) a priori,
``identity_std`` = ``expression_std`` = 1).  Unlike Deep3DFaceRecon, 3DDFA-V3 does not recentre the mean.

The pickle is executed by ``np.load(allow_pickle=True)``: only load files from a source you trust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fit3dmm.models.bfm import DM_TO_CM, check_face_size, orient_outward
from fit3dmm.models.face_model import FaceModel, FaceModelAssets, file_checksum
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX

DDFA_V3_FILE = "face_model.npy"
DDFA_V3_REQUIRED = ("u", "id", "exp", "u_alb", "alb", "tri", "ldm68", "annotation")
# the order of model['annotation'] in 3DDFA-V3 (its recon.py); left/right are resolved geometrically
DDFA_V3_PARTS: tuple[str, ...] = (
    "right_eye", "left_eye", "right_eyebrow", "left_eyebrow", "nose", "up_lip", "down_lip", "skin",
)
# later parts overwrite earlier ones where the vertex lists overlap: skin first, the small parts last
_PAINT_ORDER = (
    "skin", "nose", "up_lip", "down_lip", "right_eyebrow", "left_eyebrow", "right_eye", "left_eye",
)


def ddfa_v3_path(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``path / face_model.npy``."""
    path = Path(path)
    return path if path.is_file() else path / DDFA_V3_FILE


def _side_pairs(mean: np.ndarray, lists: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Name the 8 annotation lists with :data:`fit3dmm.types.parts.PART_NAMES` names.

    The eye and eyebrow pairs are named by geometry, not by the file's labels (whose "right" is not
    documented): the one with the larger mean x is the subject's left (+x in the model frame).
    """
    named = dict(zip(DDFA_V3_PARTS, lists, strict=True))
    for part in ("eye", "eyebrow"):
        a, b = named[f"right_{part}"], named[f"left_{part}"]
        if a.size and b.size and mean[a, 0].mean() > mean[b, 0].mean():
            named[f"right_{part}"], named[f"left_{part}"] = b, a
    return named


def part_labels_from_annotation(mean: np.ndarray, annotation: list[np.ndarray]) -> np.ndarray:
    """3DDFA-V3's 8 part vertex lists → (V,) labels in :data:`fit3dmm.types.parts.PART_NAMES` order, -1 elsewhere.

    Args:
        mean: (V, 3) mean shape in the fit3dmm frame (+x towards the subject's left).
        annotation: 8 int arrays in 3DDFA-V3's order (:data:`DDFA_V3_PARTS`).
    """
    if len(annotation) != NUM_PARTS:
        raise ValueError(f"annotation must hold {NUM_PARTS} vertex lists, got {len(annotation)}")
    nv = mean.shape[0]
    lists = [np.asarray(a, dtype=np.int64).ravel() for a in annotation]
    if any(a.size and (a.min() < 0 or a.max() >= nv) for a in lists):
        raise ValueError(f"annotation vertex indices must lie in [0, {nv})")
    named = _side_pairs(mean, lists)
    labels = np.full(nv, -1, dtype=np.int64)
    for name in _PAINT_ORDER:
        labels[named[name]] = PART_INDEX[name]
    return labels


def load_ddfa_v3(
    path: str | Path, *, num_identity: int = 80, num_expression: int = 64, num_albedo: int = 80
) -> FaceModel:
    """Load 3DDFA-V3's ``face_model.npy`` (the file, or the folder holding it) as a cm FaceModel.

    ``mean = u · 10`` reshaped to (V, 3); ``identity[k] = id[:, k] · 10`` reshaped likewise (and
    ``expression``); albedo ``u_alb / 255 + Σ γ_k alb[:, k] / 255``.  Part labels come from
    ``annotation`` (:func:`part_labels_from_annotation`).
    """
    file = ddfa_v3_path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no 3DDFA-V3 face model here")
    try:
        data = np.load(file, allow_pickle=True).item()
    except (OSError, ValueError, AttributeError, EOFError) as exc:
        raise ValueError(f"{file}: not a 3DDFA-V3 face_model.npy ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a pickled dict, got {type(data).__name__}")
    missing = [k for k in DDFA_V3_REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{file}: missing key(s) {', '.join(missing)}")

    def basis(key: str, count: int) -> np.ndarray:
        flat = np.asarray(data[key], dtype=np.float64)
        if flat.ndim != 2 or flat.shape[1] < count or flat.shape[0] != 3 * nv:
            raise ValueError(f"{file}: {key} must be ({3 * nv}, ≥{count}), got {flat.shape}")
        return flat[:, :count].T.reshape(count, nv, 3)

    mean = np.asarray(data["u"], dtype=np.float64).reshape(-1, 3) * DM_TO_CM
    nv = mean.shape[0]
    check_face_size(mean, file)
    tri = np.asarray(data["tri"], dtype=np.int64)
    landmarks = np.asarray(data["ldm68"], dtype=np.int64).ravel()
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.min() < 0 or tri.max() >= nv:
        raise ValueError(f"{file}: tri must be (T, 3) 0-based indices into {nv} vertices")
    if landmarks.shape != (68,) or landmarks.min() < 0 or landmarks.max() >= nv:
        raise ValueError(f"{file}: ldm68 must be 68 0-based indices into {nv} vertices")
    tri = orient_outward(mean, tri)
    try:
        labels = part_labels_from_annotation(mean, list(data["annotation"]))
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from exc
    uv = data.get("uv_coords")
    return FaceModel(
        "3ddfa_v3",
        mean,
        basis("id", num_identity) * DM_TO_CM,
        basis("exp", num_expression) * DM_TO_CM,
        tri,
        landmarks,
        albedo_mean=np.asarray(data["u_alb"], dtype=np.float64).reshape(nv, 3) / 255.0,
        albedo_basis=basis("alb", num_albedo) / 255.0,
        assets=FaceModelAssets(part_labels=labels, source={"part_labels": f"{file.name}: annotation"}),
        uv=None if uv is None else np.asarray(uv)[:, :2],
        triangles_uv=None if uv is None else tri,
        checksum=file_checksum(str(file)),
    )
