"""``fit3dmm fit`` end to end with ICT-FaceKit Light and mediapipe: outputs parsed back, image quirks, bad
input, refusals before work, divergence, several faces, large photos, a killed run and its resume.

Kept fast: lmk,reg losses and a handful of iterations (0 where only detection and writing matter).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from PIL import Image

from fit3dmm.batch import MARKER_NAME, read_report
from fit3dmm.cli import main
from fit3dmm.io.images import read_depth_png
from fit3dmm.io.params import read_params_json
from fit3dmm.models.compact import COMPACT_NPZ
from fit3dmm.models.store import packaged_models_dir
from fit3dmm.observe.image import load_image

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "examples" / "astronaut.jpg"
FAST = ["--loss", "lmk,reg", "--iterations", "3", "--rigid-iterations", "3"]
NO_FIT = ["--loss", "lmk,reg", "--iterations", "0", "--rigid-iterations", "0", "--color", "none", "--no-overlay"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """What a new user has: the model shipped in the package (with its assets), a fresh, empty cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FIT3DMM_MODELS", raising=False)
        patch.setenv("FIT3DMM_CACHE", str(tmp_path_factory.mktemp("cli-cache")))
        yield dict(os.environ)


def fit(*args: object):
    result = CliRunner().invoke(main, ["fit", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def landmarks(folder: Path, stem: str = "face") -> np.ndarray:
    return np.array(read_params_json(folder / f"{stem}.json")["landmarks68"]["photo_px"])


@pytest.fixture(scope="module")
def full_run(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "out"
    result = fit(ASTRONAUT, "--out", out, *FAST, "--npz", "--depth")
    return out, result


def test_batch_outputs_are_complete_and_parse_back(full_run):
    out, result = full_run
    assert result.exit_code == 0, result.output
    assert "1 photos: 1 fitted (1 faces" in result.stdout and f"report: {out / 'report.csv'}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["astronaut", "report.csv"]  # no lock file left
    folder = out / "astronaut"
    marker = json.loads((folder / MARKER_NAME).read_text())
    expected = ["face.obj", "face.mtl", "face_texture.png", "face.json", "face.npz", "face_depth.png",
                "face_overlay.png"]
    assert sorted(marker["files"]) == sorted(expected)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*expected, MARKER_NAME])
    doc = read_params_json(folder / "face.json")
    assert (doc["status"], doc["iterations"], doc["crop"]["photo_size"]) == ("ok", 0, [512, 512])  # no refinement
    (row,) = read_report(out / "report.csv")
    assert (row["status"], row["output"], row["width"], row["iterations"]) == ("ok", "astronaut/face.obj", "512", "0")
    detected_size = float(row["face_size_px"])
    assert 80 < detected_size < 140  # the astronaut's face is about 107 px tall
    assert float(row["loss_lmk"]) == pytest.approx(doc["losses"]["lmk"], rel=1e-5)
    npz = np.load(folder / "face.npz")
    np.testing.assert_allclose(npz["coefficients_identity"], doc["coefficients"]["identity"], rtol=1e-6)
    np.testing.assert_allclose(npz["landmarks68_photo_px"], landmarks(folder), rtol=1e-6)


def test_textured_obj_has_uvs_a_material_and_the_face_in_its_texture(full_run):
    folder = full_run[0] / "astronaut"
    mesh = trimesh.load(folder / "face.obj", process=False)
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.material.image.size == (512, 512)
    assert (mesh.visual.uv >= 0).all() and (mesh.visual.uv <= 1).all()
    assert "map_Kd face_texture.png" in (folder / "face.mtl").read_text()
    vertices = [line for line in (folder / "face.obj").read_text().splitlines() if line.startswith("v ")]
    assert len(vertices) == 26719
    # the texture of the face region comes from the photo: its mean colour is the face's, not grey
    texture = np.asarray(Image.open(folder / "face_texture.png")).astype(float)
    photo = load_image(ASTRONAUT).astype(float)
    lmk = landmarks(folder)
    x0, y0 = lmk.min(0).astype(int)
    x1, y1 = lmk.max(0).astype(int)
    face_mean = photo[y0:y1, x0:x1].reshape(-1, 3).mean(0)
    centre = texture[128:384, 128:384].reshape(-1, 3).mean(0)
    assert np.abs(centre - face_mean).max() < 25, (centre, face_mean)


def test_depth_map_and_overlay_are_at_photo_resolution(full_run):
    folder = full_run[0] / "astronaut"
    depth = read_depth_png(folder / "face_depth.png")
    assert depth.shape == (512, 512)
    lmk = landmarks(folder)
    nose = np.rint(lmk[30]).astype(int)  # iBUG 30: the nose tip
    camera = np.array(read_params_json(folder / "face.json")["landmarks68"]["camera_cm"])
    assert depth[nose[1], nose[0]] == pytest.approx(-camera[30, 2], abs=0.5)
    assert np.isinf(depth[:40, :40]).all() and np.isfinite(depth).sum() > 5000
    overlay = np.asarray(Image.open(folder / "face_overlay.png"))
    photo = load_image(ASTRONAUT)
    assert overlay.shape == photo.shape
    assert (overlay[nose[1] - 10: nose[1] + 10, nose[0] - 10: nose[0] + 10] != photo[
        nose[1] - 10: nose[1] + 10, nose[0] - 10: nose[0] + 10]).any()
    np.testing.assert_array_equal(overlay[400:], photo[400:])  # the suit is left alone


def test_single_mesh_path_gives_the_same_mesh_as_the_batch(full_run, tmp_path):
    out = tmp_path / "me" / "face.obj"
    result = fit(ASTRONAUT, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "face.json", "face.mtl", "face.obj", "face_overlay.png", "face_texture.png"]
    assert "mean 68-landmark distance" in result.stdout
    batch_folder = full_run[0] / "astronaut"
    # same photo, same options: the same bytes (seeded, deterministic)
    for name in ("face.obj", "face_texture.png", "face_overlay.png"):
        assert (out.parent / name).read_bytes() == (batch_folder / name).read_bytes(), name
    a, b = read_params_json(out.parent / "face.json"), read_params_json(batch_folder / "face.json")
    for key in ("coefficients", "pose", "camera", "crop", "landmarks68", "losses"):
        assert a[key] == b[key], key


@pytest.fixture(scope="module")
def mixed_inputs(env, tmp_path_factory):
    """The astronaut as grey, RGBA, 16-bit, CMYK and EXIF-rotated files, and broken files."""
    folder = tmp_path_factory.mktemp("mixed")
    rgb = load_image(ASTRONAUT)
    Image.fromarray(rgb).save(folder / "plain.png")
    Image.fromarray(rgb).convert("L").save(folder / "grey.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:60, :60, 3] = 0
    Image.fromarray(rgba).save(folder / "rgba.png")
    cv2.imwrite(str(folder / "deep.png"), (rgb[..., ::-1].astype(np.uint16) * 257))
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: store the photo rotated the other way
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1))).save(folder / "exif.jpg", exif=exif, quality=95)
    (folder / "text.jpg").write_text("not a photo")
    (folder / "empty.jpg").write_bytes(b"")
    data = ASTRONAUT.read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 3])
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(folder / "blank.png")
    return folder


@pytest.fixture(scope="module")
def mixed_run(mixed_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed-out") / "out"
    result = fit(mixed_inputs, "--out", out, *NO_FIT, "--format", "ply")
    return out, result


def test_image_variants_give_the_same_face(mixed_run):
    out, _ = mixed_run
    rows = {Path(r["input"]).name: r for r in read_report(out / "report.csv")}
    reference = landmarks(out / "plain")
    for name in ("grey.png", "rgba.png", "deep.png", "cmyk.jpg", "exif.jpg"):
        assert rows[name]["status"] == "ok", rows[name]
        assert (rows[name]["width"], rows[name]["height"]) == ("512", "512")
        # the same detections up to what the conversions change: < 2 % of the 107 px face
        shift = np.linalg.norm(landmarks(out / Path(name).stem) - reference, axis=1).mean()
        assert shift < 2.0, (name, shift)
    mesh = trimesh.load(out / "plain" / "face.ply", process=False)
    assert mesh.vertices.shape == (26719, 3) and mesh.visual.vertex_colors.shape == (26719, 4)


def test_bad_files_are_reported_the_run_goes_on_and_fails(mixed_run):
    out, result = mixed_run
    assert result.exit_code == 1
    rows = {Path(r["input"]).name: r for r in read_report(out / "report.csv")}
    expected = {"text.jpg": ("load_error", "not an image file"), "empty.jpg": ("load_error", "empty (0 bytes)"),
                "cut.jpg": ("load_error", "truncated"), "blank.png": ("no_face", "no face found")}
    for name, (status, reason) in expected.items():
        assert rows[name]["status"] == status and reason in rows[name]["error"]
        assert not (out / Path(name).stem).exists()
        (line,) = [line for line in result.stderr.splitlines() if name in line]
        assert line.startswith(f"{status}: ") and reason in line
    assert "Traceback" not in result.output
    assert "10 photos: 6 fitted (6 faces" in result.stdout
    assert "failures by status: load_error 3, no_face 1" in result.stdout


def test_rerun_does_only_what_is_left(mixed_inputs, mixed_run, tmp_path):
    out, _ = mixed_run
    result = fit(mixed_inputs / "plain.png", mixed_inputs / "grey.png", "--out", out, *NO_FIT, "--format", "ply")
    assert result.exit_code == 0, result.output
    assert "2 photos: 0 fitted (0 faces" in result.stdout and "2 already done" in result.stdout
    assert [r["resumed"] for r in read_report(out / "report.csv")] == ["1", "1"]


def test_several_faces_and_too_small_faces(env, tmp_path):
    photo = load_image(ASTRONAUT)[0:300, 156:456]
    face = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512, 3), 200, np.uint8)
    canvas[:256, :256], canvas[256:, 256:] = face, face[:, ::-1]
    Image.fromarray(canvas).save(tmp_path / "two.png")
    small = np.full((400, 400, 3), 200, np.uint8)
    small[:256, :256] = cv2.resize(load_image(ASTRONAUT), (256, 256), interpolation=cv2.INTER_AREA)
    Image.fromarray(small).save(tmp_path / "small.png")
    out = tmp_path / "out"
    result = fit(tmp_path / "two.png", tmp_path / "small.png", "--out", out, *NO_FIT, "--faces", "all",
                 "--min-face-size", "75")
    assert result.exit_code == 1
    rows = read_report(out / "report.csv")
    assert [(Path(r["input"]).name, r["face"], r["status"]) for r in rows] == [
        ("two.png", "0", "ok"), ("two.png", "1", "ok"), ("small.png", "", "face_too_small")]
    assert "minimum 75 px" in rows[2]["error"] and float(rows[0]["face_size_px"]) >= float(rows[1]["face_size_px"])
    centres = [landmarks(out / "two", f"face{i}").mean(0) for i in (0, 1)]
    assert sorted(c[0] > 256 for c in centres) == [False, True]  # one face per quadrant


def test_a_diverging_fit_is_retried_then_reported(env, tmp_path):
    out = tmp_path / "out"
    result = fit(ASTRONAUT, "--out", out, "--loss", "lmk,reg", "--weight", "lmk=1e307", "--color", "none",
                 "--no-overlay")  # the least-squares cost overflows float64
    assert result.exit_code == 1
    (row,) = read_report(out / "report.csv")
    assert (row["status"], row["retried"]) == ("diverged", "1") and "non-finite" in row["error"]
    assert sorted(p.name for p in out.iterdir()) == ["report.csv"]  # and no lock file


@pytest.mark.parametrize(("args", "message"), [
    (["--loss", "lmk,bogus"], "unknown loss 'bogus'"),
    (["--loss", "lmk,reg", "--weight", "reg=-2"], "weight of 'reg' must be a finite number"),
    (["--weight", "reg"], "--weight expects NAME=VALUE"),
    (["--batch-size", "0"], "--batch-size"),
    (["--out-of-nowhere"], "No such option"),
])
def test_invalid_options_are_refused_before_any_work(env, tmp_path, args, message):
    out = tmp_path / "out"
    result = fit(ASTRONAUT, "--out", out, *args)
    assert result.exit_code != 0 and message in result.output
    assert not out.exists()


def test_invalid_combinations_are_refused_before_any_work(env, tmp_path, shared_dir):
    images = shared_dir / "datasets" / "fasseg-frontal" / "images"
    labels = shared_dir / "datasets" / "fasseg-frontal" / "labels"
    out = tmp_path / "out"
    cases = [
        ([ASTRONAUT, images / "test_1.png", "--out", tmp_path / "x.obj"], "a mesh path can only be given for one"),
        ([images / "test_1.png", images / "test_10.png", "--out", out, "--seg", labels / "test_1.png",
          "--seg-format", "fasseg"], "--seg applies to one photo, got 2"),
        ([images / "test_10.png", "--out", out, "--seg", labels / "test_1.png", "--seg-format", "fasseg"],
         "but the photo is"),
        ([tmp_path, "--out", out], "no images in directory"),
        ([tmp_path / "nope.jpg", "--out", out], "no such file or directory"),
    ]
    for args, message in cases:
        result = fit(*args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert not out.exists() and not (tmp_path / "x.obj").exists()


def test_a_resized_label_map_is_reported(env, tmp_path, shared_dir):
    photo = shared_dir / "datasets" / "fasseg-frontal" / "images" / "test_10.png"
    label = tmp_path / "big.png"
    raw = np.asarray(Image.open(shared_dir / "datasets" / "fasseg-frontal" / "labels" / "test_10.png"))
    Image.fromarray(raw.repeat(2, 0).repeat(2, 1)).save(label)
    # the map is checked (and resized) before the model is loaded; lmk,reg then refuses it, after the warning
    result = fit(photo, "--out", tmp_path / "out", "--seg", label, "--seg-format", "fasseg", *NO_FIT)
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert str(label) in warning and "resized from 740×1024 px to the photo's 370×512 px" in warning
    assert result.exit_code == 1 and "uses segmentation" in result.output


def test_a_part_map_of_an_unannotated_model_is_refused(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "fresh-cache"))
    bare = tmp_path / "bare"  # the shipped model without its assets: a model nobody annotated
    bare.mkdir()
    shutil.copyfile(packaged_models_dir() / "ict-facekit-light" / COMPACT_NPZ, bare / COMPACT_NPZ)
    out = tmp_path / "out"
    result = fit(ASTRONAUT, "--out", out, "--parts", "--loss", "reg", "--model", bare)  # no loss that annotates
    assert result.exit_code == 1 and "--parts needs part annotations" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_single_photo_errors_are_one_line(env, tmp_path):
    (tmp_path / "text.jpg").write_text("not a photo")
    result = fit(tmp_path / "text.jpg", "--out", tmp_path / "face.obj", "--loss", "lmk,reg")
    assert result.exit_code == 1
    text = tmp_path / "text.jpg"
    assert result.output.strip() == f"Error: cannot load image {text}: not an image file (unknown format)"
    result = fit(ASTRONAUT, "--out", tmp_path / "face.obj", "--loss", "lmk,reg", "--min-face-size", "300")
    assert result.exit_code == 1 and result.output.strip().startswith("Error: ")
    assert "face too small (" in result.output and "minimum 300 px" in result.output
    assert not (tmp_path / "face.obj").exists()


def _cli(args: list[object], env: dict[str, str], **kwargs) -> subprocess.Popen:
    code = "import sys; from fit3dmm.cli import main; sys.exit(main(['fit', *sys.argv[1:]]))"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


def test_a_large_photo_is_detected_downscaled_and_written_at_full_size(env, tmp_path):
    photo = load_image(ASTRONAUT)
    big = np.full((6000, 8000, 3), 60, np.uint8)
    big[:, 1000:7000] = cv2.resize(photo, (6000, 6000), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.jpg"), big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    del big
    out = tmp_path / "out"
    Image.fromarray(photo).save(tmp_path / "small.png")
    no_fit = ["--loss", "lmk,reg", "--iterations", "0", "--rigid-iterations", "0"]
    process = _cli([tmp_path / "big.jpg", tmp_path / "small.png", "--out", out, *no_fit, "--color", "vertex",
                    "--format", "glb"], env)
    _, stderr = process.communicate(timeout=300)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert process.returncode == 0, stderr.decode()[-2000:]
    row = read_report(out / "report.csv")[0]
    assert (row["width"], row["height"]) == ("8000", "6000")
    # the detector saw a 2048 × 1536 copy; the landmarks are back in the photo's pixels
    scale = 6000 / 512
    assert float(row["face_size_px"]) == pytest.approx(scale * 107.3, rel=0.05)  # the astronaut's face
    lmk = landmarks(out / "big")
    small = landmarks(out / "small")
    np.testing.assert_allclose(lmk, (small + 0.5) * scale - 0.5 + [1000, 0], atol=0.02 * scale * 107)
    mesh = trimesh.load(out / "big" / "face.glb", force="mesh", process=False)
    assert len(mesh.vertices) == 26719 and mesh.visual.vertex_colors.shape == (26719, 4)
    # the overlay is a preview at most 2048 px long
    assert Image.open(out / "big" / "face_overlay.png").size == (2048, 1536)
    # memory: the photo is 144 MB and its decoding needs about 0.5 GB; a z-buffer over the whole photo for
    # the vertex colours would add about 1.9 GB (face index, barycentrics and depth per pixel)
    assert peak_mb < 2000, peak_mb


def test_a_killed_run_leaves_only_complete_folders_and_resumes(env, tmp_path, shared_dir):
    images = sorted((shared_dir / "datasets" / "aflw2000-16" / "images").glob("*.jpg"))[:5]
    out = tmp_path / "out"
    process = _cli([*images, "--out", out, *NO_FIT], env)
    deadline = time.monotonic() + 240
    def complete() -> set[str]:  # renamed folders only: a temporary one holds done.json just before its rename
        return {p.parent.name for p in out.glob(f"*/{MARKER_NAME}") if not p.parent.name.startswith(".")}

    while not complete():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    for folder in out.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            marker = json.loads((folder / MARKER_NAME).read_text())
            assert sorted(p.name for p in folder.iterdir()) == sorted([*marker["files"], MARKER_NAME])
    done = complete()
    result = fit(*images, "--out", out, *NO_FIT)
    assert result.exit_code == 0, result.output
    rows = read_report(out / "report.csv")
    assert sorted(Path(r["input"]).stem for r in rows if r["resumed"] == "1") == sorted(done)
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)
    assert [p.name for p in out.iterdir() if p.name.startswith(".fit3dmm-")] == []


def test_the_python_api_warns_about_a_resized_label_map(env, tmp_path, shared_dir):
    import fit3dmm

    photo = shared_dir / "datasets" / "fasseg-frontal" / "images" / "test_10.png"
    label = tmp_path / "big.png"
    raw = np.asarray(Image.open(shared_dir / "datasets" / "fasseg-frontal" / "labels" / "test_10.png"))
    Image.fromarray(raw.repeat(2, 0).repeat(2, 1)).save(label)
    with pytest.warns(UserWarning, match="resized from 740×1024 px to the photo's 370×512 px"):
        assert len(fit3dmm.observe_faces(photo, seg=label, seg_format="fasseg")) == 1
