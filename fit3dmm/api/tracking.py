"""``fit3dmm track``: a video or image sequence → one identity, per-frame expressions and pose, animation files.

Stages (:mod:`fit3dmm.fitting.tracking` holds the maths):

1. **identity**: up to ``candidates`` frames spread evenly over the input are fitted alone (landmarks and
   prior); the ``keyframes`` that differ most in pose and expression are fitted again together with one
   identity shared by all (:func:`~fit3dmm.fitting.tracking.fit_shared_identity`), which is then held fixed;
2. **tracking**: every frame, in order, in mediapipe's tracking mode, starts from the previous frame and takes
   a few Levenberg–Marquardt steps on pose and expression against the landmarks, the prior and a pull towards
   the previous frame (:meth:`~fit3dmm.fitting.problem.FitProblem.follow`), then, with a geometric loss
   (``--loss prdl,...``), a few refinement steps; a frame without a usable face is a gap (the next face
   starts afresh);
3. **outputs** (:mod:`fit3dmm.io.track_files`, :mod:`fit3dmm.io.gltf`): ``blendshapes.csv``,
   ``live_link_face.csv``, ``identity.json``, ``track.json``, ``curves.png``, ``overlay.mp4``, ``animation.glb``
   and, on request, ``meshes/``.

The frames are processed in chunks of ``chunk`` frames, each saved to ``OUT/.track/`` when done (with the
detector started afresh at each chunk), so that a rerun resumes at the first unfinished chunk and gives the
same files as an uninterrupted run; Ctrl-C writes the output files for the frames done and keeps the state.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from fit3dmm.api.functions import landmark_error
from fit3dmm.api.pipeline import Pipeline
from fit3dmm.defaults import DEFAULT_MODEL
from fit3dmm.fitting.lm import TemporalPrior
from fit3dmm.fitting.problem import LEAST_SQUARES_TERMS, FitProblem
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.fitting.tracking import TrackCamera, choose_keyframes, fit_shared_identity
from fit3dmm.io.atomic import atomic_write
from fit3dmm.io.gltf import write_animated_glb
from fit3dmm.io.mesh import write_mesh
from fit3dmm.io.outputs import render_overlay
from fit3dmm.io.track_files import (
    OverlayVideo,
    plot_track_curves,
    read_track_json,
    write_blendshapes_csv,
    write_identity_json,
    write_live_link_csv,
    write_track_json,
)
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.detect import MediaPipeDetector
from fit3dmm.observe.observe import FaceTooSmallError, NoFaceError, ObserveOptions, observe_photo
from fit3dmm.observe.video import open_frames
from fit3dmm.render.camera import axis_angle_to_matrix, matrix_to_euler
from fit3dmm.types.observation import Observation
from fit3dmm.types.track import TRACK_FILLED, TRACK_NO_FACE, TRACK_OK, TrackFrame, TrackIdentity

STATE = ".track"
OUTPUTS = ("blendshapes.csv", "live_link_face.csv", "identity.json", "track.json", "curves.png", "animation.glb")
Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each tracked frame."""


@dataclass(frozen=True)
class TrackOptions:
    """What to track and how.

    Attributes:
        start, end, step: input frames ``start, start + step, ... < end`` (input indices).
        fps: frames per second of a frame folder (videos give their own).
        keyframes: frames the identity is fitted on, jointly; candidates: frames examined to choose them.
        identity_iterations: Levenberg–Marquardt iterations of the joint identity fit.
        iterations: Levenberg–Marquardt iterations per frame; refine_iterations: geometric-loss steps per
            frame when the losses have one, on PRDL's anchor grid of stride ``refine_stride``; skin_points: the
            size of the skin's target set (farthest point sampling, :class:`~fit3dmm.observe.ObserveOptions`).
            With PRDL, 1 step at stride 4 with 1000 skin points ran at 3.1 frames/s on the calibration video
            with the blendshape error of 3 steps with the paper's 3000 points at 1.6 frames/s (0.0475 vs
            0.0471); the previous frame's refinement carries over, so the steps add up along the track.
        expression_smoothing: weight of the pull of each frame's expression towards the previous frame's
            (per unit weight, squared; the landmark term weighs ~1/30 per landmark and noise σ²): 250, chosen
            on a calibration video (seed 7, 60 frames at 256 px; not the benchmark's seeds) among 0, 2, 10, 50,
            250, 1000, 4000 as the lowest blendshape error (jitter 0.0198 per-frame → 0.0011; the truth's own
            0.0005; 1000 and more smooth the motion away); pose_smoothing: of the translation (per cm) and
            rotation (per radian).
        fill: interpolate gaps from their neighbours (status ``filled``); overlay: write ``overlay.mp4``;
            meshes: write one OBJ per frame into ``meshes/``.
        chunk: frames per saved chunk (the resume granularity).
    """

    start: int = 0
    end: int | None = None
    step: int = 1
    fps: float | None = None
    keyframes: int = 8
    candidates: int = 48
    identity_iterations: int = 20
    iterations: int = 5
    refine_iterations: int = 1
    refine_stride: int = 4
    skin_points: int = 1000
    expression_smoothing: float = 250.0
    pose_smoothing: float = 1.0
    fill: bool = False
    overlay: bool = True
    meshes: bool = False
    chunk: int = 100


@dataclass
class TrackSummary:
    """What :func:`track` did: the frames by status, the identity, the timings (s) and the files written."""

    frames: list[TrackFrame]
    identity: TrackIdentity
    timings: dict[str, float]
    files: list[Path]
    resumed_from: int = 0
    interrupted: bool = False

    @property
    def tracked(self) -> int:
        return sum(f.status == TRACK_OK for f in self.frames)


def track(input: str | Path, out: str | Path, *, model: str | Path = DEFAULT_MODEL, losses: str = "lmk,reg",
          weights: dict[str, float] | None = None, options: TrackOptions | None = None,
          device: str | torch.device | None = "auto", overwrite: bool = False,
          progress: Progress | None = None) -> TrackSummary:
    """Track the face of a video file, a folder of frames or a glob into ``out`` (see the module doc).

    Raises:
        VideoError: unreadable, empty or corrupt input (one line naming it).
        NoFaceError: no face in any of the frames examined for the identity.
        FileExistsError: ``out`` holds a track of other settings (``overwrite`` replaces it).
    """
    options = options or TrackOptions()
    out = Path(out)
    pipeline = Pipeline.create(model=model, losses=losses, weights=weights, device=device,
                               schedule=Schedule(iterations=options.refine_iterations),
                               observe=ObserveOptions(skin_points=options.skin_points))
    if "lmk" not in pipeline.weights:
        raise ValueError(f"tracking needs the landmark term: add lmk to the losses ({losses})")
    with open_frames(input, options.start, options.end, options.step, fps=options.fps) as source:
        key = _settings_key(input, source, pipeline, options)
        state = out / STATE
        previous_key = _read_key(out)
        if previous_key not in (None, key):
            if not overwrite:
                raise FileExistsError(f"{out}: holds a track of other input or settings "
                                      "(--overwrite / overwrite=True replaces it)")
            shutil.rmtree(state, ignore_errors=True)
        elif previous_key == key and not state.exists() and not overwrite:
            return _completed(out)
        state.mkdir(parents=True, exist_ok=True)
        (state / "key.txt").write_text(key)
        timings: dict[str, float] = {}
        begin = time.perf_counter()
        identity, camera = _identity_stage(input, source, pipeline, options, state)
        timings["identity"] = time.perf_counter() - begin
        tracker = _Tracker(pipeline, identity, camera, options)
        total, described = source.count, source.describe()
    frames, resumed, interrupted, truncated_at = _tracking_stage(input, total, tracker, options, state, out,
                                                                 progress, timings)
    described["truncated_at"] = truncated_at
    frames = fill_gaps(frames) if options.fill else frames
    begin = time.perf_counter()
    meta = {"input": described, "settings": {"key": key, **asdict(options), "weights": pipeline.weights}}
    files = _write_outputs(out, state, identity, frames, meta, pipeline.model, options, tracker.last_chunk_count)
    timings["write"] = time.perf_counter() - begin
    if not interrupted:
        shutil.rmtree(state, ignore_errors=True)
    summary = TrackSummary(frames, identity, timings, files, resumed, interrupted)
    if interrupted:
        raise TrackInterrupted(summary)
    return summary


def _completed(out: Path) -> TrackSummary:
    """The summary of the complete track in ``out`` (a rerun of the same command: nothing to do)."""
    identity, frames = read_track_json(out / "track.json")
    files = [out / name for name in OUTPUTS if (out / name).is_file()]
    files += sorted(out.glob("overlay.*"))
    return TrackSummary(frames, identity, {}, files, resumed_from=len(frames))


class TrackInterrupted(KeyboardInterrupt):
    """Ctrl-C during tracking: the files for the frames done are written; ``summary`` says what was done."""

    def __init__(self, summary: TrackSummary) -> None:
        super().__init__(f"interrupted after {len(summary.frames)} frames")
        self.summary = summary


# ------------------------------------------------------------------------------------------ state
def _settings_key(input: str | Path, source, pipeline: Pipeline, options: TrackOptions) -> str:
    """A checksum of what the track depends on: input, frame selection, model, losses and options."""
    text = json.dumps({"input": str(Path(input).resolve()) if Path(input).exists() else str(input),
                       "count": source.count, "size": list(source.size), "model": pipeline.model.checksum,
                       "weights": pipeline.weights, "options": asdict(replace(options, fill=False, overlay=False,
                                                                             meshes=False))}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_key(out: Path) -> str | None:
    path = out / STATE / "key.txt"
    if path.is_file():
        return path.read_text().strip()
    if (out / "track.json").is_file():
        return json.loads((out / "track.json").read_text()).get("settings", {}).get("key")
    return None


# ------------------------------------------------------------------------------------------ identity
def _identity_stage(input, source, pipeline: Pipeline, options: TrackOptions,
                    state: Path) -> tuple[TrackIdentity, TrackCamera]:
    """The shared identity and the track camera (read from ``state`` when an earlier run saved them)."""
    saved = state / "identity.npz"
    model = pipeline.model
    if saved.is_file():
        with np.load(saved, allow_pickle=False) as data:
            identity = TrackIdentity(data["identity"], model.describe(), list(model.expression_names),
                                     [int(k) for k in data["keyframes"]], float(data["focal"]),
                                     (int(data["size"][0]), int(data["size"][1])), float(data["fps"]))
            return identity, TrackCamera(float(data["focal"]), tuple(float(c) for c in data["principal"]))
    positions = np.unique(np.linspace(0, max(source.count - 1, 0), min(options.candidates, source.count)).round())
    wanted = {int(p) for p in positions}
    observations, fits = [], []
    schedule = replace(pipeline.schedule, iterations=0)
    weights = {k: v for k, v in pipeline.weights.items() if k in LEAST_SQUARES_TERMS}
    parts = None
    landmarks_only = replace(pipeline.observe_options, segment=False)
    with MediaPipeDetector(max_faces=1) as detector:
        for position, frame in enumerate(source):
            if position > max(wanted):
                break
            if position not in wanted:
                continue
            try:  # landmarks only: the identity is fitted to them
                (obs,) = observe_photo(frame.image, detector, landmarks_only, name=f"{input}@{frame.index}")
            except (NoFaceError, FaceTooSmallError):
                continue
            problem = FitProblem(model, obs, schedule, parts=parts)
            parts = problem.parts
            objective = problem.objective(weights)
            params = problem.start()
            problem.rigid(params)
            problem.landmarks(params, objective)
            pose = matrix_to_euler(params.rotation_matrix()).detach()[0].cpu().numpy()
            observations.append((frame.index, obs))
            fits.append((pose, params.as_dict()))
    if not observations:
        raise NoFaceError(f"{input}: no face found in any of the {len(wanted)} frames examined")
    chosen = choose_keyframes(np.stack([p[:2] for p, _ in fits]),
                              np.stack([c["expression"][0].cpu().numpy() for _, c in fits]), options.keyframes)
    keyframes = Observation.stack([observations[i][1] for i in chosen])
    problem = FitProblem(model, keyframes, schedule, parts=parts)
    objective = problem.objective(weights)
    init = {name: torch.cat([fits[i][1][name] for i in chosen]) for name in ("rotation", "translation",
                                                                               "expression")}
    init["identity"] = torch.cat([fits[i][1]["identity"] for i in chosen]).mean(0, keepdim=True).expand(
        len(chosen), -1)
    params = problem.start(init)
    ls = problem.least_squares(objective.weights, objective)
    shared, _ = fit_shared_identity(ls, problem.state(params), options.identity_iterations)
    camera = TrackCamera.of([observations[i][1] for i in chosen], source.size)
    identity = TrackIdentity(shared.identity[0].float().cpu().numpy(), model.describe(),
                             list(model.expression_names), sorted(observations[i][0] for i in chosen),
                             camera.focal, tuple(source.size), float(source.fps))
    with atomic_write(saved) as handle:
        np.savez(handle, identity=identity.identity, keyframes=np.array(identity.keyframes), focal=camera.focal,
                 principal=np.array(camera.principal), size=np.array(identity.photo_size), fps=identity.fps)
    return identity, camera


# ------------------------------------------------------------------------------------------ tracking
class _Tracker:
    """Fits one frame after another with the identity held (see the module doc)."""

    def __init__(self, pipeline: Pipeline, identity: TrackIdentity, camera: TrackCamera,
                 options: TrackOptions) -> None:
        self.pipeline, self.camera, self.options = pipeline, camera, options
        model = pipeline.model
        self.identity = torch.as_tensor(identity.identity, device=model.mean.device)[None]
        self.refines = not set(pipeline.weights) <= LEAST_SQUARES_TERMS and options.refine_iterations > 0
        self.schedule = replace(pipeline.schedule, iterations=options.refine_iterations if self.refines else 0,
                                rigid_iterations=10, strides=(options.refine_stride,))
        self.parts = None
        self.objective = None
        self.summary = None
        self.previous: dict[str, torch.Tensor] | None = None  # pose and expression in the track camera
        self.last_chunk_count = 0

    def frame(self, obs: Observation):
        """Fit one frame; returns (FitResult, the state to carry to the next frame)."""
        problem = FitProblem(self.pipeline.model, obs, self.schedule, parts=self.parts)
        self.parts = problem.parts
        if self.objective is None:
            self.objective = problem.objective(self.pipeline.weights)
            self.summary = problem.objective({k: v for k, v in self.pipeline.weights.items()
                                              if k in LEAST_SQUARES_TERMS})
        objective = self.objective
        temporal = None
        if self.previous is None:
            params = problem.start({"identity": self.identity})
            problem.rigid(params)
        else:
            translation = self.camera.to_crop(self.previous["translation"], problem.observation)
            params = problem.start({"identity": self.identity, "expression": self.previous["expression"],
                                    "rotation": self.previous["rotation"], "translation": translation})
            o = self.options
            temporal = TemporalPrior(self.previous["expression"].double(), translation.double(),
                                     axis_angle_to_matrix(self.previous["rotation"]).double(),
                                     torch.ones(1, dtype=torch.bool, device=translation.device),
                                     o.expression_smoothing, o.pose_smoothing, o.pose_smoothing)
        problem.follow(params, objective, temporal, self.options.iterations if temporal is not None else 20)
        refinement = problem.refine(params, objective, temporal, hold_identity=True) if self.refines else None
        # the result's final loss values: the landmark and prior terms only (PRDL's at its finest grid would
        # cost more than the frame's fit)
        result = problem.result(params, self.summary, refinement)
        coefficients = params.as_dict()
        self.previous = {"expression": coefficients["expression"].detach(),
                         "rotation": coefficients["rotation"].detach(),
                         "translation": self.camera.from_crop(coefficients["translation"].detach(),
                                                              problem.observation)}
        return result


def _record(frame, result, tracker: _Tracker) -> TrackFrame:
    prev = tracker.previous
    return TrackFrame(frame.index, frame.time, TRACK_OK,
                      prev["expression"][0].float().cpu().numpy(), prev["rotation"][0].float().cpu().numpy(),
                      prev["translation"][0].float().cpu().numpy(), result.pose_deg[0].float().cpu().numpy(),
                      float(landmark_error(result)))


def _tracking_stage(input, total: int, tracker: _Tracker, options: TrackOptions, state: Path, out: Path,
                    progress: Progress | None, timings: dict[str, float]
                    ) -> tuple[list[TrackFrame], int, bool, int | None]:
    """Track every selected frame (``total`` of them), chunk by chunk, from the first chunk not saved in
    ``state``; returns the frames, the position resumed from, whether Ctrl-C stopped it and the input index
    of a frame that could not be decoded (the pass stopped there; None when none)."""
    frames: list[TrackFrame] = []
    done_chunks = 0
    while (state / f"chunk{done_chunks:05d}.npz").is_file():
        loaded, carry = _load_chunk(state / f"chunk{done_chunks:05d}.npz")
        frames.extend(loaded)
        tracker.previous = carry
        done_chunks += 1
    resumed = len(frames)
    num_e = tracker.pipeline.model.num_expression
    begin = time.perf_counter()
    interrupted = False
    chunk: list[TrackFrame] = []
    video = None
    detector = None
    source = open_frames(input, options.start + resumed * options.step, options.end, options.step, fps=options.fps)
    try:
        for position, frame in enumerate(source, start=resumed):
            if position % options.chunk == 0:
                if detector is not None:
                    detector.close()
                detector = MediaPipeDetector(max_faces=1, video=True)
                if options.overlay:
                    video = _ChunkVideo(state / f"overlay{position // options.chunk:05d}.mp4", source.fps)
            try:
                (obs,) = tracker.pipeline.observe(frame.image, detector, name=f"{input}@{frame.index}")
            except (NoFaceError, FaceTooSmallError):
                tracker.previous = None
                record, result = TrackFrame.gap(frame.index, frame.time, num_e), None
            else:
                result = tracker.frame(obs)
                record = _record(frame, result, tracker)
            chunk.append(record)
            if video is not None:
                video.write(frame.image if result is None else render_overlay(frame.image, result, 0))
            if options.meshes and result is not None:
                _write_frame_mesh(out / "meshes", frame.index, result)
            if progress is not None:
                progress(position + 1, total)
            if len(chunk) == options.chunk:
                if video is not None:
                    video.close(None)
                    video = None
                _save_chunk(state / f"chunk{position // options.chunk:05d}.npz", chunk, tracker.previous)
                frames.extend(chunk)
                chunk = []
    except KeyboardInterrupt as stop:
        interrupted = True
        if video is not None:
            video.close(stop)
            video = None
    finally:
        source.close()
        if detector is not None:
            detector.close()
    if chunk and not interrupted:
        if video is not None:
            video.close(None)
        _save_chunk(state / f"chunk{(len(frames)) // options.chunk:05d}.npz", chunk, tracker.previous)
    frames.extend(chunk)
    tracker.last_chunk_count = -(-len(frames) // options.chunk)
    timings["track"] = time.perf_counter() - begin
    timings["frames_tracked_here"] = float(len(frames) - resumed)
    return frames, resumed, interrupted, source.truncated_at


def _save_chunk(path: Path, chunk: list[TrackFrame], carry: dict[str, torch.Tensor] | None) -> None:
    arrays = {
        "frame": np.array([f.frame for f in chunk]), "time": np.array([f.time for f in chunk]),
        "status": np.array([f.status for f in chunk]), "expression": np.stack([f.expression for f in chunk]),
        "rotation": np.stack([f.rotation for f in chunk]), "translation": np.stack([f.translation for f in chunk]),
        "pose_deg": np.stack([f.pose_deg for f in chunk]),
        "landmark_error": np.array([f.landmark_error for f in chunk]),
    }
    if carry is not None:
        arrays.update({f"carry_{k}": v.cpu().numpy() for k, v in carry.items()})
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def _load_chunk(path: Path) -> tuple[list[TrackFrame], dict[str, torch.Tensor] | None]:
    with np.load(path, allow_pickle=False) as d:
        frames = [TrackFrame(int(d["frame"][i]), float(d["time"][i]), str(d["status"][i]), d["expression"][i],
                             d["rotation"][i], d["translation"][i], d["pose_deg"][i], float(d["landmark_error"][i]))
                  for i in range(len(d["frame"]))]
        carry = {k[6:]: torch.from_numpy(d[k]) for k in d.files if k.startswith("carry_")} or None
    return frames, carry


class _ChunkVideo:
    """The overlay video of one chunk, opened at its first frame (whose size it takes); ``close(None)`` keeps
    it, ``close(exc)`` removes it."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.video: OverlayVideo | None = None

    @property
    def written(self) -> Path:
        """The file written (``.avi`` where OpenCV had no mp4v writer)."""
        return self.path if self.video is None else self.video.path

    def write(self, image: np.ndarray) -> None:
        if self.video is None:
            self.video = OverlayVideo(self.path, self.fps, (image.shape[1], image.shape[0])).__enter__()
        self.video.write(image)

    def close(self, exc: BaseException | None) -> None:
        if self.video is not None:
            self.video.__exit__(None if exc is None else type(exc), exc, None)


def _write_frame_mesh(folder: Path, index: int, result) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_mesh(folder / f"frame{index:06d}.obj", result.vertices[0].detach().cpu().numpy(),
               result.triangles.cpu().numpy())


def fill_gaps(frames: list[TrackFrame]) -> list[TrackFrame]:
    """Gaps between two tracked frames interpolated linearly in time (status ``filled``); gaps at the ends
    stay gaps."""
    ok = [i for i, f in enumerate(frames) if f.status == TRACK_OK]
    filled = list(frames)
    for a, b in pairwise(ok):
        for i in range(a + 1, b):
            w = (frames[i].time - frames[a].time) / max(frames[b].time - frames[a].time, 1e-12)

            def mix(name: str, a: int = a, b: int = b, w: float = w) -> np.ndarray:
                return ((1 - w) * getattr(frames[a], name) + w * getattr(frames[b], name)).astype(np.float32)

            filled[i] = TrackFrame(frames[i].frame, frames[i].time, TRACK_FILLED, mix("expression"),
                                   mix("rotation"), mix("translation"), mix("pose_deg"))
    return filled


# ------------------------------------------------------------------------------------------ outputs
def _write_outputs(out: Path, state: Path, identity: TrackIdentity, frames: list[TrackFrame], meta: dict,
                   model: FaceModel, options: TrackOptions, chunks: int) -> list[Path]:
    """Every output file for ``frames`` (each written atomically); ``meta`` = the input and the settings."""
    names = identity.expression_names
    files = [out / name for name in OUTPUTS]
    write_blendshapes_csv(files[0], frames, names)
    write_live_link_csv(files[1], frames, names, identity.fps)
    write_identity_json(files[2], identity)
    write_track_json(files[3], identity, frames, meta)
    plot_track_curves(files[4], frames, names)
    with torch.no_grad():
        rest = model(torch.as_tensor(identity.identity, device=model.mean.device)[None]).vertices[0]
    ok = [f for f in frames if f.status in (TRACK_OK, TRACK_FILLED)]
    if ok:
        rotations = torch.as_tensor(np.stack([f.rotation for f in ok]))
        write_animated_glb(files[5], rest.cpu().numpy(), model.triangles.cpu().numpy(),
                           model.expression_basis.cpu().numpy(), names, np.array([f.time for f in ok]),
                           np.stack([f.expression for f in ok]), rotations=_quaternions(rotations),
                           translations=np.stack([f.translation for f in ok]))
    else:
        files.remove(files[5])
    if options.overlay:  # OverlayVideo falls back to Motion JPEG .avi where OpenCV has no mp4v writer
        chunk_videos = [next(iter(sorted(state.glob(f"overlay{i:05d}.*"))), None) for i in range(chunks)]
        if chunk_videos and all(chunk_videos):
            files.append(_concatenate(chunk_videos, out / f"overlay{chunk_videos[0].suffix}", identity.fps))
    return files


def _quaternions(axis_angle: torch.Tensor) -> np.ndarray:
    """(N, 3) axis-angle → (N, 4) unit quaternions x, y, z, w (glTF's order)."""
    angle = axis_angle.double().norm(dim=1, keepdim=True)
    axis = axis_angle.double() / angle.clamp_min(1e-12)
    return torch.cat([axis * torch.sin(angle / 2), torch.cos(angle / 2)], dim=1).float().numpy()


def _concatenate(parts: list[Path], dest: Path, fps: float) -> Path:
    """One video of the chunk videos ``parts``, in order; returns the file written."""
    video = _ChunkVideo(dest, fps)
    try:
        for part in parts:
            with open_frames(part) as frames:
                for frame in frames:
                    video.write(frame.image)
    except BaseException as exc:
        video.close(exc)
        raise
    video.close(None)
    return video.written


__all__ = ["TRACK_NO_FACE", "TrackInterrupted", "TrackOptions", "TrackSummary", "track"]
