"""fit3dmm.batch.run_batch end to end with the tiny pyramid model and a fake detector (fast, no mediapipe):
folders and report, resume, interruption, bad files, divergence retry, batching, several faces, workers."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fit3dmm import batch
from fit3dmm.api import ObserveOptions, Pipeline, Schedule
from fit3dmm.batch.folder import LOCK_NAME
from fit3dmm.batch.report import REPORT_COLUMNS, TIME_COLUMNS
from fit3dmm.defaults import STATUSES
from fit3dmm.fitting.engine import fit_observation
from fit3dmm.io.images import read_depth_png
from fit3dmm.io.outputs import MeshExtras, OutputOptions, OutputPaths, render_maps, save_outputs
from fit3dmm.io.params import read_params_json
from fit3dmm.losses.registry import parse_losses
from fit3dmm.models.assets import FaceModelAssets
from fit3dmm.observe.detect import Detection
from fit3dmm.render.rasterize import rasterize

WEIGHTS = parse_losses("lmk,reg")
SCHEDULE = Schedule(iterations=4, rigid_iterations=4)
TINY_LANDMARKS = np.arange(68) % 5  # the tiny model's landmark vertices
TINY_MEAN_XY = np.array([[-5, -5], [5, -5], [5, 5], [-5, 5], [0, 0]], float)


class FakeDetector:
    """Faces drawn as the tiny model's landmarks seen from the front: ``faces`` holds (cx, cy, px per cm)
    with the centre as a fraction of the image size; largest first."""

    name = "fake"
    num_landmarks = 68

    def __init__(self, faces: tuple[tuple[float, float, float], ...] = ((0.5, 0.5, 6.0),)) -> None:
        self.faces = faces
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.shapes.append(image.shape)
        height, width = image.shape[:2]
        out = []
        for cx, cy, scale in self.faces:
            xy = TINY_MEAN_XY[TINY_LANDMARKS] * [scale, -scale] + [cx * width, cy * height]
            box = np.concatenate([xy.min(0), xy.max(0)])
            out.append(Detection(landmarks=xy, landmarks68=xy, box=box, score=1.0))
        return sorted(out, key=lambda d: -d.size)

    def close(self) -> None:
        pass


def fake_detector() -> FakeDetector:
    """A picklable factory (module level) for worker processes."""
    return FakeDetector()


def two_face_detector() -> FakeDetector:
    return FakeDetector(((0.3, 0.5, 5.0), (0.7, 0.5, 7.0)))


def make_photos(folder: Path, names: list[str], size: tuple[int, int] = (160, 120)) -> list[Path]:
    """Small RGB photos with distinct content."""
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def run(paths, out, model, options=None, *, schedule=SCHEDULE, detector_factory=fake_detector, faces="largest",
        min_face_size=40.0, fit=None):
    """run_batch with the tiny model, lmk + reg, a 64 px crop (fast) and the fake detector; ``fit(real, obs)``
    stands in for the pipeline's fit when given."""
    options = options or batch.BatchOptions(outputs=OutputOptions(color="vertex"))
    observe = ObserveOptions(size=64, faces=faces, min_face_size=min_face_size)
    pipeline = Pipeline(model, WEIGHTS, schedule, observe, detector_factory=detector_factory)
    if fit is not None:
        real = pipeline.fit
        pipeline.fit = lambda obs, progress=None: fit(real, obs)
    return batch.run_batch(paths, out, pipeline, options)


def report(out: Path) -> list[dict[str, str]]:
    return batch.read_report(out / batch.REPORT_NAME)


def hidden(out: Path) -> list[str]:
    """The hidden entries of ``out``: temporaries, and the lock file while (or if, after) a run holds it."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_batch_writes_one_complete_folder_per_photo_and_a_report(tmp_path, tiny_model):
    paths = make_photos(tmp_path / "in", ["a/face.png", "b/face.png", "solo.jpg"])
    out = tmp_path / "out"
    summary = run(paths, out, tiny_model)
    assert (summary.photos, summary.fitted, summary.failed, summary.faces, summary.ok) == (3, 3, 0, 3, True)
    assert len(summary.landmark_errors) == 3
    mean_line = [line for line in summary.lines() if line.startswith("mean 68-landmark distance")]
    assert mean_line and f"{sum(summary.landmark_errors) / 3:.2f} px" in mean_line[0]
    names = batch.output_names(paths)
    assert names[2] == "solo" and names[0].startswith("face-") and names[1].startswith("face-")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted([*names, "report.csv"])
    rows = report(out)
    assert [r["input"] for r in rows] == [str(p) for p in paths]
    for path, name, row in zip(paths, names, rows, strict=True):
        folder = out / name
        marker = json.loads((folder / batch.MARKER_NAME).read_text())
        assert sorted(marker["files"]) == sorted(["face.obj", "face.json", "face_overlay.png"])
        assert marker["input"] == str(path)
        assert sorted(p.name for p in folder.iterdir()) == sorted([*marker["files"], batch.MARKER_NAME])
        assert (row["status"], row["output"], row["face"], row["resumed"]) == ("ok", f"{name}/face.obj", "0", "0")
        doc = read_params_json(folder / "face.json")
        assert doc["crop"]["photo_size"] == [160, 120]
        # the report's landmark error is the mean distance between the fitted and the detected landmarks
        detected = FakeDetector().detect(np.zeros((120, 160, 3), np.uint8))[0].landmarks68
        fitted = np.array(doc["landmarks68"]["photo_px"])
        assert float(row["landmark_error_px"]) == pytest.approx(np.linalg.norm(fitted - detected, axis=1).mean(),
                                                                abs=2e-4)
        assert float(row["loss_lmk"]) == pytest.approx(doc["losses"]["lmk"], rel=1e-5)
        assert int(row["iterations"]) == doc["iterations"] == 0  # landmarks and prior only: no refinement
        assert row["width"] == "160" and row["height"] == "120"
        obj_vertices = [line for line in (folder / "face.obj").read_text().splitlines() if line.startswith("v ")]
        assert len(obj_vertices) == 5 and len(obj_vertices[0].split()) == 7  # position + vertex colour
    assert hidden(out) == []


def test_rerun_skips_complete_photos_and_redoes_the_rest(tmp_path, tiny_model):
    paths = make_photos(tmp_path, ["p0.png", "p1.png", "p2.png"])
    out = tmp_path / "out"
    run(paths, out, tiny_model)
    first = (out / "p0" / "face.obj").read_bytes()
    shutil.rmtree(out / "p1")
    calls = []

    def counting(real, obs):
        calls.append(obs.names)
        return real(obs)

    summary = run(paths, out, tiny_model, fit=counting)
    assert calls == [["p1.png#0"]]
    assert (summary.fitted, summary.resumed, summary.stale) == (1, 2, 0)
    rows = report(out)
    assert [r["resumed"] for r in rows] == ["1", "0", "1"]
    assert all(r["status"] == "ok" and r["landmark_error_px"] for r in rows)
    assert (out / "p0" / "face.obj").read_bytes() == first
    # other options: still skipped, but counted as stale; --overwrite redoes everything
    summary = run(paths, out, tiny_model, fit=counting, schedule=dataclasses.replace(SCHEDULE, iterations=3))
    assert (summary.resumed, summary.stale, len(calls)) == (3, 3, 1)
    options = batch.BatchOptions(overwrite=True, outputs=OutputOptions(color="vertex"))
    summary = run(paths, out, tiny_model, options, fit=counting)
    assert (summary.fitted, summary.resumed, len(calls)) == (3, 0, 4)
    assert hidden(out) == []


def test_interrupt_while_writing_leaves_no_partial_output_and_resumes(tmp_path, tiny_model, monkeypatch):
    import fit3dmm.io.outputs as outputs_module

    paths = make_photos(tmp_path, ["p0.png", "p1.png", "p2.png"])
    out = tmp_path / "out"
    real = outputs_module.write_params_json
    calls = []

    def interrupted(path, doc):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C after p1's mesh was written, before its JSON
        real(path, doc)

    monkeypatch.setattr(outputs_module, "write_params_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(paths, out, tiny_model)
    assert sorted(p.name for p in out.iterdir()) == ["p0", "report.csv"]  # no lock file either
    assert (out / "p0" / batch.MARKER_NAME).is_file()
    assert [r["input"] for r in report(out)] == [str(paths[0])]
    monkeypatch.setattr(outputs_module, "write_params_json", real)
    summary = run(paths, out, tiny_model)
    assert (summary.resumed, summary.fitted) == (1, 2)
    assert [r["resumed"] for r in report(out)] == ["1", "0", "0"]
    for name in ("p0", "p1", "p2"):
        assert read_params_json(out / name / "face.json")["status"] == "ok"
    assert hidden(out) == []


def test_a_failing_writer_is_reported_and_the_run_goes_on(tmp_path, tiny_model, monkeypatch):
    import fit3dmm.io.outputs as outputs_module

    paths = make_photos(tmp_path, ["p0.png", "p1.png"])
    out = tmp_path / "out"
    real = outputs_module.write_png

    def disk_full(path, image):
        if "p0" in str(path):
            raise OSError(28, "No space left on device")
        real(path, image)

    monkeypatch.setattr(outputs_module, "write_png", disk_full)
    summary = run(paths, out, tiny_model)
    rows = report(out)
    assert [r["status"] for r in rows] == ["error", "ok"]
    assert "No space left on device" in rows[0]["error"] and rows[0]["output"] == ""
    assert not (out / "p0").exists() and (out / "p1" / batch.MARKER_NAME).is_file()
    assert (summary.failed, summary.ok) == (1, False)
    assert hidden(out) == []


def test_bad_files_are_recorded_and_the_run_goes_on(tmp_path, tiny_model):
    good = make_photos(tmp_path, ["good.png"])[0]
    (tmp_path / "text.jpg").write_text("not a photo")
    (tmp_path / "empty.jpg").write_bytes(b"")
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "folder.jpg").mkdir()
    vanished = tmp_path / "vanished.jpg"  # listed, then deleted before it was read
    paths = [tmp_path / "text.jpg", tmp_path / "empty.jpg", tmp_path / "cut.png", tmp_path / "folder.jpg",
             vanished, good]
    out = tmp_path / "out"
    summary = run(paths, out, tiny_model)
    rows = {Path(r["input"]).name: r for r in report(out)}
    assert rows["good.png"]["status"] == "ok"
    expected = {"text.jpg": "not an image file", "empty.jpg": "empty (0 bytes)", "cut.png": "truncated",
                "folder.jpg": "it is a directory", "vanished.jpg": "no such file"}
    for name, reason in expected.items():
        assert rows[name]["status"] == "load_error", rows[name]
        assert reason in rows[name]["error"] and name in rows[name]["error"]
        assert rows[name]["face"] == "" and not (out / Path(name).stem).exists()
    assert (summary.failed, summary.fitted, summary.statuses["load_error"]) == (5, 1, 5)


def test_no_face_and_tiny_faces_are_refused_with_a_reason(tmp_path, tiny_model):
    paths = make_photos(tmp_path, ["p.png"])
    out = tmp_path / "out"
    summary = run(paths, out, tiny_model, detector_factory=lambda: FakeDetector(()))
    row = report(out)[0]
    assert (row["status"], row["error"]) == ("no_face", f"{paths[0]}: no face found")
    assert not summary.ok and sorted(p.name for p in out.iterdir()) == ["report.csv"]  # no lock file left
    # the fake face's landmark box is 10 cm x 6 px = 60 px
    run(paths, out, tiny_model, min_face_size=61)
    row = report(out)[0]
    assert row["status"] == "face_too_small"
    assert row["error"] == f"{paths[0]}: face too small (60 px landmark box, minimum 61 px)"
    assert not (out / "p").exists()


def test_a_fit_that_diverges_twice_is_reported_without_outputs(tmp_path, tiny_model):
    paths = make_photos(tmp_path, ["p.png", "q.png"])
    out = tmp_path / "out"

    def diverging(real, obs):  # p diverges (also on the retry inside the fit), q succeeds
        result = real(obs)
        if obs.names == ["p.png#0"]:
            result.status, result.retried = ["diverged"], [True]
        return result

    summary = run(paths, out, tiny_model, fit=diverging)
    rows = report(out)
    assert (rows[0]["status"], rows[0]["retried"]) == ("diverged", "1")
    assert "non-finite" in rows[0]["error"] and rows[0]["output"] == ""
    assert rows[1]["status"] == "ok"
    assert not (out / "p").exists() and (out / "q").is_dir()
    assert (summary.ok, summary.statuses["diverged"]) == (False, 1)


def test_a_fit_that_raises_fails_alone(tmp_path, tiny_model):
    paths = make_photos(tmp_path, ["p.png", "q.png"])
    out = tmp_path / "out"

    def failing(real, obs):  # fitted together, then alone: only p fails
        if "p.png#0" in obs.names:
            raise RuntimeError("boom")
        return real(obs)

    run(paths, out, tiny_model, batch.BatchOptions(batch_size=2, outputs=OutputOptions(color="none")), fit=failing)
    rows = report(out)
    assert (rows[0]["status"], rows[1]["status"]) == ("error", "ok")
    assert rows[0]["error"] == "fitting failed: RuntimeError: boom"


def test_batch_size_fits_faces_together_in_input_order(tmp_path, tiny_model):
    paths = make_photos(tmp_path, [f"p{i}.png" for i in range(5)])
    out = tmp_path / "out"
    sizes = []

    def recording(real, obs):
        sizes.append(obs.names)
        return real(obs)

    options = batch.BatchOptions(batch_size=2, outputs=OutputOptions(color="none", overlay=False))
    summary = run(paths, out, tiny_model, options, fit=recording)
    assert sizes == [["p0.png#0", "p1.png#0"], ["p2.png#0", "p3.png#0"], ["p4.png#0"]]
    assert summary.faces == 5 and [r["status"] for r in report(out)] == ["ok"] * 5


def test_faces_all_writes_each_face_with_its_index(tmp_path, tiny_model):
    paths = make_photos(tmp_path, ["group.png"], size=(300, 150))
    out = tmp_path / "out"
    options = batch.BatchOptions(outputs=OutputOptions(color="none", overlay=False))
    summary = run(paths, out, tiny_model, options, detector_factory=two_face_detector, faces="all")
    rows = report(out)
    assert [(r["face"], r["output"], r["status"]) for r in rows] == [
        ("0", "group/face0.obj", "ok"), ("1", "group/face1.obj", "ok")]
    # largest first: face 0 is the one at 7 px/cm, centred at x = 0.7 * 300
    assert float(rows[0]["face_size_px"]) == pytest.approx(70.0) and float(rows[1]["face_size_px"]) == 50.0
    centre = np.array(read_params_json(out / "group" / "face0.json")["landmarks68"]["photo_px"]).mean(0)
    assert centre[0] == pytest.approx(210.0, abs=3.0)
    assert sorted(p.name for p in (out / "group").iterdir()) == [
        "done.json", "face0.json", "face0.obj", "face1.json", "face1.obj"]
    assert summary.faces == 2


@pytest.mark.slow  # worker processes
def test_worker_processes_give_the_same_files_as_inline(tmp_path, tiny_model):
    paths = make_photos(tmp_path, ["p0.png", "p1.png", "p2.png"])
    outputs = OutputOptions(color="vertex", depth=True)
    run(paths, tmp_path / "inline", tiny_model, batch.BatchOptions(batch_size=2, outputs=outputs))
    summary = run(paths, tmp_path / "jobs", tiny_model, batch.BatchOptions(batch_size=2, jobs=2, outputs=outputs))
    assert summary.fitted == 3
    for name in ("p0", "p1", "p2"):
        for file in ("face.obj", "face_overlay.png", "face_depth.png"):
            assert (tmp_path / "inline" / name / file).read_bytes() == (tmp_path / "jobs" / name / file).read_bytes()
        a = read_params_json(tmp_path / "inline" / name / "face.json")
        b = read_params_json(tmp_path / "jobs" / name / "face.json")
        assert {k: v for k, v in a.items() if k != "timings"} == {k: v for k, v in b.items() if k != "timings"}


def test_the_same_inputs_give_the_same_files(tmp_path, tiny_model):
    paths = make_photos(tmp_path, ["p0.png", "p1.png"])
    for out in ("one", "two"):
        run(paths, tmp_path / out, tiny_model, batch.BatchOptions(outputs=OutputOptions(color="vertex", npz=True)))
    for name in ("p0", "p1"):
        for file in ("face.obj", "face_overlay.png"):
            assert (tmp_path / "one" / name / file).read_bytes() == (tmp_path / "two" / name / file).read_bytes()
        a, b = (np.load(tmp_path / out / name / "face.npz") for out in ("one", "two"))
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_a_folder_not_written_by_fit3dmm_is_left_alone_unless_overwrite(tmp_path, tiny_model):
    paths = make_photos(tmp_path, ["p.png"])
    out = tmp_path / "out"
    (out / "p").mkdir(parents=True)
    (out / "p" / "notes.txt").write_text("mine")
    summary = run(paths, out, tiny_model)
    row = report(out)[0]
    assert row["status"] == "error" and "was not written by fit3dmm" in row["error"]
    assert (out / "p" / "notes.txt").read_text() == "mine" and not summary.ok
    run(paths, out, tiny_model, batch.BatchOptions(overwrite=True, outputs=OutputOptions(color="vertex")))
    assert not (out / "p" / "notes.txt").exists() and (out / "p" / batch.MARKER_NAME).is_file()


def test_one_run_at_a_time_and_stale_temporaries_are_removed(tmp_path):
    out = tmp_path / "out"
    with batch.OutputFolder(out) as folder:
        temp = folder.new_temp("x")
        (temp / "face.obj").write_text("half")
        with pytest.raises(OSError, match="another fit3dmm run"), batch.OutputFolder(out):
            pass
    assert temp.is_dir()  # as after a SIGKILL: left behind, hidden
    with batch.OutputFolder(out):
        assert not temp.exists()
    assert not (out / LOCK_NAME).exists()


def test_a_run_that_locks_a_removed_lock_file_takes_the_new_one(tmp_path, monkeypatch):
    """Run B opens the lock file, then run A ends (unlinks and releases it) before B locks: B's lock is on a
    file no longer in the folder, so B must retry on a fresh file, else a third run C could start too."""
    import fcntl

    from fit3dmm.batch import folder as folder_module

    out = tmp_path / "out"
    first = batch.OutputFolder(out).__enter__()
    calls = []

    def flock(fd: int, operation: int) -> None:
        calls.append(os.fstat(fd).st_ino)
        if len(calls) == 1:  # B has opened A's lock file; A ends now
            first.__exit__(None, None, None)
        fcntl.flock(fd, operation)

    monkeypatch.setattr(folder_module, "fcntl", SimpleNamespace(flock=flock, LOCK_EX=fcntl.LOCK_EX,
                                                                LOCK_NB=fcntl.LOCK_NB))
    with batch.OutputFolder(out):
        assert len(calls) == 2 and calls[1] == (out / LOCK_NAME).stat().st_ino
        monkeypatch.undo()
        with pytest.raises(OSError, match="another fit3dmm run"), batch.OutputFolder(out):
            pass
    assert hidden(out) == []


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blobs=st.lists(st.one_of(st.binary(max_size=300),
                                st.binary(max_size=300).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
                                st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff\xe0" + b)),
                      min_size=1, max_size=4))
def test_random_bytes_are_reported_never_raised(tmp_path_factory, tiny_model, blobs):
    folder = tmp_path_factory.mktemp("fuzz")
    paths = []
    for i, blob in enumerate(blobs):
        paths.append(folder / f"f{i}.jpg")
        paths[-1].write_bytes(blob)
    out = folder / "out"
    summary = run(paths, out, tiny_model)
    rows = report(out)
    assert [r["input"] for r in rows] == [str(p) for p in paths]
    for row in rows:
        assert row["status"] in STATUSES
        assert row["status"] == "ok" or (row["error"] and "Traceback" not in row["error"])
    assert summary.photos == len(paths) and hidden(out) == []


def test_select_is_the_batch_item(tiny_model):
    detector = FakeDetector()
    from fit3dmm.api import observe_faces
    from fit3dmm.types.observation import Observation

    photos = [np.zeros((120, 160, 3), np.uint8), np.zeros((100, 200, 3), np.uint8)]
    obs = Observation.stack([observe_faces(p, detector=detector)[0] for p in photos])
    result = fit_observation(tiny_model, obs, WEIGHTS, SCHEDULE)
    one = result.select(1)
    assert one.batch_size == 1 and one.observation.names == [obs.names[1]]
    torch.testing.assert_close(one.vertices_photo[0], result.vertices_photo[1], rtol=0, atol=0)
    assert one.observation.photo_size.tolist() == [[200.0, 100.0]]
    with pytest.raises(IndexError):
        result.select(2)


def test_depth_and_part_maps_match_a_full_frame_render(tmp_path, tiny_model):
    """The maps are rendered over the mesh's window only; the result must equal a full-photo render."""
    labels = np.array([0, 1, 2, 3, 6])
    tiny_model.assets = FaceModelAssets(part_labels=labels)
    photo = np.full((120, 160, 3), 90, np.uint8)
    from fit3dmm.api import observe_faces

    result = fit_observation(tiny_model, observe_faces(photo, detector=FakeDetector())[0], WEIGHTS, SCHEDULE)
    paths = OutputPaths.for_target(tmp_path, depth=True, parts=True)
    save_outputs(result, 0, photo, paths, color="none", extras=MeshExtras.from_model(tiny_model))
    pix = result.vertices_photo.double()
    depth = -result.vertices_cam[..., 2].double()
    full = rasterize(pix, depth, result.triangles, (120, 160))
    expected = full.zbuf[0].numpy()
    got = read_depth_png(paths.depth)
    assert got.shape == (120, 160) and np.isfinite(got).sum() == full.mask.sum() > 100
    np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], atol=0.0051)
    from fit3dmm.types.parts import PART_COLORS

    colours = np.asarray(Image.open(paths.parts))
    face = full.face_index[0].numpy()
    corner = full.bary[0].numpy().argmax(-1)
    owner = labels[result.triangles.numpy()[face, corner]]
    np.testing.assert_array_equal(colours[face >= 0], np.array(PART_COLORS, np.uint8)[owner[face >= 0]])
    assert (colours[face < 0] == 0).all()
    # rendered in 7-pixel tiles: the same maps
    depth_tiles, label_tiles = render_maps(result, 0, labels, tile=7)
    np.testing.assert_array_equal(depth_tiles, np.where(full.mask[0].numpy(), expected, np.inf).astype(np.float32))
    np.testing.assert_array_equal(label_tiles, np.where(face >= 0, owner, -1))


def test_report_is_valid_csv_with_loss_columns(tmp_path):
    rows = [{"input": "a, b.jpg", "status": "ok", "loss_lmk": 1.5, "time_fit_s": 2.0},
            {"input": 'q"uote.jpg', "status": "no_face", "error": "x: no face found"}]
    batch.write_report(tmp_path / "r.csv", rows)
    with open(tmp_path / "r.csv", newline="") as handle:
        parsed = list(csv.reader(handle))
    assert parsed[0] == [*REPORT_COLUMNS, "loss_lmk", *TIME_COLUMNS]
    assert parsed[1][0] == "a, b.jpg" and parsed[2][0] == 'q"uote.jpg'
    assert batch.read_report(tmp_path / "r.csv")[0]["loss_lmk"] == "1.5"


def test_a_failing_commit_is_reported_and_the_run_goes_on(tmp_path, tiny_model, monkeypatch):
    paths = make_photos(tmp_path, ["p0.png", "p1.png"])
    out = tmp_path / "out"
    real = batch.OutputFolder.commit

    def full_disk(self, temp, name, marker):
        if name == "p0":
            raise OSError(28, "No space left on device")
        real(self, temp, name, marker)

    monkeypatch.setattr(batch.OutputFolder, "commit", full_disk)
    options = batch.BatchOptions(outputs=OutputOptions(color="none", overlay=False))
    summary = run(paths, out, tiny_model, options)
    rows = report(out)
    assert [r["status"] for r in rows] == ["error", "ok"] and "No space left" in rows[0]["error"]
    assert not (out / "p0").exists() and (out / "p1" / batch.MARKER_NAME).is_file()
    assert (summary.failed, summary.fitted, hidden(out)) == (1, 1, [])
