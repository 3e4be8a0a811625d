"""3D vertex error of fits to rendered faces with known coefficients (the full pipeline: detection, fit).

Run from the repository root:

    python benchmarks/bench_synthetic.py [--count 20] [--seed 0] [--size 448] [--yaw LO HI] [--iterations 20]
                                         [--configs "prdl,lmk,reg;lmk,reg;prdl,reg"] [--json PATH]

Face n (n = 0..count-1) is :func:`fit3dmm.synthetic.sample_coefficients` (identity ~ N(0, 0.8²) per mode, a few
active expressions, yaw/pitch/roll uniform within ±40°/±20°/±12°, a translation that frames the face the way the
detector's crop does) drawn by :func:`~fit3dmm.synthetic.render_synthetic` at ``size`` × ``size`` pixels: the
whole head with a constant skin colour (a random tone; brows, lips and eyes tinted), spherical-harmonics shading
with random light, over a random colour-gradient background with noise. Everything is a function of (seed, n).
``--yaw 60 90`` redraws every yaw with |yaw| in [60°, 90°] (profiles; the fraction of faces within 5° of the
true yaw is reported). The render is then treated as a photo: mediapipe detection, the built-in segmenter, the
fit (every configuration from the same rigid start, :func:`fit3dmm.evaluate.evaluate_fits`).

Reported per configuration, over the fitted face region of the model (``face_vertices``: for ICT the face
and the eyeballs): the mean distance between fitted and true vertices in millimetres in the model's own
frame, where identity and expression alone decide it (``none``: no alignment), and after the best rigid
alignment of the fitted onto the true vertices (``rigid``: Kabsch, :func:`fit3dmm.metrics.vertex_error`) and
after the best similarity (``similarity``: Umeyama, scale too, as NoW scores); the size error, |fitted/true
− 1| of the faces' RMS radius (a single photo hardly tells a big far face from a small near one); the
head-pose error (yaw, pitch, roll MAE); and each error as a fraction of the mean face's.  The first row is
the mean face (all coefficients 0) as a baseline.  Renders in which no face is detected are listed and left out.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from common import (
    add_fit_options,
    command_line,
    fit_setup,
    machine,
    machine_line,
    progress_line,
    write_json,
)

from fit3dmm.evaluate import LabelledPhoto, evaluate_fits, prepare_targets
from fit3dmm.metrics import pose_mae, vertex_error, wrap_degrees
from fit3dmm.metrics.report import markdown_table
from fit3dmm.models.instances import SyntheticConfig, sample_coefficients
from fit3dmm.models.regressor import CoefficientLayout
from fit3dmm.render.camera import euler_to_matrix, matrix_to_axis_angle, matrix_to_euler
from fit3dmm.synthetic import render_synthetic

MM_PER_CM = 10.0


def render_faces(model, count: int, seed: int, size: int, yaw_range: tuple[float, float] | None = None
                 ) -> tuple[list[LabelledPhoto], np.ndarray, np.ndarray]:
    """``count`` synthetic photos, their true model-space vertices (N, V, 3) in cm and poses (N, 3) in degrees;
    with ``yaw_range`` (lo, hi) each face's yaw is redrawn with |yaw| uniform in [lo, hi], either side."""
    layout = CoefficientLayout.for_model(model, size)
    config = SyntheticConfig(size=size, seed=seed)
    region = model.region()
    photos, vertices, poses = [], [], []
    with torch.no_grad():
        for index in range(count):
            coeffs = sample_coefficients(layout, config, index)
            if yaw_range is not None:
                gen = np.random.default_rng((seed, index, 90))
                ypr = matrix_to_euler(coeffs.rotation_matrix())
                ypr[:, 0] = float(gen.uniform(*yaw_range) * gen.choice([-1.0, 1.0]))
                coeffs.rotation = matrix_to_axis_angle(euler_to_matrix(ypr))
            obs = render_synthetic(model, coeffs, size, (seed, index), region=region)
            photo = (obs.image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
            photos.append(LabelledPhoto(f"synthetic_{index:03d}", photo))
            vertices.append(model(coeffs.identity.to(model.mean.device),
                                  coeffs.expression.to(model.mean.device)).vertices[0].cpu().numpy())
            poses.append(matrix_to_euler(coeffs.rotation_matrix())[0].cpu().numpy())
    return photos, np.stack(vertices), np.stack(poses).astype(np.float64)


def error_row(label: str, fitted: np.ndarray, truth: np.ndarray, region: np.ndarray,
              pose: np.ndarray | None, gt_pose: np.ndarray) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """A table row (mm, degrees) and the per-face errors."""
    pred, gt = fitted[:, region].astype(np.float64), truth[:, region].astype(np.float64)
    none = MM_PER_CM * vertex_error(pred, gt, "none")
    rigid = MM_PER_CM * vertex_error(pred, gt, "rigid")
    similarity = MM_PER_CM * vertex_error(pred, gt, "similarity")
    size = radius(pred) / radius(gt)
    row: dict[str, object] = {"config": label, "faces": len(pred), "none (mm)": float(np.mean(none)),
                              "none median (mm)": float(np.median(none)), "rigid (mm)": float(np.mean(rigid)),
                              "similarity (mm)": float(np.mean(similarity)),
                              "similarity median (mm)": float(np.median(similarity)),
                              "size error (%)": float(100 * np.mean(np.abs(size - 1)))}
    if pose is not None:
        mae = pose_mae(pose, gt_pose)
        row.update({f"{k} (°)": mae[k] for k in ("yaw", "pitch", "roll", "mean")})
        row["yaw within 5°"] = float(np.mean(np.abs(wrap_degrees(pose[:, 0] - gt_pose[:, 0])) <= 5.0))
    return row, {"none_mm": none, "rigid_mm": rigid, "similarity_mm": similarity, "size_ratio": size}


def radius(vertices: np.ndarray) -> np.ndarray:
    """(N,) root-mean-square distance of each face's vertices (N, V, 3) from their centroid: its size."""
    centred = vertices - vertices.mean(axis=1, keepdims=True)
    return np.sqrt((centred ** 2).sum(-1).mean(-1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="number of synthetic faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=448, help="render size in pixels (square)")
    parser.add_argument("--yaw", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                        help="draw |yaw| uniformly in [LO, HI] degrees (profiles: --yaw 60 90)")
    add_fit_options(parser)
    args = parser.parse_args(argv)
    info = machine()
    started = time.perf_counter()
    configs, pipeline = fit_setup(args)
    if pipeline is None:
        return 0
    model = pipeline.model
    photos, truth, gt_poses = render_faces(model, args.count, args.seed, args.size,
                                           None if args.yaw is None else tuple(args.yaw))
    targets, failures = prepare_targets(photos, pipeline, progress=progress_line)
    if not targets:  # nothing to score: say so (run.py shows it) rather than fail
        print(f"No face detected in any of the {args.count} renders (seed {args.seed}"
              f"{'' if args.yaw is None else f', |yaw| in [{args.yaw[0]:g}, {args.yaw[1]:g}]°'}).")
        return 0
    kept = [int(t.name.rsplit("_", 1)[1]) for t in targets]
    truth, gt_poses = truth[kept], gt_poses[kept]
    evaluation = evaluate_fits(pipeline, targets, configs, batch_size=args.batch, keep_vertices=True,
                               progress=progress_line)
    seconds = time.perf_counter() - started
    region = model.face_vertices.cpu().numpy()
    mean_face = np.broadcast_to(model.mean.cpu().numpy(), truth.shape)
    rows, per_face = [], {}
    row, errors = error_row("mean face (no fit)", mean_face, truth, region, None, gt_poses)
    rows.append(row)
    per_face["mean face"] = errors
    for run in evaluation.runs:
        row, errors = error_row(f"fit {run.name}", run.vertices, truth, region, run.pose_deg, gt_poses)
        rows.append(row)
        per_face[run.name] = {**errors, "pose_deg": run.pose_deg, "status": run.status}

    yaws = "" if args.yaw is None else f", |yaw| drawn in [{args.yaw[0]:g}, {args.yaw[1]:g}]°"
    print(f"Synthetic faces: {len(targets)} of {args.count} renders ({args.size} px, seed {args.seed}{yaws}) detected "
          f"and fitted ({args.model}, {args.iterations} iterations after a shared rigid stage of "
          f"{args.rigid_iterations}); errors over the {len(region)} face-region vertices.\n")
    print(f"Run at commit {info['commit']}, {seconds:.0f} s ({machine_line(info)}).\n")
    columns = list(rows[1]) if len(rows) > 1 else list(rows[0])
    print("Mean vertex distance (mm; none = model frame, no alignment; rigid = after Kabsch alignment) and "
          "head-pose MAE (degrees), means over faces:\n")
    print(markdown_table(rows, columns, floatfmt=".2f"))
    base = rows[0]
    print("\nRelative to the mean face (mean error of the fit / mean error of the mean face):\n")
    ratios = [{"config": r["config"], **{k: r[k] / base[k] for k in ("none (mm)", "rigid (mm)", "similarity (mm)")}}
              for r in rows[1:]]
    print(markdown_table(ratios, ["config", "none (mm)", "rigid (mm)", "similarity (mm)"], floatfmt=".2f"))
    if failures:
        print("\nNo face detected in: " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
    write_json(args.json, {
        "benchmark": "synthetic", "command": command_line("bench_synthetic.py", argv), "commit": info["commit"],
        "machine": info, "seconds": seconds, "count": args.count, "seed": args.seed, "size": args.size,
        "yaw": args.yaw,
        "iterations": args.iterations, "faces": evaluation.names, "failures": failures, "gt_pose_deg": gt_poses,
        "rows": rows, "ratios_to_mean_face": ratios, "per_face": per_face,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
