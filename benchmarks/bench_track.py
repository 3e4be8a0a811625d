"""Tracking a synthetic video with known coefficients: `fit3dmm track` against independent per-frame fits.

Run from the repository root:

    python benchmarks/bench_track.py [--frames 240] [--seed 0] [--size 256] [--configs "lmk,reg;prdl,lmk,reg"]
                                     [--smoothing W] [--no-per-frame] [--json PATH]

The video: :func:`fit3dmm.synthetic.smooth_trajectory` (one identity, 8 expressions moving as sums of
0.2–0.8 Hz sinusoids, yaw/pitch/roll within ±30/12/8° at 0.1–0.3 Hz, a slow drift), every frame rendered by
:func:`~fit3dmm.models.instances.render_instance` with one appearance (seed, 0) at ``size`` × ``size`` pixels
and written as PNG frames (30 fps).  Each configuration is run twice: ``fit3dmm track`` (identity over
keyframes, then every frame from the previous one with the temporal pull), and the same frames fitted one by
one with the same losses (``fit3dmm fit``'s path, each from the mean face).  Reported against the truth:
blendshape MAE (mean |ψ − ψ*| over frames and the 53 weights), pose MAE (yaw, pitch, roll, degrees), jitter
(mean |ψ_{t+1} − 2ψ_t + ψ_{t−1}| over weights and frames; the truth's own is listed), frames without a face,
and speed: frames per second of the tracking stage (detection and fitting; after the identity stage; decoding
PNGs included: 2.4 ms a frame at 256 px, measured apart), without the overlay video (``--overlay`` adds it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import command_line, create_pipeline, machine, machine_line, progress_line, write_json

from fit3dmm.api.tracking import TrackOptions, track
from fit3dmm.io.images import write_png
from fit3dmm.models.instances import render_instance, to_uint8
from fit3dmm.models.regressor import CoefficientLayout
from fit3dmm.observe.detect import MediaPipeDetector
from fit3dmm.observe.observe import NoFaceError
from fit3dmm.render.camera import matrix_to_euler
from fit3dmm.synthetic import smooth_trajectory


def render_video(model, frames: int, seed: int, size: int, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Write the frames as PNGs; returns the true expressions (N, E) and poses (N, 3) in degrees."""
    layout = CoefficientLayout.for_model(model, size)
    coeffs = smooth_trajectory(layout, frames, seed)
    for i, c in enumerate(coeffs):
        write_png(folder / f"frame{i:05d}.png", to_uint8(render_instance(model, c, size, (seed, 0)).image))
    expression = torch.cat([c.expression for c in coeffs]).numpy()
    pose = torch.cat([matrix_to_euler(c.rotation_matrix()) for c in coeffs]).numpy()
    return expression, pose


def per_frame_fits(folder: Path, pipeline, num_expression: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Each frame fitted alone (NaN rows where no face is found); returns expressions, poses, seconds/frame."""
    paths = sorted(folder.glob("*.png"))
    expression = np.full((len(paths), num_expression), np.nan)
    pose = np.full((len(paths), 3), np.nan)
    from fit3dmm.observe.image import load_image

    start = time.perf_counter()
    with MediaPipeDetector(max_faces=1) as detector:
        for i, path in enumerate(paths):
            try:
                (obs,) = pipeline.observe(load_image(path), detector, name=path.name)
            except NoFaceError:
                continue
            result = pipeline.fit(obs)
            expression[i] = result.coefficients["expression"][0].cpu().numpy()
            pose[i] = result.pose_deg[0].cpu().numpy()
    return expression, pose, (time.perf_counter() - start) / len(paths)


def scores(expression: np.ndarray, pose: np.ndarray, true_expression: np.ndarray,
           true_pose: np.ndarray) -> dict[str, float]:
    """Blendshape MAE, pose MAE and jitter over the frames with a face."""
    found = ~np.isnan(expression).any(1)
    jitter_rows = found[2:] & found[1:-1] & found[:-2]
    second = expression[2:] - 2 * expression[1:-1] + expression[:-2]
    return {"blendshape_mae": float(np.abs(expression[found] - true_expression[found]).mean()),
            "pose_mae_deg": float(np.abs(pose[found] - true_pose[found]).mean()),
            "jitter": float(np.abs(second[jitter_rows]).mean()) if jitter_rows.any() else float("nan"),
            "missing": int((~found).sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--configs", default="lmk,reg;prdl,lmk,reg")
    parser.add_argument("--smoothing", type=float, default=None, help="expression smoothing weight to use")
    parser.add_argument("--no-per-frame", action="store_true", help="skip the per-frame fits")
    parser.add_argument("--overlay", action="store_true", help="also write the overlay video while timing")
    parser.add_argument("--model", default="ict")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the command line (defaults.CPU_THREADS)
    info = machine()
    configs = [c.strip() for c in args.configs.split(";") if c.strip()]
    base = create_pipeline(model=args.model, losses=",".join(sorted({t for c in configs for t in c.split(",")})),
                           device="cpu")
    if base is None:
        return 0
    model = base.model
    rows, data = [], {"machine": info, "command": command_line("bench_track.py", argv), "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "frames"
        folder.mkdir()
        progress_line(f"rendering {args.frames} frames")
        true_expression, true_pose = render_video(model, args.frames, args.seed, args.size, folder)
        truth_jitter = scores(true_expression, true_pose, true_expression, true_pose)["jitter"]
        options = TrackOptions(overlay=args.overlay)
        if args.smoothing is not None:
            options = TrackOptions(overlay=args.overlay, expression_smoothing=args.smoothing)
        for config in configs:
            progress_line(f"tracking with {config}")
            summary = track(folder, Path(tmp) / f"track-{config}", model=model, losses=config, options=options,
                            device="cpu")
            frames = summary.frames
            expression = np.stack([f.expression for f in frames]).astype(np.float64)
            pose = np.stack([f.pose_deg for f in frames]).astype(np.float64)
            tracked = scores(expression, pose, true_expression, true_pose)
            tracked["frames_per_s"] = summary.timings["frames_tracked_here"] / summary.timings["track"]
            tracked["identity_s"] = summary.timings["identity"]
            entry = {"track": tracked}
            rows.append((config, "track", tracked))
            if not args.no_per_frame:
                progress_line(f"per-frame fits with {config}")
                pipeline = create_pipeline(model=model, losses=config, device="cpu")
                e, p, seconds = per_frame_fits(folder, pipeline, model.num_expression)
                alone = scores(e, p, true_expression, true_pose)
                alone["frames_per_s"] = 1.0 / seconds
                entry["per_frame"] = alone
                rows.append((config, "per-frame fit", alone))
            data["configs"][config] = entry
    data["truth_jitter"] = truth_jitter
    print(f"{args.frames} frames at {args.size} px (seed {args.seed}); the truth's own jitter {truth_jitter:.4f}; "
          f"{machine_line(info)}\n")
    print("| losses | method | blendshape MAE | pose MAE (°) | jitter | no face | frames/s |")
    print("|---|---|---|---|---|---|---|")
    for config, method, s in rows:
        print(f"| {config} | {method} | {s['blendshape_mae']:.4f} | {s['pose_mae_deg']:.2f} | {s['jitter']:.4f} | "
              f"{s['missing']} | {s['frames_per_s']:.1f} |")
    write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
