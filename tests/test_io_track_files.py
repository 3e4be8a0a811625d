"""Track writers: the CSVs parse back with the csv module (gaps empty), the Live Link Face CSV has the app's exact
header and Unreal's timecodes, track/identity JSON round-trip with NaN gaps, the curves PNG and the overlay video
are written complete or not at all."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from fit3dmm import __version__
from fit3dmm.io import track_files
from fit3dmm.io.track_files import (
    TRACK_FIELDS,
    OverlayVideo,
    TrackFormatError,
    plot_track_curves,
    read_identity_json,
    read_track_json,
    track_schema_markdown,
    write_blendshapes_csv,
    write_identity_json,
    write_live_link_csv,
    write_track_json,
)
from fit3dmm.types.track import TRACK_FILLED, TRACK_NO_FACE, TRACK_OK, TrackFrame, TrackIdentity

ICT_NAMES = [
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R", "cheekPuff_L",
    "cheekPuff_R", "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R",
    "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L",
    "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft", "mouthLowerDown_L",
    "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmile_L", "mouthSmile_R", "mouthStretch_L",
    "mouthStretch_R", "mouthUpperUp_L", "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
]
"""The shipped ICT model's expression names (checked against the model in the slow test below)."""

LIVE_LINK_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)
"""The header row of Live Link Face recordings (module docstring of fit3dmm.io.track_files for the sources)."""


def _frames(names: list[str], count: int = 8, gaps: tuple[int, ...] = (2, 3), fps: float = 30.0,
            seed: int = 0) -> list[TrackFrame]:
    """Frames 0, 2, 4, ... (a step of 2) with distinct random values; ``gaps`` (positions) have no face."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        index = 2 * k
        if k in gaps:
            frames.append(TrackFrame.gap(index, index / fps, len(names)))
            continue
        frames.append(TrackFrame(
            frame=index, time=index / fps, status=TRACK_OK if k % 3 else TRACK_FILLED,
            expression=rng.uniform(0, 1, len(names)).astype(np.float32),
            rotation=rng.uniform(-0.3, 0.3, 3).astype(np.float32),
            translation=rng.uniform(-5, 5, 3).astype(np.float32) - np.float32([0, 0, 50]),
            pose_deg=rng.uniform(-40, 40, 3).astype(np.float32),
            landmark_error=float(rng.uniform(0.5, 3.0))))
    return frames


def _identity(names: list[str]) -> TrackIdentity:
    return TrackIdentity(identity=np.linspace(-1.5, 2.0, 7, dtype=np.float32),
                         model={"name": "ict", "checksum": "c1e4"}, expression_names=list(names),
                         keyframes=[0, 6, 14], focal=812.25, photo_size=(640, 360), fps=30.0)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


# --- blendshape CSV ---------------------------------------------------------------------------------------------

def test_blendshapes_csv_parses_back_with_empty_gap_cells(tmp_path: Path) -> None:
    names = ["jawOpen", "eyeBlink_L", "mouthSmile_R"]
    frames = _frames(names)
    frames[1].landmark_error = float("nan")
    path = tmp_path / "blendshapes.csv"
    write_blendshapes_csv(path, frames, names)
    header, rows = _rows(path)
    assert header == ["frame", "time", "status", *names, "yaw", "pitch", "roll", "tx", "ty", "tz", "landmark_error"]
    assert len(rows) == len(frames)
    assert "nan" not in path.read_text().lower()
    for row, item in zip(rows, frames, strict=True):
        assert (int(row["frame"]), row["status"]) == (item.frame, item.status)
        assert float(row["time"]) == pytest.approx(item.time, abs=5e-7)
        values = [*item.expression, *item.pose_deg, *item.translation, item.landmark_error]
        for column, value in zip(header[3:], values, strict=True):
            if np.isfinite(value):
                assert re.fullmatch(r"-?\d+\.\d{6}", row[column])
                assert float(row[column]) == pytest.approx(float(value), abs=5e-7)
            else:
                assert row[column] == ""
    assert rows[2]["status"] == TRACK_NO_FACE and all(rows[2][c] == "" for c in header[3:])


def test_blendshapes_csv_refuses_colliding_names_and_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="collide"):
        write_blendshapes_csv(tmp_path / "a.csv", _frames(["yaw", "jawOpen"]), ["yaw", "jawOpen"])
    frames = _frames(["jawOpen", "mouthClose"])
    with pytest.raises(ValueError, match="shape"):
        write_blendshapes_csv(tmp_path / "a.csv", frames, ["jawOpen"])
    frames[4].frame = 1
    with pytest.raises(ValueError, match="increasing"):
        write_blendshapes_csv(tmp_path / "a.csv", frames, ["jawOpen", "mouthClose"])
    assert not list(tmp_path.iterdir())


# --- Live Link Face CSV -----------------------------------------------------------------------------------------

def _unreal_seconds(timecodes: list[str]) -> list[float]:
    """Times as Unreal's LiveLinkFaceImporter reads them: FF.fff is a float frame count at 60 fps when any
    frame number exceeds 30, else at 30 fps."""
    parts = [[float(v) for v in code.split(":")] for code in timecodes]
    rate = 60 if any(frame > 30 for *_, frame in parts) else 30
    return [h * 3600 + m * 60 + s + frame / rate for h, m, s, frame in parts]


def test_live_link_csv_has_the_app_header_one_row_per_frame_and_mapped_values(tmp_path: Path) -> None:
    frames = _frames(ICT_NAMES, count=10, gaps=(0, 4, 5))
    path = tmp_path / "take.csv"
    write_live_link_csv(path, frames, ICT_NAMES, fps=30)
    assert path.read_text().splitlines()[0] == LIVE_LINK_HEADER
    header, rows = _rows(path)
    assert len(rows) == len(frames) and len(header) == 63
    assert {row["BlendShapeCount"] for row in rows} == {"61"}
    assert [row["Timecode"] for row in rows[:3]] == ["00:00:00:00.000", "00:00:00:02.000", "00:00:00:04.000"]
    assert _unreal_seconds([row["Timecode"] for row in rows]) == pytest.approx([f.time for f in frames], abs=1e-6)
    index = {name: k for k, name in enumerate(ICT_NAMES)}
    fitted = {0: 1, 4: 3, 5: 3}  # gap position → the fitted frame whose values it holds
    for position, row in enumerate(rows):
        item = frames[fitted.get(position, position)]
        expression = item.expression.astype(np.float64)
        yaw, pitch, roll = item.pose_deg.astype(np.float64)
        expected = {
            "EyeBlinkLeft": expression[index["eyeBlink_L"]], "MouthSmileRight": expression[index["mouthSmile_R"]],
            "JawLeft": expression[index["jawLeft"]], "MouthRight": expression[index["mouthRight"]],
            "BrowInnerUp": (expression[index["browInnerUp_L"]] + expression[index["browInnerUp_R"]]) / 2,
            "CheekPuff": (expression[index["cheekPuff_L"]] + expression[index["cheekPuff_R"]]) / 2,
            "TongueOut": 0.0, "HeadYaw": yaw / 180, "HeadPitch": pitch / 180, "HeadRoll": -roll / 180,
            "LeftEyeYaw": 0.0, "RightEyeRoll": 0.0,
        }
        for column, value in expected.items():
            assert float(row[column]) == pytest.approx(value, abs=5e-7), (position, column)
        assert all(cell != "" for cell in row.values())


@pytest.mark.parametrize(("fps", "count", "last"), [(25.0, 30, "00:00:02:09.600"), (60.0, 70, "00:00:02:18.000"),
                                                    (29.97, 40, "00:00:02:18.078")])
def test_live_link_timecodes_read_back_at_the_frame_times(tmp_path: Path, fps: float, count: int, last: str) -> None:
    frames = _frames(["jawOpen"], count=count, gaps=(), fps=fps)
    path = tmp_path / "take.csv"
    write_live_link_csv(path, frames, ["jawOpen"], fps=fps)
    _, rows = _rows(path)
    assert rows[-1]["Timecode"] == last
    assert _unreal_seconds([row["Timecode"] for row in rows]) == pytest.approx([f.time for f in frames], abs=2e-5)


def test_live_link_csv_of_a_track_without_faces_is_neutral(tmp_path: Path) -> None:
    path = tmp_path / "take.csv"
    write_live_link_csv(path, _frames(["jawOpen"], count=3, gaps=(0, 1, 2)), ["jawOpen"], fps=30)
    _, rows = _rows(path)
    assert len(rows) == 3
    assert all(float(v) == 0 for row in rows for k, v in row.items() if k not in ("Timecode", "BlendShapeCount"))


def test_live_link_csv_refuses_expressions_without_an_arkit_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exp_1"):
        write_live_link_csv(tmp_path / "take.csv", _frames(["jawOpen", "exp_1"]), ["jawOpen", "exp_1"], fps=30)
    with pytest.raises(ValueError, match="fps"):
        write_live_link_csv(tmp_path / "take.csv", _frames(["jawOpen"]), ["jawOpen"], fps=0)
    assert not list(tmp_path.iterdir())


def test_every_expression_of_the_shipped_model_has_a_live_link_column(ict_model) -> None:
    assert list(ict_model.expression_names) == ICT_NAMES
    mapping = track_files._arkit_mapping("take.csv", ICT_NAMES)
    used = sorted(i for found in mapping for i in found)
    assert used == list(range(len(ICT_NAMES)))
    assert [column for column, found in zip(track_files.LIVE_LINK_BLENDSHAPES, mapping, strict=True)
            if not found] == ["TongueOut"]


# --- track and identity JSON ------------------------------------------------------------------------------------

def _meta() -> dict:
    return {"input": {"path": "clip.mp4", "kind": "video", "fps": 99.0, "size": [1, 1], "count": 16, "start": 0,
                      "end": None, "step": 2, "truncated_at": None},
            "settings": {"losses": "prdl,lmk,reg", "fill": False}}


def test_track_json_round_trips_with_null_gaps(tmp_path: Path) -> None:
    names = ["jawOpen", "eyeBlink_L", "mouthSmile_R"]
    identity, frames = _identity(names), _frames(names)
    frames[1].landmark_error = float("nan")
    frames[5].expression[1] = np.nan
    path = tmp_path / "track.json"
    write_track_json(path, identity, frames, _meta())

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-finite JSON number {constant}")

    doc = json.loads(path.read_text(), parse_constant=refuse)
    assert (doc["schema"], doc["schema_version"], doc["fit3dmm_version"]) == ("fit3dmm.track", "1.0", __version__)
    assert doc["input"] == {**_meta()["input"], "fps": 30.0, "size": [640, 360]}
    assert doc["settings"] == _meta()["settings"] and doc["camera"] == {"focal": 812.25}
    assert doc["frames"][2] == {"frame": 4, "time": pytest.approx(4 / 30), "status": "no_face", "expression": None,
                                "pose": None, "landmark_error": None}
    assert doc["frames"][1]["landmark_error"] is None and doc["frames"][5]["expression"][1] is None

    read_identity, read_frames = read_track_json(path)
    assert read_identity.model == identity.model and read_identity.expression_names == names
    assert (read_identity.keyframes, read_identity.focal, read_identity.photo_size, read_identity.fps) == (
        [0, 6, 14], 812.25, (640, 360), 30.0)
    np.testing.assert_array_equal(read_identity.identity, identity.identity)
    assert len(read_frames) == len(frames)
    for got, want in zip(read_frames, frames, strict=True):
        assert (got.frame, got.time, got.status) == (want.frame, want.time, want.status)
        for field in ("expression", "rotation", "translation", "pose_deg"):
            assert getattr(got, field).dtype == np.float32
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))  # NaN where NaN
        np.testing.assert_array_equal(got.landmark_error, want.landmark_error)


def test_identity_json_round_trips(tmp_path: Path) -> None:
    identity = _identity(["jawOpen"])
    path = tmp_path / "identity.json"
    write_identity_json(path, identity)
    assert json.loads(path.read_text())["schema"] == "fit3dmm.identity"
    read = read_identity_json(path)
    np.testing.assert_array_equal(read.identity, identity.identity)
    assert (read.model, read.expression_names, read.keyframes, read.focal, read.photo_size, read.fps) == (
        identity.model, identity.expression_names, identity.keyframes, identity.focal, identity.photo_size,
        identity.fps)
    with pytest.raises(TrackFormatError, match="not a fit3dmm track file"):
        read_track_json(path)


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(schema="fit3dmm.params"), "not a fit3dmm track file"),
    (lambda d: d.update(schema_version="2.0"), "schema version '2.0' is not supported"),
    (lambda d: (d.pop("keyframes"), d["input"].pop("step")), "missing fields input.step, keyframes"),
    (lambda d: d["frames"][0].update(expression=[0.5]), r"frames\[0\].expression must be a list"),
    (lambda d: d["frames"][1].update(status="lost"), r"frames\[1\] needs an integer frame and a status"),
    (lambda d: d["frames"][4]["pose"].pop("roll"), r"frames\[4\].pose must be null or hold"),
    (lambda d: d["frames"][5].update(landmark_error="1.5"), r"frames\[5\].landmark_error must be a number"),
])
def test_malformed_track_files_are_refused_naming_the_file(tmp_path: Path, change, words: str) -> None:
    names = ["jawOpen", "mouthClose"]
    path = tmp_path / "track.json"
    write_track_json(path, _identity(names), _frames(names), _meta())
    _edit(path, change)
    with pytest.raises(TrackFormatError, match=words) as caught:
        read_track_json(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_unreadable_track_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrackFormatError, match="no such file"):
        read_track_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TrackFormatError, match="not valid JSON"):
        read_track_json(tmp_path / "bad.json")


def test_track_json_checks_its_meta(tmp_path: Path) -> None:
    names = ["jawOpen"]
    with pytest.raises(ValueError, match="'input'"):
        write_track_json(tmp_path / "t.json", _identity(names), _frames(names), {"settings": {}})
    with pytest.raises(ValueError, match="lacks end, step"):
        write_track_json(tmp_path / "t.json", _identity(names), _frames(names), {"input": {"path": "a", "start": 0}})
    assert not list(tmp_path.iterdir())


def test_schema_markdown_lists_every_field_and_the_writer_writes_them(tmp_path: Path) -> None:
    table = track_schema_markdown().splitlines()
    assert table[0] == "| field | type | meaning |" and len(table) == 2 + len(TRACK_FIELDS)
    names = ["jawOpen"]
    path = tmp_path / "track.json"
    write_track_json(path, _identity(names), _frames(names, gaps=()), _meta())
    doc = json.loads(path.read_text())

    def keys(node: dict, prefix: str = "") -> set[str]:
        found = set()
        for key, value in node.items():
            if isinstance(value, dict) and key not in ("settings",):
                found |= keys(value, f"{prefix}{key}.")
            else:
                found.add(prefix + key)
        return found

    written = keys(doc) | {f"frames[].{key}" for key in keys(doc["frames"][0])}
    listed = {key for key, _, _ in TRACK_FIELDS}
    assert listed <= written and written - listed == {"input.kind", "input.count", "input.truncated_at"}


# --- curves PNG -------------------------------------------------------------------------------------------------

def test_curves_png_has_its_size_and_breaks_at_gaps(tmp_path: Path) -> None:
    names = ["jawOpen", "eyeBlink_L", "mouthClose"]
    frames = _frames(names, count=100, gaps=tuple(range(35, 65)))
    for item in frames:
        if item.status != TRACK_NO_FACE:
            item.expression[:] = (0.5, 0.5, 0.5)
            item.expression[1] = 0.2 + 0.6 * (item.frame % 20 > 9)  # the one that varies: a square wave
    path = tmp_path / "curves.png"
    plot_track_curves(path, frames, names, top=1)
    image = cv2.imread(str(path))
    assert image.shape == (480, 800, 3)
    blue = (image[..., 0] > 150) & (image[..., 2] < 100) & (image[..., 1] < 160)  # matplotlib's C0, BGR
    columns = np.flatnonzero(blue[: image.shape[0] // 2].any(axis=0))  # upper panel: the curve and its legend
    # the square wave draws in every column of the time axis but the gap's 30 %; a gap drawn as 0 would not
    assert np.diff(columns).max() > 0.2 * (columns[-1] - columns[0])


def test_curves_png_refuses_an_empty_track(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        plot_track_curves(tmp_path / "curves.png", [], ["jawOpen"])
    assert not list(tmp_path.iterdir())


# --- overlay video ----------------------------------------------------------------------------------------------

def _solid(value: int) -> np.ndarray:
    image = np.zeros((48, 64, 3), np.uint8)
    image[..., 0] = value  # red
    return image


def _read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_overlay_video_reads_back_with_its_frames(tmp_path: Path) -> None:
    path = tmp_path / "overlay.mp4"
    with OverlayVideo(path, fps=25, size=(64, 48)) as video:
        for k in range(12):
            video.write(_solid(20 * k))
        assert not path.exists()
    assert video.path == path and video.frames == 12
    frames = _read_video(path)
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    assert [round(frame[..., 2].mean() / 20) for frame in frames] == list(range(12))  # red, in BGR
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25)
    capture.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4"]


def test_overlay_video_leaves_nothing_on_an_exception_or_without_frames(tmp_path: Path) -> None:
    path = tmp_path / "overlay.mp4"
    with pytest.raises(KeyError), OverlayVideo(path, fps=30, size=(64, 48)) as video:
        video.write(_solid(10))
        raise KeyError("interrupted")
    with pytest.raises(ValueError, match="no frames"), OverlayVideo(path, fps=30, size=(64, 48)):
        pass
    with pytest.raises(ValueError, match=r"uint8 \(48, 64, 3\)"), OverlayVideo(path, fps=30, size=(64, 48)) as video:
        video.write(np.zeros((64, 48, 3), np.uint8))
    assert not list(tmp_path.iterdir())


def test_overlay_video_falls_back_to_mjpeg_avi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer_class = cv2.VideoWriter

    def without_mp4v(path: str, fourcc: int, *args: object) -> cv2.VideoWriter:
        if fourcc == cv2.VideoWriter_fourcc(*"mp4v"):
            return writer_class()  # never opened
        return writer_class(path, fourcc, *args)

    monkeypatch.setattr(track_files.cv2, "VideoWriter", without_mp4v)
    with pytest.warns(UserWarning, match="Motion JPEG"), OverlayVideo(tmp_path / "overlay.mp4", 30, (64, 48)) as video:
        for k in range(5):
            video.write(_solid(40 * k))
    assert video.path == tmp_path / "overlay.avi"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.avi"]
    assert [round(frame[..., 2].mean() / 40) for frame in _read_video(video.path)] == list(range(5))
