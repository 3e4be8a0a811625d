"""Tracking: keyframes, the shared identity, the track camera, and `fit3dmm track` end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fit3dmm.fitting.landmarks import LandmarkBasis, LandmarkSupport
from fit3dmm.fitting.lm import LandmarkLeastSquares, LandmarkPrior, PoseShape
from fit3dmm.fitting.tracking import TrackCamera, choose_keyframes, fit_shared_identity
from fit3dmm.render.camera import PerspectiveCamera, euler_to_matrix
from fit3dmm.types.observation import Observation

SIZE = 224


def test_keyframes_are_the_farthest_points_from_the_most_frontal():
    rng = np.random.default_rng(0)
    pose = rng.uniform(-40, 40, size=(30, 2))
    pose[7] = [1.0, -0.5]  # the most frontal
    expression = rng.uniform(0, 1, size=(30, 5))
    chosen = choose_keyframes(pose, expression, 6)
    features = np.concatenate([pose / 30.0, expression], axis=1)
    expected = [7]  # greedy farthest point sampling, by hand
    for _ in range(5):
        distance = np.min([np.linalg.norm(features - features[i], axis=1) for i in expected], axis=0)
        expected.append(int(np.argmax(distance)))
    assert chosen.tolist() == expected
    assert choose_keyframes(pose[:4], expression[:4], 6).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="count"):
        choose_keyframes(pose, expression, 0)


def _problem(model, targets, prior=1e-6):
    basis = LandmarkBasis(model, LandmarkSupport.of(model))
    weights = LandmarkPrior(1.0, prior, model.identity_std, model.expression_std, 1.0)
    return LandmarkLeastSquares(basis, PerspectiveCamera.for_crop(SIZE, targets.shape[0]), targets,
                                torch.ones(targets.shape[:2], dtype=torch.bool), weights, SIZE,
                                model.expression_range)


def _state(model, frames, seed):
    gen = torch.Generator().manual_seed(seed)
    pose = torch.tensor([[25.0, -5.0, 3.0], [-20.0, 8.0, -4.0], [0.0, 0.0, 0.0]])[:frames]
    identity = 0.6 * torch.randn(1, model.num_identity, generator=gen).double()
    return PoseShape(euler_to_matrix(pose).double(), torch.tensor([[0.5, -1.0, -110.0]]).double().repeat(frames, 1),
                     identity.repeat(frames, 1),
                     (0.05 + 0.5 * torch.rand(frames, model.num_expression, generator=gen)).double())


def test_shared_identity_fits_every_keyframe_and_counts_the_prior_once(annotated_ict):
    region = annotated_ict.region()
    truth = _state(region, 3, seed=1)
    basis = LandmarkBasis(region, LandmarkSupport.of(region))
    points, _ = basis(truth.identity, truth.expression)
    cam = points.double() @ truth.rotation.transpose(1, 2) + truth.translation[:, None]
    targets, _ = PerspectiveCamera.for_crop(SIZE, 3, dtype=torch.float64).project(cam)
    ls = _problem(region, targets)
    start = PoseShape(truth.rotation, truth.translation + torch.tensor([0.3, -0.2, 2.0]).double(),
                      torch.zeros_like(truth.identity), torch.full_like(truth.expression, 0.2))
    state, cost = fit_shared_identity(ls, start, iterations=30)
    assert torch.equal(state.identity, state.identity[:1].expand_as(state.identity))  # one identity
    r = ls.residuals(state)
    n, k = 2 * basis.num_landmarks, region.num_identity
    landmark_rms = float(r[:, :n].pow(2).mean().sqrt())
    assert landmark_rms < 0.05  # noiseless targets: the landmark residual nearly vanishes (scaled px)
    once = float(r.pow(2).sum() - r[:, n: n + k].pow(2).sum() + r[0, n: n + k].pow(2).sum())
    assert cost == pytest.approx(once, rel=1e-9)
    with pytest.raises(ValueError, match="one identity"):
        fit_shared_identity(ls, PoseShape(start.rotation, start.translation, truth.identity + torch.rand_like(
            truth.identity), start.expression), 1)


def _observation(left: float, top: float, side: float) -> Observation:
    """A crop of side ``side`` photo px at (left, top), as observe_face makes it."""
    scale = side / SIZE
    to_photo = torch.tensor([[[scale, 0.0, left + 0.5 * scale - 0.5], [0.0, scale, top + 0.5 * scale - 0.5],
                              [0.0, 0.0, 1.0]]], dtype=torch.float64)
    return Observation(torch.zeros(1, 3, SIZE, SIZE), to_photo, torch.tensor([[640.0, 480.0]]))


def test_track_camera_keeps_where_the_head_projects_and_its_size():
    a, b = _observation(200, 100, 180), _observation(260, 140, 240)
    camera = TrackCamera.of([a, b], (640, 480))
    crop = PerspectiveCamera.for_crop(SIZE, 1, dtype=torch.float64)
    assert camera.focal == pytest.approx(np.median([crop.focal.item() * 180 / SIZE, crop.focal.item() * 240 / SIZE]))
    t_a = torch.tensor([[1.5, -2.0, -105.0]], dtype=torch.float64)
    t_track = camera.from_crop(t_a, a)
    # the head origin lands on the same photo pixel in crop a's camera and in the track camera
    pix_a = a.crop_points_to_photo(crop.project(t_a[:, None])[0])[0, 0]
    u = camera.principal[0] + camera.focal * t_track[0, 0] / -t_track[0, 2]
    v = camera.principal[1] - camera.focal * t_track[0, 1] / -t_track[0, 2]
    torch.testing.assert_close(torch.stack([u, v]), pix_a)
    # and its apparent size (focal / depth) is kept
    focal_a = crop.focal.item() * 180 / SIZE
    assert focal_a / -t_a[0, 2] == pytest.approx(camera.focal / -t_track[0, 2].item())
    # into another crop and back
    t_b = camera.to_crop(t_track, b)
    pix_b = b.crop_points_to_photo(crop.project(t_b[:, None])[0])[0, 0]
    torch.testing.assert_close(pix_b, pix_a)
    torch.testing.assert_close(camera.from_crop(t_b, b), t_track)


# ------------------------------------------------------------------------------------------ end to end
FRAMES, GAP = 30, range(12, 15)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A synthetic sequence of the shipped model (known coefficients) with blank frames 12..14 (a lost face)."""
    from fit3dmm.io.images import write_png
    from fit3dmm.models.instances import render_instance, to_uint8
    from fit3dmm.models.regressor import CoefficientLayout
    from fit3dmm.models.store import load_model, packaged_models_dir
    from fit3dmm.synthetic import smooth_trajectory

    folder = tmp_path_factory.mktemp("video") / "frames"
    folder.mkdir()
    model = load_model(str(packaged_models_dir() / "ict-facekit-light"))
    coeffs = smooth_trajectory(CoefficientLayout.for_model(model, 192), FRAMES, seed=11)
    for i, c in enumerate(coeffs):
        image = to_uint8(render_instance(model, c, 192, (11, 0)).image)
        write_png(folder / f"f{i:03d}.png", np.full_like(image, 90) if i in GAP else image)
    return folder


def _track(folder, out, **options):
    from fit3dmm.api.tracking import TrackOptions, track
    from fit3dmm.models.store import packaged_models_dir

    settings = {"chunk": 8, "keyframes": 4, "candidates": 10, "overlay": True, **options}
    return track(folder, out, model=str(packaged_models_dir() / "ict-facekit-light"), device="cpu",
                 options=TrackOptions(**settings))


@pytest.fixture(scope="module")
def whole(video, tmp_path_factory):
    """The sequence tracked without interruption: (summary, output folder)."""
    out = tmp_path_factory.mktemp("whole") / "out"
    return _track(video, out), out


@pytest.mark.slow  # mediapipe
def test_track_writes_every_file_reports_the_gap_and_recovers(whole):
    from fit3dmm.io.gltf import read_glb
    from fit3dmm.io.track_files import read_track_json

    summary, out = whole
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["blendshapes.csv", "live_link_face.csv", "identity.json", "track.json", "curves.png", "overlay.mp4",
         "animation.glb"])  # the state folder is gone once the track is complete
    status = [f.status for f in summary.frames]
    assert [i for i, s in enumerate(status) if s != "ok"] == list(GAP)  # reported, not interpolated
    assert status[GAP[-1] + 1:] == ["ok"] * (FRAMES - GAP[-1] - 1)  # and the track recovers
    with open(out / "blendshapes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = summary.identity.expression_names
    assert len(rows) == FRAMES and list(rows[0])[:3] == ["frame", "time", "status"]
    assert list(rows[0])[3: 3 + len(names)] == names and list(rows[0])[-7:] == [
        "yaw", "pitch", "roll", "tx", "ty", "tz", "landmark_error"]
    assert rows[GAP[0]]["status"] == "no_face" and rows[GAP[0]][names[0]] == ""
    identity, frames = read_track_json(out / "track.json")
    assert len(frames) == FRAMES and np.isnan(frames[GAP[0]].expression).all()
    np.testing.assert_allclose(identity.identity, summary.identity.identity, rtol=1e-6)
    assert json.loads((out / "identity.json").read_text())["model"]["checksum"] == summary.identity.model["checksum"]
    doc, _ = read_glb(out / "animation.glb")
    (mesh,) = doc["meshes"]
    assert len(mesh["primitives"][0]["targets"]) == len(names) == 53 and mesh["extras"]["targetNames"] == names
    weights = [c for c in doc["animations"][0]["channels"] if c["target"]["path"] == "weights"]
    sampler = doc["animations"][0]["samplers"][weights[0]["sampler"]]
    assert doc["accessors"][sampler["input"]]["count"] == FRAMES - len(GAP)  # gaps have no keyframe
    import cv2

    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()


@pytest.mark.slow  # mediapipe
def test_an_interrupted_track_resumes_to_the_same_files(video, whole, tmp_path):
    from fit3dmm.api.tracking import TrackInterrupted, TrackOptions, track
    from fit3dmm.models.store import packaged_models_dir

    whole = whole[1]

    def stop_at_20(done: int, total: int) -> None:
        if done == 20:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(TrackInterrupted) as info:
        track(video, part, model=str(packaged_models_dir() / "ict-facekit-light"), device="cpu",
              options=TrackOptions(chunk=8, keyframes=4, candidates=10), progress=stop_at_20)
    assert len(info.value.summary.frames) == 20  # complete files for the frames done ...
    with open(part / "blendshapes.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 20
    assert (part / ".track").is_dir()  # ... and the state to resume from
    summary = _track(video, part)
    assert summary.resumed_from == 16  # two complete chunks of 8 were kept
    for name in ("blendshapes.csv", "live_link_face.csv", "identity.json", "animation.glb"):
        assert (part / name).read_bytes() == (whole / name).read_bytes(), name
    strip = [json.loads((d / "track.json").read_text()) for d in (whole, part)]
    assert strip[0]["frames"] == strip[1]["frames"]
    before = {p.name: p.stat().st_mtime_ns for p in part.iterdir()}
    again = _track(video, part)  # the same command once more: nothing to do
    assert again.resumed_from == FRAMES and {p.name: p.stat().st_mtime_ns for p in part.iterdir()} == before


@pytest.mark.slow  # the CLI loads torch
@pytest.mark.parametrize("content", [b"", b"\x00not a video at all" * 64])
def test_a_corrupt_or_empty_video_is_one_line(tmp_path, content):
    from fit3dmm.cli import main

    bad = tmp_path / "clip.mp4"
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["track", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and str(bad) in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # mediapipe
def test_tracking_with_prdl_holds_the_identity(video, tmp_path):
    """The PRDL steps of each frame move pose and expression only: every frame keeps the keyframes' identity."""
    from fit3dmm.api.tracking import TrackOptions, track
    from fit3dmm.models.store import packaged_models_dir

    summary = track(video, tmp_path / "out", model=str(packaged_models_dir() / "ict-facekit-light"),
                    losses="prdl,lmk,reg", device="cpu",
                    options=TrackOptions(end=8, chunk=8, keyframes=3, candidates=4, overlay=False, meshes=True))
    assert [f.status for f in summary.frames] == ["ok"] * 8
    meshes = sorted((tmp_path / "out" / "meshes").glob("*.obj"))
    assert [p.name for p in meshes] == [f"frame{i:06d}.obj" for i in range(8)]
    import trimesh

    from fit3dmm.models.store import load_model

    model = load_model(str(packaged_models_dir() / "ict-facekit-light"))
    identity = torch.as_tensor(summary.identity.identity)[None]
    for frame, mesh in zip(summary.frames, meshes, strict=True):  # each mesh: the shared identity + its weights
        expected = model(identity, torch.as_tensor(frame.expression)[None]).vertices[0].detach().numpy()
        written = trimesh.load(mesh, process=False).vertices
        np.testing.assert_allclose(written, expected[: len(written)], atol=2e-4)  # OBJ: used vertices (a prefix)
    with pytest.raises(ValueError, match="needs the landmark term"):
        track(video, tmp_path / "other", model=str(packaged_models_dir() / "ict-facekit-light"), losses="prdl,reg",
              device="cpu")


def test_fill_interpolates_gaps_between_tracked_frames_only():
    from fit3dmm.api.tracking import fill_gaps
    from fit3dmm.types.track import TrackFrame

    def ok(i: int, value: float) -> TrackFrame:
        v = np.full(3, value, np.float32)
        return TrackFrame(i, i / 10, "ok", np.full(2, value, np.float32), v, v, v)

    frames = [TrackFrame.gap(0, 0.0, 2), ok(1, 1.0), TrackFrame.gap(2, 0.2, 2), TrackFrame.gap(3, 0.3, 2),
              ok(4, 4.0), TrackFrame.gap(5, 0.5, 2)]
    filled = fill_gaps(frames)
    assert [f.status for f in filled] == ["no_face", "ok", "filled", "filled", "ok", "no_face"]  # ends stay gaps
    np.testing.assert_allclose(filled[2].expression, [2.0, 2.0], rtol=1e-6)  # linear in time
    np.testing.assert_allclose(filled[3].translation, [3.0, 3.0, 3.0], rtol=1e-6)
    assert np.isnan(filled[5].expression).all()
