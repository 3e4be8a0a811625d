"""Where face models live: the search path, install, and the per-model asset cache.

A model is named by kind (``"ict"``, ``"bfm2009"``, ``"3ddfa_v3"``) or given by path.  Model folders are
recognised by their content (:func:`detect_kind`).  A name is resolved by looking, in order, in

1. each folder of the environment variable ``FIT3DMM_MODELS`` (``os.pathsep``-separated),
2. the user model folder ``<cache>/models`` (where :func:`install_model` writes),
3. the models shipped in the package (:func:`packaged_models_dir`: the compact ICT-FaceKit Light with its
   assets, so that a fresh install fits without any download or data folder),

each folder itself and its direct sub-folders (so ``FIT3DMM_MODELS=/work/shared/face-models`` finds
``ict-facekit-light/``).  ``<cache>`` (:func:`cache_root`) is ``$FIT3DMM_CACHE`` if set, else
``$XDG_CACHE_HOME/fit3dmm``, else ``~/.cache/fit3dmm``; it is the root of every fit3dmm cache.

Assets (part labels, landmark correspondences and eye openings built by the paper's Algorithm 1) are cached per
model data under ``<cache>/assets/<name>-<checksum[:12]>/annotations.npz`` and attached by
:func:`load_model`; a model folder may also carry its own ``annotations.npz`` (the shipped model does), used
when the cache has none and only if it records the model's checksum.  Everything is read from the environment
at call time; nothing is kept between calls.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from fit3dmm.defaults import DEFAULT_MODEL, MODEL_KINDS
from fit3dmm.io.atomic import atomic_write
from fit3dmm.models.assets import Correspondence, FaceModelAssets, SurfaceSamples, check_part_labels
from fit3dmm.models.bfm import (
    BFM_CONVERTED_FILES,
    BFM_RAW_FILES,
    bfm2009_checksum,
    bfm2009_files,
    load_bfm2009,
)
from fit3dmm.models.compact import COMPACT_NPZ, write_compact_ict
from fit3dmm.models.ddfa_v3 import DDFA_V3_FILE, load_ddfa_v3
from fit3dmm.models.face_model import FaceModel, file_checksum
from fit3dmm.models.ict import ICT_FILES, ICT_NPZ, ict_file, load_ict
from fit3dmm.models.ict_obj import ICT_INDEX_JSON, check_ict_npz, convert_ict_checkout, find_facex_folder

ASSETS_FILE = "annotations.npz"
_LICENSE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md")
_MODEL_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "ict": ICT_FILES,
    "bfm2009": BFM_RAW_FILES + BFM_CONVERTED_FILES,
    "3ddfa_v3": (DDFA_V3_FILE,),
}


class ModelNotFoundError(FileNotFoundError):
    """A face model could not be found; the message says where we looked and how to install it."""


class ModelLocation(NamedTuple):
    """A model folder and its kind (unpacks as ``kind, path``)."""

    kind: str
    path: Path


@dataclass
class ModelEntry:
    """One installed or reachable model, as listed by :func:`list_models`.

    ``default``: the entry that the name ``kind`` resolves to; ``size``: bytes of the model files;
    ``annotated``: part labels available (in the file or the asset cache); ``landmarks``: a cached
    landmark correspondence; ``error``: why the folder could not be read ("" when it could).
    """

    name: str
    kind: str
    path: Path
    default: bool = False
    size: int = 0
    checksum: str = ""
    annotated: bool = False
    landmarks: bool = False
    error: str = ""


# ------------------------------------------------------------------------------------------ locations
def cache_root() -> Path:
    """Root of all fit3dmm caches.

    ``$FIT3DMM_CACHE`` if set, else ``$XDG_CACHE_HOME/fit3dmm``, else ``~/.cache/fit3dmm``.
    """
    if os.environ.get("FIT3DMM_CACHE"):
        return Path(os.environ["FIT3DMM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "fit3dmm"


def models_dir() -> Path:
    """The user model folder ``<cache>/models`` (install target; may not exist yet)."""
    return cache_root() / "models"


def packaged_models_dir() -> Path:
    """The models shipped inside the package (``fit3dmm/data``): the compact ICT-FaceKit Light."""
    return Path(__file__).resolve().parents[1] / "data"


def search_path() -> list[Path]:
    """Folders searched for a model name, in order: ``$FIT3DMM_MODELS`` entries, :func:`models_dir`, then
    :func:`packaged_models_dir`."""
    env = os.environ.get("FIT3DMM_MODELS", "")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p] + [models_dir(), packaged_models_dir()]


def detect_kind(folder: str | Path) -> str | None:
    """The kind of model stored in ``folder`` (by content), or None.

    ``ict_facekit_light.npz`` or its compact copy → ``"ict"``; ``01_MorphableModel.mat`` + ``Exp_Pca.bin``, or a
    converted ``BFM_model_front.mat`` / ``BFM09_model_info.mat`` → ``"bfm2009"``; ``face_model.npy`` → ``"3ddfa_v3"``.
    """
    folder = Path(folder)
    if ict_file(folder) is not None:
        return "ict"
    if all((folder / n).is_file() for n in ("01_MorphableModel.mat", "Exp_Pca.bin")) or any(
        (folder / n).is_file() for n in BFM_CONVERTED_FILES
    ):
        return "bfm2009"
    if (folder / DDFA_V3_FILE).is_file():
        return "3ddfa_v3"
    return None


def _scan(root: Path) -> list[ModelLocation]:
    """Models in ``root`` itself and in its direct sub-folders (sorted by name)."""
    if not root.is_dir():
        return []
    found = []
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        kind = detect_kind(folder)
        if kind is not None:
            found.append(ModelLocation(kind, folder))
    return found


def _install_hint(kind: str) -> str:
    examples = {"ict": "/path/to/ict-facekit-light", "bfm2009": "/path/to/BFM", "3ddfa_v3": "/path/to/assets"}
    return f"fit3dmm models install {kind} {examples[kind]}"


def normalise_kind(name: str) -> str | None:
    """``name`` as one of :data:`MODEL_KINDS` (case and '-' vs '_' ignored), or None."""
    key = name.strip().lower().replace("-", "_")
    return key if key in MODEL_KINDS else None


def find_model(name_or_path: str | Path | None = DEFAULT_MODEL) -> ModelLocation:
    """Resolve a model name or path to ``(kind, folder)``.

    Args:
        name_or_path: a kind (:data:`MODEL_KINDS`; a string without a path separator), searched along
            :func:`search_path`; or a path: a model folder, a folder whose direct sub-folders hold exactly
            one model, or a model file (``ict_facekit_light.npz``, ``face_model.npy``, a BFM ``.mat``).
            None means ``"ict"``.  Write ``./ict`` for a local folder named like a kind.
    Raises:
        ModelNotFoundError: nothing found (the message names the places searched and the install command).
        ValueError: a path that holds several models, or a file that is no model.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    is_name = isinstance(name_or_path, str) and "/" not in name_or_path and os.sep not in name_or_path
    kind = normalise_kind(name_or_path) if is_name else None
    if kind is None:
        return _locate_path(Path(name_or_path).expanduser())
    roots = search_path()
    for root in roots:
        for loc in _scan(root):
            if loc.kind == kind:
                return loc
    where = ", ".join(str(r) for r in roots)
    raise ModelNotFoundError(
        f"model '{kind}' not found in {where} (folders of $FIT3DMM_MODELS, the user model folder, "
        f"the package's own); "
        f"install it with: {_install_hint(kind)}"
    )


def _locate_path(path: Path) -> ModelLocation:
    """:func:`find_model` for an explicit path (file, model folder, or folder of model folders)."""
    if path.is_file():
        for kind, names in _MODEL_FILE_NAMES.items():
            if path.name in names:
                return ModelLocation(kind, path.parent)
        raise ValueError(f"{path}: not a face model file ({ICT_NPZ}, {DDFA_V3_FILE} or a BFM 2009 .mat)")
    if not path.is_dir():
        raise ModelNotFoundError(
            f"{path}: neither an existing path nor a model name ({', '.join(MODEL_KINDS)})"
        )
    kind = detect_kind(path)
    if kind is not None:
        return ModelLocation(kind, path)
    found = _scan(path)
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(f"{loc.path.name} ({loc.kind})" for loc in found)
        raise ValueError(f"{path}: holds several models ({names}); pass one of their folders")
    raise ModelNotFoundError(f"{path}: no face model in this folder or its sub-folders")


def model_files(kind: str, folder: str | Path) -> list[Path]:
    """The data files the loader of ``kind`` reads from ``folder``."""
    folder = Path(folder)
    if kind == "ict":
        return [ict_file(folder) or folder / ICT_NPZ]
    if kind == "3ddfa_v3":
        return [folder / DDFA_V3_FILE]
    if kind == "bfm2009":
        return bfm2009_files(folder)
    raise ValueError(f"unknown model kind '{kind}', expected one of {', '.join(MODEL_KINDS)}")


def model_checksum(kind: str, folder: str | Path) -> str:
    """The checksum the loader of ``kind`` gives a model in ``folder`` (keys its asset cache)."""
    if kind == "bfm2009":
        return bfm2009_checksum(folder)
    return file_checksum(str(model_files(kind, folder)[0]))


# ------------------------------------------------------------------------------------------ loading
def _load_kind(kind: str, folder: Path) -> FaceModel:
    if kind == "ict":
        return load_ict(folder)
    if kind == "bfm2009":
        return load_bfm2009(folder)
    if kind == "3ddfa_v3":
        return load_ddfa_v3(folder)
    raise ValueError(f"unknown model kind '{kind}', expected one of {', '.join(MODEL_KINDS)}")


def load_model(
    name_or_path: str | Path | None = DEFAULT_MODEL, device: torch.device | str | None = None
) -> FaceModel:
    """Find (:func:`find_model`), load, and attach cached assets (:func:`load_assets`).

    Assets the loader itself provides (3DDFA-V3's own part annotation) are kept; the cache fills the
    fields still missing.  The model is moved to ``device`` when given.
    """
    kind, folder = find_model(name_or_path)
    model = _load_kind(kind, folder)
    cached = load_assets(model, folder)
    if cached is not None:
        own = model.assets
        labels = own.part_labels if own.part_labels is not None else cached.part_labels
        landmarks = own.landmarks if own.landmarks is not None else cached.landmarks
        model.assets = FaceModelAssets(labels, landmarks, own.eye_openings or cached.eye_openings,
                                       source={**cached.source, **own.source})
    return model if device is None else model.to(device)


# ------------------------------------------------------------------------------------------ assets
def _assets_dir(name: str, checksum: str) -> Path:
    if not checksum:
        raise ValueError(f"model '{name}' has no checksum; its assets cannot be cached")
    return cache_root() / "assets" / f"{name}-{checksum[:12]}"


def assets_dir(model: FaceModel) -> Path:
    """``<cache>/assets/<model.name>-<model.checksum[:12]>/`` (may not exist yet)."""
    return _assets_dir(model.name, model.checksum)


def _read_assets(path: Path, num_vertices: int) -> FaceModelAssets:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        source = json.loads(str(arrays.pop("source"))) if "source" in arrays else {}
        if not isinstance(source, dict):
            raise ValueError("'source' must be a JSON object")
        labels = arrays.get("part_labels")
        labels = None if labels is None else check_part_labels(labels, num_vertices)
        landmarks = Correspondence.from_arrays(arrays, num_vertices) if "landmark_vertices" in arrays else None
        openings = {}
        for name in ("left_eye", "right_eye"):
            if f"{name}_triangles" in arrays:
                tri = np.asarray(arrays[f"{name}_triangles"], np.int64)
                if tri.size and (tri.min() < 0 or tri.max() >= num_vertices):
                    raise ValueError(f"{name} opening must index the model's {num_vertices} vertices")
                openings[name] = SurfaceSamples(tri, np.asarray(arrays[f"{name}_bary"], np.float32))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: unreadable or not made for this model ({exc})") from exc
    return FaceModelAssets(labels, landmarks, openings, source={str(k): str(v) for k, v in source.items()})


def _asset_file(name: str, checksum: str, folder: Path | None) -> Path | None:
    """The assets file that applies to a model: its cache entry, else ``folder/annotations.npz`` when that
    records the same model checksum; None when neither."""
    cached = _assets_dir(name, checksum) / ASSETS_FILE
    if cached.is_file():
        return cached
    own = None if folder is None else Path(folder) / ASSETS_FILE
    if own is None or not own.is_file():
        return None
    try:
        with np.load(own, allow_pickle=False) as data:
            source = json.loads(str(data["source"])) if "source" in data.files else {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{own}: unreadable asset file ({exc})") from exc
    return own if isinstance(source, dict) and source.get("model_checksum") == checksum else None


def load_assets(model: FaceModel, folder: str | Path | None = None) -> FaceModelAssets | None:
    """The assets of ``model``: cached ones, else those shipped in its model ``folder`` (only when they record
    ``model.checksum``); None when there are none; ValueError if the file does not fit the model."""
    path = _asset_file(model.name, model.checksum, None if folder is None else Path(folder))
    return None if path is None else _read_assets(path, model.num_vertices)


def save_assets(model: FaceModel, assets: FaceModelAssets, folder: str | Path | None = None) -> Path:
    """Validate and write ``assets`` for ``model`` atomically, into the cache or, given ``folder``, into that
    model folder (how the shipped model carries its own); returns the file written.

    Keys: ``part_labels`` (V,) int64; ``landmark_vertices``, ``landmark_weights``, ``landmark_sigma``,
    ``landmark_sigma_hidden``, ``landmark_triangle`` (:class:`~fit3dmm.models.assets.Correspondence`);
    ``<eye>_triangles``, ``<eye>_bary`` per eye opening; each only when present; and ``source``, a JSON object
    as a string, which records ``model_checksum``.
    """
    source = {**assets.source, "model_checksum": model.checksum}
    arrays: dict[str, np.ndarray] = {"source": np.asarray(json.dumps(source, sort_keys=True))}
    if assets.part_labels is not None:
        arrays["part_labels"] = check_part_labels(assets.part_labels, model.num_vertices)
    if assets.landmarks is not None:
        arrays.update(Correspondence.from_arrays(assets.landmarks.arrays(), model.num_vertices).arrays())
    for name, samples in assets.eye_openings.items():
        arrays[f"{name}_triangles"] = samples.triangles
        arrays[f"{name}_bary"] = samples.bary
    path = (assets_dir(model) if folder is None else Path(folder)) / ASSETS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as out:
        np.savez(out, **arrays)
    return path


# ------------------------------------------------------------------------------------------ listing
def list_models() -> list[ModelEntry]:
    """Every model reachable through :func:`search_path`, in search order (checksums are computed).

    A folder recognised by its content but incomplete or unreadable is listed with ``error`` set.
    """
    entries: list[ModelEntry] = []
    seen: set[Path] = set()
    for root in search_path():
        for kind, folder in _scan(root):
            if folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            entry = ModelEntry(name=folder.name, kind=kind, path=folder,
                               default=all(e.kind != kind for e in entries))
            try:
                entry.size = sum(f.stat().st_size for f in model_files(kind, folder))
                entry.checksum = model_checksum(kind, folder)
                assets = _asset_file(kind, entry.checksum, folder)
                keys = set() if assets is None else _npz_keys(assets)
            except (OSError, ValueError) as exc:
                entry.error = str(exc)
            else:
                entry.annotated = kind == "3ddfa_v3" or "part_labels" in keys
                entry.landmarks = "landmark_vertices" in keys
            entries.append(entry)
    return entries


def _npz_keys(path: Path) -> set[str]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return set(data.files)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable asset file ({exc})") from exc


# ------------------------------------------------------------------------------------------ install
def _license(*folders: Path) -> Path | None:
    """The first licence file found in ``folders``, in order."""
    for base in folders:
        for name in _LICENSE_NAMES:
            if (base / name).is_file():
                return base / name
    return None


def _stage_ict(source: Path, stage: Path) -> None:
    """Copy a pre-converted ICT folder, or convert an original checkout, into ``stage``."""
    licence = _license(source, source.parent)  # the checkout root when given its FaceXModel folder
    if licence is None:
        raise FileNotFoundError(
            f"{source}: no LICENSE file; the ICT-FaceKit MIT licence notice must travel with the model"
        )
    if (source / ICT_NPZ).is_file():
        for name in (ICT_NPZ, ICT_INDEX_JSON, "SOURCE.md"):
            if (source / name).is_file():
                shutil.copy2(source / name, stage / name)
    else:
        convert_ict_checkout(find_facex_folder(source), stage)
    shutil.copy2(licence, stage / "LICENSE")


def pack_ict(source: str | Path, dest: str | Path) -> Path:
    """Write the compact ICT-FaceKit Light (:mod:`fit3dmm.models.compact`) of the float32 model folder
    ``source`` into ``dest``, with its licence notice and SOURCE.md: the model shipped in the package.

    Returns ``dest``.  The Algorithm 1 assets are added by ``fit3dmm models pack`` (they need the annotator).
    """
    source, dest = Path(source).expanduser(), Path(dest).expanduser()
    if source.is_file():
        source = source.parent
    if not (source / ICT_NPZ).is_file():
        raise FileNotFoundError(f"{source / ICT_NPZ}: no float32 ICT-FaceKit Light npz to pack")
    licence = _license(source)
    if licence is None:
        raise FileNotFoundError(f"{source}: no LICENSE file; the MIT licence notice must travel with the model")
    check_ict_npz(source / ICT_NPZ)
    write_compact_ict(source / ICT_NPZ, dest / COMPACT_NPZ)
    shutil.copyfile(licence, dest / "LICENSE")
    if (source / "SOURCE.md").is_file():
        shutil.copyfile(source / "SOURCE.md", dest / "SOURCE.md")
    return dest


def _stage_copy(kind: str, source: Path, stage: Path) -> None:
    """Copy the files of a BFM 2009 or 3DDFA-V3 model folder (and its licence, if any) into ``stage``."""
    for path in model_files(kind, source):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing")
        shutil.copy2(path, stage / path.name)
    licence = _license(source)
    if licence is not None:
        shutil.copy2(licence, stage / licence.name)


def _same_install(kind: str, source: Path, dest: Path) -> bool:
    """Whether ``dest`` already holds a model of ``kind`` with the same data as the folder ``source``."""
    if detect_kind(source) != kind or detect_kind(dest) != kind:
        return False
    try:
        return model_checksum(kind, source) == model_checksum(kind, dest)
    except (OSError, ValueError):
        return False


def install_model(
    kind: str, source: str | Path, dest_root: str | Path | None = None, *, overwrite: bool = False
) -> Path:
    """Install a model into ``dest_root/<kind>/`` (default :func:`models_dir`) and return that folder.

    ``"ict"`` accepts the pre-converted npz folder or an original ICT-FaceKit checkout (converted by
    :func:`fit3dmm.models.ict_obj.convert_ict_checkout`); the MIT ``LICENSE`` is copied along and required.
    ``"bfm2009"`` and ``"3ddfa_v3"`` copy the files their loader reads.  The model is staged in a temporary
    folder next to the destination, checked (the ICT npz layout; BFM and 3DDFA-V3 are loaded once), then
    renamed into place, so a failure leaves nothing behind; the source is never written.

    Raises:
        ValueError: unknown kind, destination inside the source, or files the loader rejects.
        FileExistsError: the destination holds a different model and ``overwrite`` is False (the same
            model again is a no-op).
        FileNotFoundError: the source or one of its required files is missing.
    """
    key = normalise_kind(kind)
    if key is None:
        raise ValueError(f"unknown model kind '{kind}', expected one of {', '.join(MODEL_KINDS)}")
    source = Path(source).expanduser()
    if source.is_file():
        source = source.parent
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder")
    root = Path(dest_root).expanduser() if dest_root is not None else models_dir()
    dest = root / key
    if dest.resolve().is_relative_to(source.resolve()) or source.resolve().is_relative_to(dest.resolve()):
        raise ValueError(f"{dest}: the destination must lie outside the source folder {source}")
    if dest.exists() and not overwrite and _same_install(key, source, dest):
        return dest  # installing the same files again is a no-op
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest}: already installed (use --force / overwrite=True to replace it)")
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-install-"))
    try:
        if key == "ict":
            _stage_ict(source, stage)
        else:
            _stage_copy(key, source, stage)
        if key == "ict":  # layout check: load_ict itself needs the full-size mesh (face region 0..9408)
            check_ict_npz(stage / ICT_NPZ)
        else:
            _load_kind(key, stage)
        backup = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-old-")) if dest.exists() else None
        if backup is not None:
            dest.rename(backup / key)
        try:
            stage.rename(dest)
        except OSError:
            if backup is not None:  # put the previous install back
                (backup / key).rename(dest)
            raise
        finally:
            if backup is not None:
                shutil.rmtree(backup, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return dest
