"""Loader for the Basel Face Model 2009 front face as used by Deep3DFaceRecon and 3DMM-Fitting-Pytorch.

The model is the 35,709-vertex front face of BFM 2009 with 80 identity, 64 expression and 80 albedo
coefficients, exactly as Deep3DFaceRecon's ``util/load_mats.py`` (``transferBFM09``) builds it:

* identity ``idBase = shapePC[:, :80] · shapeEV[:80] / 1e5`` (BFM is in µm, Deep3D works in dm),
* expression ``exBase = expPC[:, :64] · std_exp[:64] / 1e5`` (Guo et al.'s basis, ``Exp_Pca.bin``),
* albedo ``texBase = texPC[:, :80] · texEV[:80]`` on 0..255 RGB,
* vertices picked with ``BFM_front_idx.mat`` (front face → expression-model vertex, 1-based) and
  ``BFM_exp_idx.mat`` (expression-model vertex → BFM vertex, 1-based ``trimIndex``),
* triangles and the 68 landmarks from ``facemodel_info.mat`` (``tri``, ``keypoints``, both 1-based).

Converted to fit3dmm: ×10 (dm → cm), the mean shape recentred on its centroid (Deep3DFaceRecon's default
``recenter=True``), colours ÷255 to [0, 1], indices 0-based, triangles checked to wind counter-clockwise seen
from outside.  The eigenvalues (used as standard deviations, as in BFM's own ``coef2object``) are folded
into the bases, so the coefficients are those of Deep3DFaceRecon, a priori N(0, 1): ``identity_std`` and
``expression_std`` are 1.  The BFM frame already has +y up and +z towards the viewer.

Files the user provides, all in one folder:

* ``01_MorphableModel.mat``: BFM 2009, from https://faces.dmi.unibas.ch/bfm/ (registration, non-commercial
  licence),
* ``Exp_Pca.bin``: the expression basis of Guo et al., "CoarseData" of https://github.com/Juyong/3DFace,
* ``std_exp.txt``, ``BFM_front_idx.mat``, ``BFM_exp_idx.mat``, ``facemodel_info.mat``: the ``BFM/`` folder
  of https://github.com/sicxu/Deep3DFaceRecon_pytorch (also shipped by 3DMM-Fitting-Pytorch),

or instead just the already converted ``BFM_model_front.mat`` (Deep3DFaceRecon) or ``BFM09_model_info.mat``
(3DMM-Fitting-Pytorch), which holds the same arrays in dm and is used when present.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import scipy.io

from fit3dmm.models.face_model import FaceModel, file_checksum

BFM_RAW_FILES: tuple[str, ...] = (
    "01_MorphableModel.mat",
    "Exp_Pca.bin",
    "std_exp.txt",
    "BFM_front_idx.mat",
    "BFM_exp_idx.mat",
    "facemodel_info.mat",
)
BFM_CONVERTED_FILES: tuple[str, ...] = ("BFM_model_front.mat", "BFM09_model_info.mat")
UM_TO_DM = 1e-5  # Deep3DFaceRecon's "unify the scale to decimeter"
DM_TO_CM = 10.0


def orient_outward(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangles (T, 3) wound counter-clockwise seen from outside an open front-face mesh.

    The area-weighted normal sum ``Σ (v1 − v0) × (v2 − v0)`` of a front face is its projected area vector,
    which points towards the viewer (+z) when the winding is outward; if it points to −z every triangle
    is flipped.  ``vertices`` (V, 3) with +z towards the viewer.
    """
    v = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.int64)
    normal = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]]).sum(axis=0)
    return tri if normal[2] >= 0 else tri[:, ::-1].copy()


def check_face_size(mean_cm: np.ndarray, path: Path) -> None:
    """Raise ValueError unless the mean shape (V, 3) spans a face-sized 5..60 cm (catches unit mix-ups)."""
    extent = float(np.ptp(mean_cm, axis=0).max())
    if not 5.0 <= extent <= 60.0:
        raise ValueError(
            f"{path}: the mean shape spans {extent:.4g} cm, expected a face (5 to 60 cm): wrong units?"
        )


def bfm2009_files(directory: str | Path) -> list[Path]:
    """The files :func:`load_bfm2009` reads from ``directory`` (converted file if present, else the raw set).

    Raises FileNotFoundError naming the missing files when neither set is complete.
    """
    folder = Path(directory)
    for name in BFM_CONVERTED_FILES:
        if (folder / name).is_file():
            return [folder / name]
    missing = [name for name in BFM_RAW_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: missing BFM 2009 files {', '.join(missing)} (need {', '.join(BFM_RAW_FILES)}, "
            f"or {BFM_CONVERTED_FILES[0]})"
        )
    return [folder / name for name in BFM_RAW_FILES]


def bfm2009_checksum(directory: str | Path) -> str:
    """sha256 over the sha256 of each file :func:`load_bfm2009` reads, in order (identifies the model)."""
    digest = hashlib.sha256()
    for path in bfm2009_files(directory):
        digest.update(f"{path.name}:{file_checksum(str(path))}\n".encode())
    return digest.hexdigest()


def read_exp_pca(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read Guo et al.'s ``Exp_Pca.bin``: (mean (3n,), basis (D, 3n)) as float32, in µm.

    Layout (little-endian, as Deep3DFaceRecon's ``LoadExpBasis`` reads it): int32 D, then float32
    mean[3n], then float32 basis[D][3n] (one principal component after the other, vertex-major xyz).
    n (53,215 in the real file) follows from the file size ``4 + 12 n (1 + D)``.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an Exp_Pca.bin ({len(raw)} bytes)")
    dim = int(np.frombuffer(raw[:4], dtype="<i4")[0])
    floats = (len(raw) - 4) // 4
    if dim <= 0 or (len(raw) - 4) % 4 or floats % (3 * (1 + dim)):
        raise ValueError(
            f"{path}: {len(raw)} bytes do not fit the Exp_Pca.bin layout 4 + 12·n·(1 + D) with D = {dim}"
        )
    values = np.frombuffer(raw[4:], dtype="<f4")
    n3 = floats // (1 + dim)
    return values[:n3].copy(), values[n3:].reshape(dim, n3).copy()


def _mat(path: Path, *keys: str) -> list[np.ndarray]:
    """The arrays ``keys`` of a MATLAB file; ValueError naming the file and the missing key."""
    try:
        data = scipy.io.loadmat(str(path), variable_names=keys)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise ValueError(f"{path}: not a readable .mat file ({exc})") from exc
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    return [np.asarray(data[k]) for k in keys]


def _index(values: np.ndarray, size: int, path: Path, what: str) -> np.ndarray:
    """1-based MATLAB indices → 0-based int64, checked against ``size``."""
    idx = np.asarray(values).astype(np.int64).ravel() - 1
    if idx.size == 0 or idx.min() < 0 or idx.max() >= size:
        raise ValueError(f"{path}: {what} must be 1-based indices in 1..{size}")
    return idx


def _deep3d_from_raw(folder: Path, n_id: int, n_exp: int, n_alb: int) -> dict[str, np.ndarray]:
    """Deep3DFaceRecon's ``transferBFM09`` in float64: BFM_model_front.mat's arrays (dm, 0..255, 1-based)."""
    mm_path = folder / "01_MorphableModel.mat"
    shape_mu, shape_pc, shape_ev, tex_mu, tex_pc, tex_ev = _mat(
        mm_path, "shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV"
    )
    _, exp_pc = read_exp_pca(folder / "Exp_Pca.bin")
    exp_std = np.loadtxt(folder / "std_exp.txt", dtype=np.float64).ravel()
    n_bfm = shape_mu.size // 3
    n_expv = exp_pc.shape[1] // 3
    for what, have, need in (
        ("shapePC columns", shape_pc.shape[1], n_id), ("texPC columns", tex_pc.shape[1], n_alb),
        ("Exp_Pca.bin components", exp_pc.shape[0], n_exp), ("std_exp.txt values", exp_std.size, n_exp),
    ):
        if have < need:
            raise ValueError(f"{folder}: {what}: {have}, need at least {need}")
    if shape_pc.shape[0] != 3 * n_bfm or tex_mu.size != 3 * n_bfm or tex_pc.shape[0] != 3 * n_bfm:
        raise ValueError(f"{mm_path}: shapeMU, shapePC, texMU and texPC must all have 3·{n_bfm} rows")
    (front,) = _mat(folder / "BFM_front_idx.mat", "idx")
    (trim,) = _mat(folder / "BFM_exp_idx.mat", "trimIndex")
    front = _index(front, n_expv, folder / "BFM_front_idx.mat", "idx")
    trim = _index(trim, n_bfm, folder / "BFM_exp_idx.mat", "trimIndex")
    if trim.size != n_expv:
        raise ValueError(
            f"{folder}/BFM_exp_idx.mat: {trim.size} trimIndex entries, Exp_Pca.bin has {n_expv} vertices"
        )
    shape_idx = trim[front]
    rows = (3 * shape_idx[:, None] + np.arange(3)).ravel()  # xyz rows of the front vertices
    exp_rows = (3 * front[:, None] + np.arange(3)).ravel()
    tri, keypoints = _mat(folder / "facemodel_info.mat", "tri", "keypoints")
    return {
        "meanshape": shape_mu.ravel()[rows].astype(np.float64) * UM_TO_DM,
        "idBase": shape_pc[rows, :n_id] * shape_ev.ravel()[:n_id] * UM_TO_DM,
        "exBase": exp_pc[:n_exp, exp_rows].T.astype(np.float64) * exp_std[:n_exp] * UM_TO_DM,
        "meantex": tex_mu.ravel()[rows].astype(np.float64),
        "texBase": tex_pc[rows, :n_alb] * tex_ev.ravel()[:n_alb],
        "tri": tri,
        "keypoints": keypoints,
    }


def _basis(flat: np.ndarray, count: int, path: Path, what: str) -> np.ndarray:
    """(3V, K) vertex-major basis → (count, V, 3)."""
    if flat.ndim != 2 or flat.shape[0] % 3 or flat.shape[1] < count:
        raise ValueError(f"{path}: {what} must be (3V, ≥{count}), got {flat.shape}")
    return flat[:, :count].T.reshape(count, -1, 3)


def load_bfm2009(
    directory: str | Path,
    *,
    num_identity: int = 80,
    num_expression: int = 64,
    num_albedo: int = 80,
    recenter: bool = True,
) -> FaceModel:
    """Load the BFM 2009 front face from a folder (files listed in the module docstring).

    Shape ``S = mean + Σ β_k identity[k] + Σ ψ_e expression[e]`` in cm, with ``identity[k]`` =
    ``idBase[:, k] · 10`` reshaped to (V, 3) (dm → cm), likewise ``expression``; albedo
    ``meantex / 255 + Σ γ_k texBase[:, k] / 255``.

    Args:
        directory: the model folder.
        num_identity, num_expression, num_albedo: how many coefficients to keep (Deep3D: 80, 64, 80).
        recenter: subtract the centroid of the mean shape, as Deep3DFaceRecon does by default.
    """
    folder = Path(directory)
    files = bfm2009_files(folder)
    if len(files) == 1:
        keys = ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "keypoints")
        arrays = dict(zip(keys, _mat(files[0], *keys), strict=True))
        arrays = {k: v.astype(np.float64) if k not in ("tri", "keypoints") else v for k, v in arrays.items()}
    else:
        arrays = _deep3d_from_raw(folder, num_identity, num_expression, num_albedo)
    source = files[0]
    mean = arrays["meanshape"].reshape(-1, 3) * DM_TO_CM
    if recenter:
        mean = mean - mean.mean(axis=0, keepdims=True)
    check_face_size(mean, source)
    nv = mean.shape[0]
    identity = _basis(arrays["idBase"], num_identity, source, "idBase") * DM_TO_CM
    expression = _basis(arrays["exBase"], num_expression, source, "exBase") * DM_TO_CM
    albedo_mean = arrays["meantex"].reshape(-1, 3) / 255.0
    albedo = _basis(arrays["texBase"], num_albedo, source, "texBase") / 255.0
    tri = _index(arrays["tri"], nv, source, "tri").reshape(-1, 3)
    landmarks = _index(arrays["keypoints"], nv, source, "keypoints")
    return FaceModel(
        "bfm2009",
        mean,
        identity,
        expression,
        orient_outward(mean, tri),
        landmarks,
        albedo_mean=albedo_mean,
        albedo_basis=albedo,
        checksum=bfm2009_checksum(folder),
    )
