"""Track outputs: blendshape CSV, Live Link Face CSV, identity and track JSON, curves PNG, overlay video.

Every file is written atomically (:mod:`fit3dmm.io.atomic`): it appears complete or not at all.

**Blendshape CSV** (:func:`write_blendshapes_csv`): ``frame,time,status,<expression names>,yaw,pitch,roll,
tx,ty,tz,landmark_error``, one row per frame, 6 decimals, gaps as empty cells; yaw/pitch/roll in degrees (README,
Conventions), t in cm (camera space), landmark error in photo pixels.

**Live Link Face CSV** (:func:`write_live_link_csv`): the table Epic's Live Link Face iOS app records for each take
and Unreal's LiveLinkFaceImporter plugin, Blender/Maya/MotionBuilder scripts read.  Layout, from the sources
below: header ``Timecode,BlendShapeCount`` then the 52 ARKit blendshapes in UpperCamelCase and 9 rotations
(:data:`LIVE_LINK_COLUMNS`); one row per frame; ``BlendShapeCount`` is always 61 (52 + 9).

- Column order: the header row of app recordings as quoted by open-source importers and writers (e.g. the
  Blender add-ons built on JimWest's PyLiveLinkFace, a writer's test "byte-for-byte from a real LiveLinkFace
  capture").  It follows Unreal's ``EARFaceBlendShape`` enum (``ARTrackable.h``) except that recordings list
  JawRight before JawLeft and MouthRight before MouthLeft; importers match columns by name.
- ``Timecode`` is ``HH:MM:SS:FF.fff`` where ``FF.fff`` counts frames, with a fractional part, at the app's
  rate of 30 or 60 fps: Unreal's ``LiveLinkFaceImporterFactory.cpp`` parses ``FF.fff`` as a float number of
  frames and infers 60 fps when any frame number exceeds 30, else 30.  We write each frame's time at 30 fps
  when the input's fps is ≤ 30 and at 60 fps otherwise (sub-frame times in the fraction), so the importer
  infers the rate we used.  The first timecode is the first frame's time, not a time of day.
- Blendshapes are weights in [0, 1].  HeadYaw/HeadPitch/HeadRoll and the eye angles are **normalised
  angles, degrees / 180** (so in [−1, 1]): Unreal's ``AppleARKitFaceSupport`` (``ToBlendShapeMap``), the
  code that turns ARKit's face anchor into these Live Link curves, divides the FRotator angles by 180.
  Signs follow Unreal's FRotator applied to the subject's head: yaw > 0 the subject turns to their own
  right, pitch > 0 chin up, roll > 0 head tilted towards the subject's right shoulder, i.e.
  ``HeadYaw = yaw / 180``, ``HeadPitch = pitch / 180``, ``HeadRoll = −roll / 180`` with our pose (README,
  Conventions).

Uncertain: the signs (the same Unreal code negates yaw and roll, and swaps the Left and Right blendshapes,
when the face is not mirrored, and no recording with a known head motion or wink was available to check which
the app writes); the header spelling (Epic's importer names it ``BlendShapeCount`` and compares
case-insensitively; one writer's test quotes ``BlendshapeCount`` from a real recording); the units of
recordings made by later app versions.  fit3dmm does not estimate eye rotations: the six eye angles are 0
(gaze is in the eyeLook* blendshapes).

ICT's 53 expressions map onto ARKit's 52 by name (ICT names them after ARKit: ``eyeBlink_L`` →
``EyeBlinkLeft``).  ICT splits two shapes ARKit has once, ``browInnerUp_L/_R`` and ``cheekPuff_L/_R``: the CSV
gets the mean of each pair; ICT has no ``tongueOut``: written as 0.  Gap frames (no face) repeat the last
fitted frame (the first fitted frame before it; all zeros when nothing was fitted), so every input frame has
a row at its time: importers that key one frame per row stay in sync and none has to handle empty cells.

**Track JSON** (:func:`write_track_json`, :func:`read_track_json`): the versioned document described by
:data:`TRACK_FIELDS` (:func:`track_schema_markdown`); numbers are finite, gaps are ``null``.  **Identity JSON**
(:func:`write_identity_json`, :func:`read_identity_json`): the identity alone, to reuse it (resume, another
video of the same person).  Versioning as in :mod:`fit3dmm.io.params`: readers accept any minor version of
their major version.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from fit3dmm import __version__
from fit3dmm.io.atomic import atomic_files, atomic_save, atomic_write
from fit3dmm.io.params import json_ready, json_text, load_versioned_json
from fit3dmm.io.tables import write_csv
from fit3dmm.types.track import TRACK_STATUSES, TrackFrame, TrackIdentity

TRACK_SCHEMA = "fit3dmm.track"
IDENTITY_SCHEMA = "fit3dmm.identity"
SCHEMA_VERSION = "1.0"

POSE_COLUMNS = ("yaw", "pitch", "roll", "tx", "ty", "tz")

LIVE_LINK_BLENDSHAPES = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft",
    "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
"""ARKit's 52 blendshapes as Live Link Face names them, in the column order of its recordings."""
LIVE_LINK_ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                       "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
LIVE_LINK_COLUMNS = ("Timecode", "BlendShapeCount", *LIVE_LINK_BLENDSHAPES, *LIVE_LINK_ROTATIONS)
LIVE_LINK_COUNT = len(LIVE_LINK_BLENDSHAPES) + len(LIVE_LINK_ROTATIONS)
"""The BlendShapeCount column: 61."""

TRACK_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("schema", "str", f'always "{TRACK_SCHEMA}"'),
    ("schema_version", "str", f'"major.minor", this document: "{SCHEMA_VERSION}"'),
    ("fit3dmm_version", "str", "version of fit3dmm that wrote the file"),
    ("input.path", "str", "the video file, folder or pattern tracked"),
    ("input.fps", "float", "frames per second (time = frame / fps)"),
    ("input.size", "list[int] (2)", "frame width and height in pixels"),
    ("input.start", "int", "first input frame selected"),
    ("input.end", "int or null", "input frame the selection stops before (null: the last frame)"),
    ("input.step", "int", "every step-th frame was tracked"),
    ("model.name", "str", 'face model ("ict", ...)'),
    ("model.checksum", "str", "sha256 of the model data file"),
    ("expression_names", "list[str] (E)", "names of the expression coefficients (ARKit names for ICT)"),
    ("identity", "list[float] (K)", "identity coefficients shared by every frame"),
    ("keyframes", "list[int]", "input frames the identity was fitted on"),
    ("camera.focal", "float, px", "pinhole focal length in frame pixels, fixed for the track"),
    ("settings", "object", "the options of the run (command line, schedule, ...)"),
    ("frames", "list", "one entry per tracked frame, in input order"),
    ("frames[].frame", "int", "input frame index"),
    ("frames[].time", "float, s", "seconds from the start of the input"),
    ("frames[].status", "str", '"ok", "no_face" (a gap) or "filled" (interpolated across a gap)'),
    ("frames[].expression", "list[float] (E) or null", "expression weights, null in a gap"),
    ("frames[].pose.yaw", "float, degrees", "yaw > 0: face turned towards the image's left (pose null in a gap)"),
    ("frames[].pose.pitch", "float, degrees", "pitch > 0: chin up"),
    ("frames[].pose.roll", "float, degrees", "roll > 0: clockwise in the image"),
    ("frames[].pose.rotation_axis_angle", "list[float] (3), radians", "model→camera rotation, X_cam = R X + t"),
    ("frames[].pose.translation_cm", "list[float] (3), cm", "translation t (the face sits at z < 0)"),
    ("frames[].landmark_error", "float, px, or null", "mean distance of fitted to detected 68 landmarks"),
)
"""The track JSON fields, which drive :func:`read_track_json`'s checks and :func:`track_schema_markdown`."""
_POSE_KEYS = ("yaw", "pitch", "roll", "rotation_axis_angle", "translation_cm")


class TrackFormatError(ValueError):
    """A track or identity JSON file is unreadable or does not follow its schema; the message names the file."""


def _check_frames(path: str | Path, frames: Sequence[TrackFrame], num_expression: int) -> None:
    """Shapes, statuses and input order of the frames to write (ValueError naming ``path``)."""
    previous = -1
    for item in frames:
        shapes = {"expression": (item.expression, (num_expression,)), "rotation": (item.rotation, (3,)),
                  "translation": (item.translation, (3,)), "pose_deg": (item.pose_deg, (3,))}
        for label, (value, shape) in shapes.items():
            if np.shape(value) != shape:
                raise ValueError(f"cannot write {path}: frame {item.frame} {label} has shape {np.shape(value)}, "
                                 f"expected {shape}")
        if item.status not in TRACK_STATUSES:
            raise ValueError(f"cannot write {path}: frame {item.frame} has status {item.status!r}, "
                             f"expected one of {', '.join(TRACK_STATUSES)}")
        if item.frame <= previous:
            raise ValueError(f"cannot write {path}: frame {item.frame} follows frame {previous}; "
                             "frames must be in increasing input order")
        previous = item.frame


def _cell(value: float) -> str:
    """A number with 6 decimals, or an empty cell when it is not finite."""
    return f"{value:.6f}" if math.isfinite(value) else ""


def write_blendshapes_csv(path: str | Path, frames: Sequence[TrackFrame], names: Sequence[str]) -> None:
    """Atomically write the per-frame table (module docstring): weights, pose and landmark error, gaps empty."""
    names = list(names)
    columns = ["frame", "time", "status", *names, *POSE_COLUMNS, "landmark_error"]
    if len(set(columns)) != len(columns):
        raise ValueError(f"cannot write {path}: expression names repeat or collide with the columns "
                         f"frame, time, status, {', '.join(POSE_COLUMNS)}, landmark_error")
    _check_frames(path, frames, len(names))
    rows = []
    for item in frames:
        values = [*item.expression.tolist(), *item.pose_deg.tolist(), *item.translation.tolist(),
                  float(item.landmark_error)]
        row = dict(zip(columns[3:], map(_cell, values), strict=True))
        rows.append({"frame": item.frame, "time": _cell(item.time), "status": item.status, **row})
    write_csv(path, rows, columns)


def _arkit_mapping(path: str | Path, names: Sequence[str]) -> list[list[int]]:
    """For each of :data:`LIVE_LINK_BLENDSHAPES`, the indices of the expressions averaged into it ([]: 0).

    An ARKit shape ``eyeBlinkLeft`` is found as ``eyeBlinkLeft`` or ``eyeBlink_L``; an unsided one
    (``browInnerUp``) as itself or as the mean of ``browInnerUp_L`` and ``browInnerUp_R``.
    """
    index = {name: i for i, name in enumerate(names)}
    mapping = []
    for column in LIVE_LINK_BLENDSHAPES:
        arkit = column[0].lower() + column[1:]
        candidates = [[arkit]]
        for side, suffix in (("Left", "_L"), ("Right", "_R")):
            if arkit.endswith(side):
                candidates.append([arkit[: -len(side)] + suffix])
        if not arkit.endswith(("Left", "Right")):
            candidates.append([arkit + "_L", arkit + "_R"])
        found = next((c for c in candidates if all(n in index for n in c)), [])
        mapping.append([index[n] for n in found])
    unused = set(names) - {names[i] for found in mapping for i in found}
    if unused:
        raise ValueError(f"cannot write {path}: the Live Link Face CSV needs ARKit blendshapes, and "
                         f"{', '.join(sorted(unused)[:5])}{' ...' if len(unused) > 5 else ''} have no ARKit name")
    return mapping


def _timecode(seconds: float, rate: int) -> str:
    """``HH:MM:SS:FF.fff``: frames (with a fraction of a frame) at ``rate`` fps."""
    thousandths = round(seconds * rate * 1000)
    frames, fraction = divmod(thousandths, 1000)
    whole, frame = divmod(frames, rate)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{frame:02d}.{fraction:03d}"


def write_live_link_csv(path: str | Path, frames: Sequence[TrackFrame], names: Sequence[str], fps: float) -> None:
    """Atomically write the frames as a Live Link Face CSV (layout, units, mapping and gaps: module docstring).

    Raises:
        ValueError: ``names`` hold expressions without an ARKit name, bad frames, or ``fps`` not > 0.
    """
    names = list(names)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"cannot write {path}: fps must be a positive number, got {fps}")
    _check_frames(path, frames, len(names))
    mapping = _arkit_mapping(path, names)
    rate = 30 if fps <= 30 else 60
    count = len(frames)
    shapes = np.zeros((count, len(LIVE_LINK_BLENDSHAPES)))
    pose = np.zeros((count, 3))
    for row, item in enumerate(frames):
        expression = item.expression.astype(np.float64)
        shapes[row] = [expression[found].mean() if found else 0.0 for found in mapping]
        yaw, pitch, roll = item.pose_deg.astype(np.float64)
        pose[row] = (yaw / 180, pitch / 180, -roll / 180)
    valid = np.isfinite(shapes).all(axis=1) & np.isfinite(pose).all(axis=1)
    if valid.any():  # hold the last fitted frame; before the first one, the first one
        held = np.maximum.accumulate(np.where(valid, np.arange(count), -1))
        held[held < 0] = np.argmax(valid)
        shapes, pose = shapes[held], pose[held]
    else:
        shapes[:], pose[:] = 0.0, 0.0
    eyes = ["0.000000"] * (len(LIVE_LINK_ROTATIONS) - 3)
    rows = [[_timecode(item.time, rate), str(LIVE_LINK_COUNT), *map(_cell, [*weights, *angles]), *eyes]
            for item, weights, angles in zip(frames, shapes.tolist(), pose.tolist(), strict=True)]
    write_csv(path, [dict(zip(LIVE_LINK_COLUMNS, row, strict=True)) for row in rows], LIVE_LINK_COLUMNS)


def _identity_fields(path: str | Path, identity: TrackIdentity) -> dict[str, Any]:
    """The fields the identity and track documents share."""
    if np.ndim(identity.identity) != 1:
        raise ValueError(f"cannot write {path}: identity coefficients must be (K,), got shape "
                         f"{np.shape(identity.identity)}")
    return {
        "model": {"name": str(identity.model.get("name", "")), "checksum": str(identity.model.get("checksum", ""))},
        "expression_names": list(identity.expression_names),
        "identity": json_ready(np.asarray(identity.identity, np.float32)),
        "keyframes": [int(k) for k in identity.keyframes],
        "camera": {"focal": json_ready(float(identity.focal))},
    }


def _write_json(path: str | Path, doc: dict[str, Any]) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(json_text(json_ready(doc)) + "\n")


def write_identity_json(path: str | Path, identity: TrackIdentity) -> None:
    """Atomically write the identity alone (schema ``fit3dmm.identity``: the identity fields of the track
    document plus ``photo_size`` and ``fps``)."""
    _write_json(path, {"schema": IDENTITY_SCHEMA, "schema_version": SCHEMA_VERSION, "fit3dmm_version": __version__,
                       **_identity_fields(path, identity), "photo_size": [int(v) for v in identity.photo_size],
                       "fps": float(identity.fps)})


def _frame_dict(item: TrackFrame) -> dict[str, Any]:
    """One entry of ``frames``: expression and pose null when all their values are NaN (a gap)."""
    pose = None
    if np.isfinite(item.pose_deg).any() or np.isfinite(item.rotation).any() or np.isfinite(item.translation).any():
        yaw, pitch, roll = json_ready(np.asarray(item.pose_deg, np.float32))
        pose = {"yaw": yaw, "pitch": pitch, "roll": roll,
                "rotation_axis_angle": json_ready(np.asarray(item.rotation, np.float32)),
                "translation_cm": json_ready(np.asarray(item.translation, np.float32))}
    expression = item.expression
    return {"frame": int(item.frame), "time": float(item.time), "status": item.status,
            "expression": json_ready(np.asarray(expression, np.float32)) if np.isfinite(expression).any() else None,
            "pose": pose, "landmark_error": float(item.landmark_error)}


def write_track_json(path: str | Path, identity: TrackIdentity, frames: Sequence[TrackFrame],
                     meta: Mapping[str, Any]) -> None:
    """Atomically write the track document (:data:`TRACK_FIELDS`).

    Args:
        identity: the shared identity; its ``fps`` and ``photo_size`` become ``input.fps`` and ``input.size``.
        frames: the tracked frames in input order.
        meta: ``{"input": {"path", "start", "end", "step", ...}, "settings": {...}}``; ``input`` may be a
            :meth:`FrameSource.describe() <fit3dmm.observe.video.FrameSource.describe>` (its other keys are kept,
            its fps and size replaced by the identity's); ``settings`` is optional.
    """
    unknown = set(meta) - {"input", "settings"}
    if unknown or not isinstance(meta.get("input"), Mapping):
        raise ValueError(f"cannot write {path}: meta must hold 'input' (a dict) and optionally 'settings', "
                         f"got keys {sorted(meta)}")
    missing = [key for key in ("path", "start", "end", "step") if key not in meta["input"]]
    if missing:
        raise ValueError(f"cannot write {path}: meta['input'] lacks {', '.join(missing)}")
    names = list(identity.expression_names)
    _check_frames(path, frames, len(names))
    doc = {
        "schema": TRACK_SCHEMA, "schema_version": SCHEMA_VERSION, "fit3dmm_version": __version__,
        "input": {**meta["input"], "fps": float(identity.fps), "size": [int(v) for v in identity.photo_size]},
        **_identity_fields(path, identity),
        "settings": dict(meta.get("settings", {})),
        "frames": [_frame_dict(item) for item in frames],
    }
    _write_json(path, doc)


def track_schema_markdown() -> str:
    """A Markdown table of the track JSON fields (for the README)."""
    rows = ["| field | type | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{key}` | {kind} | {meaning} |" for key, kind, meaning in TRACK_FIELDS]
    return "\n".join(rows) + "\n"


def _load(path: Path, schema: str, what: str) -> dict[str, Any]:
    """A JSON document of ``schema`` with a readable major version."""
    return load_versioned_json(path, schema, SCHEMA_VERSION, what, TrackFormatError)


def _floats(value: Any, length: int | None, where: str) -> np.ndarray:
    """A list of numbers or nulls (NaN) → float32; raises TrackFormatError(where) on anything else."""
    if not isinstance(value, list) or (length is not None and len(value) != length) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value):
        wanted = "a list of numbers" + ("" if length is None else f" of length {length}")
        raise TrackFormatError(f"{where} must be {wanted}")
    return np.array([math.nan if v is None else v for v in value], np.float32)


def _number(value: Any, where: str) -> float:
    """A number or null (NaN)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TrackFormatError(f"{where} must be a number or null, got {value!r}")
    return float(value)


def _identity_from(doc: dict[str, Any], prefix: str, fps: Any, size: Any) -> TrackIdentity:
    names = doc.get("expression_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TrackFormatError(f"{prefix}: expression_names must be a list of strings")
    keyframes = doc.get("keyframes")
    if not isinstance(keyframes, list) or not all(isinstance(k, int) for k in keyframes):
        raise TrackFormatError(f"{prefix}: keyframes must be a list of integers")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise TrackFormatError(f"{prefix}: the frame size must be two integers, got {size!r}")
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    return TrackIdentity(
        identity=_floats(doc.get("identity"), None, f"{prefix}: identity"),
        model={"name": str(model.get("name", "")), "checksum": str(model.get("checksum", ""))},
        expression_names=names, keyframes=keyframes,
        focal=_number((doc.get("camera") or {}).get("focal"), f"{prefix}: camera.focal"),
        photo_size=(size[0], size[1]), fps=_number(fps, f"{prefix}: fps"))


def read_identity_json(path: str | Path) -> TrackIdentity:
    """Read a :func:`write_identity_json` file.

    Raises:
        TrackFormatError: missing or not JSON, another schema or major version, or malformed fields.
    """
    path = Path(path)
    doc = _load(path, IDENTITY_SCHEMA, "identity file")
    return _identity_from(doc, f"identity file {path}", doc.get("fps"), doc.get("photo_size"))


def _lookup(doc: dict[str, Any], dotted: str) -> bool:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _frame_from(entry: Any, position: int, num_expression: int, prefix: str) -> TrackFrame:
    where = f"{prefix}: frames[{position}]"
    if not isinstance(entry, dict):
        raise TrackFormatError(f"{where} must be an object")
    index, status = entry.get("frame"), entry.get("status")
    if isinstance(index, bool) or not isinstance(index, int) or status not in TRACK_STATUSES:
        raise TrackFormatError(f"{where} needs an integer frame and a status in {', '.join(TRACK_STATUSES)}")
    item = TrackFrame.gap(index, _number(entry.get("time"), f"{where}.time"), num_expression, status)
    if entry.get("expression") is not None:
        item.expression = _floats(entry["expression"], num_expression, f"{where}.expression")
    pose = entry.get("pose")
    if pose is not None:
        if not isinstance(pose, dict) or any(key not in pose for key in _POSE_KEYS):
            raise TrackFormatError(f"{where}.pose must be null or hold {', '.join(_POSE_KEYS)}")
        item.pose_deg = _floats([pose["yaw"], pose["pitch"], pose["roll"]], 3, f"{where}.pose yaw/pitch/roll")
        item.rotation = _floats(pose["rotation_axis_angle"], 3, f"{where}.pose.rotation_axis_angle")
        item.translation = _floats(pose["translation_cm"], 3, f"{where}.pose.translation_cm")
    item.landmark_error = _number(entry.get("landmark_error"), f"{where}.landmark_error")
    return item


def read_track_json(path: str | Path) -> tuple[TrackIdentity, list[TrackFrame]]:
    """Read a :func:`write_track_json` file: the identity and the frames (NaN where the file has null).

    Raises:
        TrackFormatError: missing or not JSON, another schema or major version, missing fields (named), or
            malformed frames (the first one named).
    """
    path = Path(path)
    prefix = f"track file {path}"
    doc = _load(path, TRACK_SCHEMA, "track file")
    missing = [key for key, _, _ in TRACK_FIELDS if "[]" not in key and not _lookup(doc, key)]
    if missing:
        raise TrackFormatError(f"{prefix}: missing fields {', '.join(missing)}")
    identity = _identity_from(doc, prefix, doc["input"]["fps"], doc["input"]["size"])
    if not isinstance(doc["frames"], list):
        raise TrackFormatError(f"{prefix}: frames must be a list")
    num_expression = len(identity.expression_names)
    return identity, [_frame_from(entry, k, num_expression, prefix) for k, entry in enumerate(doc["frames"])]


def plot_track_curves(path: str | Path, frames: Sequence[TrackFrame], names: Sequence[str], top: int = 8) -> None:
    """Atomically write a PNG (800 × 480 px): the ``top`` expressions of largest variance over time, and
    yaw/pitch/roll in degrees below; gaps (NaN) are breaks in the lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(names)
    if not frames:
        raise ValueError(f"cannot write {path}: no frames to plot")
    if top < 1:
        raise ValueError(f"cannot write {path}: top must be ≥ 1, got {top}")
    _check_frames(path, frames, len(names))
    times = np.array([item.time for item in frames])
    weights = np.stack([item.expression for item in frames]).astype(np.float64)
    pose = np.stack([item.pose_deg for item in frames]).astype(np.float64)
    fitted = weights[np.isfinite(weights).all(axis=1)]
    variance = fitted.var(axis=0) if len(fitted) else np.zeros(len(names))
    chosen = np.argsort(-variance, kind="stable")[: min(top, len(names))]
    fig = Figure(figsize=(10.0, 6.0), dpi=80)
    FigureCanvasAgg(fig)
    upper = fig.add_subplot(2, 1, 1)
    for k in chosen:
        upper.plot(times, weights[:, k], lw=1.0, label=names[k])
    upper.set_title(f"the {len(chosen)} expressions that vary most", fontsize=9)
    upper.set_ylabel("weight", fontsize=8)
    lower = fig.add_subplot(2, 1, 2, sharex=upper)
    for k, label in enumerate(("yaw", "pitch", "roll")):
        lower.plot(times, pose[:, k], lw=1.0, label=label)
    lower.set_title("head pose", fontsize=9)
    lower.set_ylabel("degrees", fontsize=8)
    lower.set_xlabel("time (s)", fontsize=8)
    for ax in (upper, lower):
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    atomic_save(path, lambda p: fig.savefig(p, format="png"))


class OverlayVideo:
    """Write an mp4 frame by frame from (H, W, 3) uint8 RGB images, atomically.

    ``with OverlayVideo("overlay.mp4", fps=30, size=(W, H)) as video: video.write(image)``.  The frames go to a
    hidden temporary file in the destination folder, renamed onto the destination when the block ends without
    an exception and at least one frame was written; otherwise it is removed.  The codec is MPEG-4 Part 2
    (fourcc ``mp4v``); where OpenCV cannot open that writer, Motion JPEG in an AVI file is written instead, at
    the destination with the suffix ``.avi`` (a ``UserWarning`` says so; :attr:`path` is the file written).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"cannot write video {path}: fps must be a positive number, got {fps}")
        if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
            raise ValueError(f"cannot write video {path}: size must be two positive integers (W, H), got {size}")
        self.path = Path(path)
        self.fps = float(fps)
        self.size = (size[0], size[1])
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._files = ExitStack()

    def __enter__(self) -> OverlayVideo:
        requested = self.path
        for target, fourcc in ((requested, "mp4v"), (requested.with_suffix(".avi"), "MJPG")):
            files = ExitStack()
            (temp,) = files.enter_context(atomic_files([target]))
            writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size)
            if writer.isOpened():
                if fourcc != "mp4v":
                    warnings.warn(f"OpenCV cannot write mp4v video here; writing Motion JPEG to {target} instead "
                                  f"of {requested}", UserWarning, stacklevel=2)
                self.path, self._writer, self._files = target, writer, files
                return self
            writer.release()
            failure = OSError(f"OpenCV cannot open a {fourcc} writer for {target}")
            files.__exit__(OSError, failure, None)  # removes the temporary file, if any
        raise OSError(f"cannot write video {requested}: OpenCV opened neither an mp4v nor an MJPG writer")

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame of the video's size."""
        if self._writer is None:
            raise RuntimeError(f"video {self.path} is not open: use OverlayVideo in a with block")
        width, height = self.size
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != (height, width, 3):
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"cannot write video {self.path}: frames must be uint8 ({height}, {width}, 3) RGB, "
                             f"got {getattr(image, 'dtype', '')} {shape}")
        self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if exc is None and self.frames == 0:
            exc_type, exc = ValueError, ValueError(f"cannot write video {self.path}: no frames were written")
            self._files.__exit__(exc_type, exc, None)
            raise exc
        self._files.__exit__(exc_type, exc, tb)
