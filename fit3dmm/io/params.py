"""Fit parameters on disk: a versioned JSON document per face (and the same numbers as NPZ arrays).

The fields are listed once, in :data:`FIELDS`, which drives the validation of :func:`read_params_json` and
the table of :func:`schema_markdown`.  Non-finite numbers (a diverged fit) are written as ``null``.  Frames
and units are those of :mod:`fit3dmm.render.camera`: cm, camera looking down −z, crop and photo pixels with
pixel centres at integer coordinates.

Versioning: ``schema_version`` is "major.minor"; readers accept any minor version of their major version
(minor versions only add fields).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from fit3dmm import __version__
from fit3dmm.io.atomic import atomic_write
from fit3dmm.types.result import FitResult

SCHEMA_NAME = "fit3dmm.params"
SCHEMA_VERSION = "1.0"

FIELDS: tuple[tuple[str, str, str], ...] = (
    ("schema", "str", f'always "{SCHEMA_NAME}"'),
    ("schema_version", "str", f'"major.minor", this document: "{SCHEMA_VERSION}"'),
    ("fit3dmm_version", "str", "version of fit3dmm that wrote the file"),
    ("name", "str", "the face's identifier (photo file and face index), may be empty"),
    ("index", "int", "position of the face in the fitted batch"),
    ("status", "str", '"ok", or why the fit failed (e.g. "diverged")'),
    ("model.name", "str", 'face model ("ict", ...)'),
    ("model.checksum", "str", "sha256 of the model data file"),
    ("coefficients.identity", "list[float] (K)", "identity coefficients (unit-variance PCA modes)"),
    ("coefficients.expression", "list[float] (E)", "expression coefficients (ICT: weights in [0, 1])"),
    ("coefficients.albedo", "list[float] or null", "albedo coefficients, null when not fitted"),
    ("coefficients.lighting", "list[float] (27) or null", "SH lighting, null when not fitted"),
    ("blendshapes", "{name: float}", "the expression coefficients by name (ARKit names for ICT)"),
    ("pose.yaw", "float, degrees", "yaw > 0: face turned towards the image's left"),
    ("pose.pitch", "float, degrees", "pitch > 0: chin up"),
    ("pose.roll", "float, degrees", "roll > 0: clockwise in the image"),
    ("pose.rotation_axis_angle", "list[float] (3), radians", "model→camera rotation as an axis-angle vector"),
    ("pose.rotation_matrix", "3×3 list", "the same rotation R, rows first: X_cam = R · X + t"),
    ("pose.translation_cm", "list[float] (3), cm", "translation t (the face sits at z < 0)"),
    ("camera.focal", "float, crop px", "pinhole focal length in pixels of the working crop"),
    ("camera.principal", "list[float] (2), crop px", "principal point (x, y) in the crop"),
    ("camera.crop_size", "int, px", "side S of the square working crop"),
    ("crop.crop_to_photo", "3×3 list", "affine map from crop pixels (x, y, 1) to photo pixels"),
    ("crop.photo_size", "list[int] (2)", "photo width and height in pixels"),
    ("landmarks68.photo_px", "68×2 list, photo px", "fitted iBUG-68 landmarks projected into the photo"),
    ("landmarks68.camera_cm", "68×3 list, cm", "the same landmarks in camera space"),
    ("losses", "{name: float}", "final unweighted value of each loss term"),
    ("weights", "{name: float}", "weight of each loss term"),
    ("timings", "{stage: float}, s", "seconds per stage (for the whole batch)"),
    ("iterations", "int or null", "optimiser iterations run, null when unknown"),
    ("extra", "object, optional", "anything the caller added (command line, options)"),
)
_OPTIONAL = {"extra"}


class ParamsFormatError(ValueError):
    """A fit-parameters file is unreadable or does not follow the schema; the message names the file."""


def json_ready(value: Any) -> Any:
    """Tensors, arrays and numbers → JSON-ready Python values: float32 written with their shortest
    round-trip decimal (0.1, not 0.10000000149011612), non-finite numbers as None, containers recursed."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:
            flat = [None if not np.isfinite(v) else float(str(v)) for v in value.ravel()]
            return np.array(flat, dtype=object).reshape(value.shape).tolist()
        return json_ready(value.tolist())
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return json_ready(np.asarray(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def result_to_dict(result: FitResult, index: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document (fields in :data:`FIELDS`) of face ``index`` of a batched :class:`FitResult`."""
    batch = result.batch_size
    if not 0 <= index < batch:
        raise IndexError(f"face index {index} is outside the batch of {batch}")
    coeffs = result.coefficients
    for key in ("identity", "expression", "rotation", "translation"):
        if key not in coeffs:
            raise ValueError(f"FitResult.coefficients has no {key!r}")
    expression = coeffs["expression"][index]
    names = result.expression_names
    if names and len(names) != expression.shape[0]:
        raise ValueError(f"{len(names)} expression names for {expression.shape[0]} expression coefficients")
    obs = result.observation
    yaw, pitch, roll = json_ready(result.pose_deg[index])
    doc = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "fit3dmm_version": __version__,
        "name": obs.names[index] if index < len(obs.names) else "",
        "index": index,
        "status": result.status[index] if index < len(result.status) else "unknown",
        "model": {"name": str(result.model_info.get("name", "")),
                  "checksum": str(result.model_info.get("checksum", ""))},
        "coefficients": {
            "identity": json_ready(coeffs["identity"][index]),
            "expression": json_ready(expression),
            "albedo": json_ready(coeffs["albedo"][index]) if "albedo" in coeffs else None,
            "lighting": json_ready(coeffs["lighting"][index]) if "lighting" in coeffs else None,
        },
        "blendshapes": dict(zip(names, json_ready(expression), strict=True)) if names else {},
        "pose": {
            "yaw": yaw,
            "pitch": pitch,
            "roll": roll,
            "rotation_axis_angle": json_ready(coeffs["rotation"][index]),
            "rotation_matrix": json_ready(result.rotation[index]),
            "translation_cm": json_ready(coeffs["translation"][index]),
        },
        "camera": {
            "focal": json_ready(result.camera.focal[index]),
            "principal": json_ready(result.camera.principal[index]),
            "crop_size": obs.size,
        },
        "crop": {
            "crop_to_photo": json_ready(obs.crop_to_photo[index]),
            "photo_size": [round(v) for v in obs.photo_size[index].tolist()],
        },
        "landmarks68": {
            "photo_px": json_ready(result.landmarks68_photo[index]),
            "camera_cm": json_ready(result.landmarks68_cam[index]),
        },
        "losses": {name: json_ready(value[index]) for name, value in result.losses.items()},
        "weights": json_ready(dict(result.weights)),
        "timings": json_ready(dict(result.timings)),
        "iterations": result.iterations(index),
    }
    if extra is not None:
        doc["extra"] = json_ready(extra)
    return doc


def json_text(value: Any, indent: str = "") -> str:
    """JSON with objects and lists of lists indented, but each list of scalars on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {json_text(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
        return "[\n" + ",\n".join(inner + json_text(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def write_params_json(path: str | Path, d: dict[str, Any]) -> None:
    """Atomically write a :func:`result_to_dict` document as UTF-8 JSON (indented, number lists inline)."""
    text = json_text(json_ready(d))
    with atomic_write(path, "w") as handle:
        handle.write(text + "\n")


def _lookup(doc: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def load_versioned_json(path: Path, schema: str, version: str, what: str, error: type[ValueError],
                        prefix: str | None = None) -> dict[str, Any]:
    """A JSON document whose ``schema`` is ``schema`` and whose major ``schema_version`` is ``version``'s.

    Raises:
        ``error``: one line starting with ``prefix`` (default ``"<what> <path>"``): no such file, not JSON,
            unreadable, another schema, or an unsupported major version.
    """
    prefix = prefix or f"{what} {path}"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{prefix}: no such file") from None
    except json.JSONDecodeError as exc:
        raise error(f"{prefix}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{prefix}: cannot be read ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise error(f'{prefix}: not a fit3dmm {what} (no "schema": "{schema}")')
    found = str(doc.get("schema_version", ""))
    if found.split(".")[0] != version.split(".")[0]:
        raise error(f"{prefix}: schema version {found!r} is not supported "
                    f"(this fit3dmm reads {version.split('.')[0]}.x)")
    return doc


def read_params_json(path: str | Path) -> dict[str, Any]:
    """Read and validate a fit-parameters JSON file.

    Raises:
        ParamsFormatError: the file is missing or not JSON, is not a fit3dmm parameters document, has an
            unsupported major schema version, or lacks required fields (all are named).
    """
    path = Path(path)
    prefix = f"fit parameters {path}"
    doc = load_versioned_json(path, SCHEMA_NAME, SCHEMA_VERSION, "parameters file", ParamsFormatError,
                              prefix=prefix)
    missing = [key for key, _, _ in FIELDS if key not in _OPTIONAL and not _lookup(doc, key)[0]]
    if missing:
        raise ParamsFormatError(f"{prefix}: missing fields {', '.join(missing)}")
    return doc


def write_params_npz(path: str | Path, result: FitResult, index: int) -> None:
    """Atomically write face ``index`` as compressed NPZ arrays with the JSON document's numbers.

    Keys: the JSON fields flattened with ``_`` (``coefficients_identity``, ``pose_rotation_matrix``,
    ``landmarks68_photo_px``...; ``pose_deg`` holds yaw, pitch, roll), ``blendshape_names``, ``loss_names`` /
    ``loss_values``, ``weight_names`` / ``weight_values``, ``history`` (total loss per iteration, when
    known) and the strings ``schema``, ``schema_version``, ``fit3dmm_version``, ``name``, ``status``,
    ``model_name``, ``model_checksum``.  Albedo and lighting are present only when fitted.  Non-finite
    values stay NaN/inf.
    """
    doc = result_to_dict(result, index)
    coeffs = result.coefficients

    def array(value: Tensor) -> np.ndarray:
        return value.detach().cpu().numpy()

    arrays: dict[str, np.ndarray] = {
        "coefficients_identity": array(coeffs["identity"][index]),
        "coefficients_expression": array(coeffs["expression"][index]),
        "blendshape_names": np.array(result.expression_names, dtype=str),
        "pose_deg": array(result.pose_deg[index]),
        "pose_rotation_axis_angle": array(coeffs["rotation"][index]),
        "pose_rotation_matrix": array(result.rotation[index]),
        "pose_translation_cm": array(coeffs["translation"][index]),
        "camera_focal": array(result.camera.focal[index]),
        "camera_principal": array(result.camera.principal[index]),
        "camera_crop_size": np.array(doc["camera"]["crop_size"]),
        "crop_crop_to_photo": array(result.observation.crop_to_photo[index]),
        "crop_photo_size": np.array(doc["crop"]["photo_size"]),
        "landmarks68_photo_px": array(result.landmarks68_photo[index]),
        "landmarks68_camera_cm": array(result.landmarks68_cam[index]),
        "loss_names": np.array(list(result.losses), dtype=str),
        "loss_values": np.array([float(v[index]) for v in result.losses.values()], dtype=np.float64),
        "weight_names": np.array(list(result.weights), dtype=str),
        "weight_values": np.array(list(result.weights.values()), dtype=np.float64),
    }
    for key in ("albedo", "lighting"):
        if key in coeffs:
            arrays[f"coefficients_{key}"] = array(coeffs[key][index])
    if result.history is not None:
        arrays["history"] = array(result.history[:, index])
    for key in ("schema", "schema_version", "fit3dmm_version", "name", "status"):
        arrays[key] = np.array(doc[key])
    arrays["model_name"] = np.array(doc["model"]["name"])
    arrays["model_checksum"] = np.array(doc["model"]["checksum"])
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **arrays)


def schema_markdown() -> str:
    """A Markdown table of the JSON fields (for the README)."""
    rows = ["| field | type | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{key}` | {kind} | {meaning} |" for key, kind, meaning in FIELDS]
    return "\n".join(rows) + "\n"
