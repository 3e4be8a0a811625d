"""3D vertex error of fits to rendered faces with known coefficients (the full pipeline: detection, fit).

Run from the repository root:

    python benchmarks/bench_synthetic.py [--count 20] [--seed 0] [--size 448] [--iterations 200]
                                         [--configs "prdl,lmk,reg;lmk,reg;prdl,reg"] [--json PATH]

Face n (n = 0..count-1) is :func:`fit3dmm.synthetic.sample_coefficients` (identity ~ N(0, 0.8²) per
mode, a few active expressions, yaw/pitch/roll uniform within ±40°/±20°/±12°, a translation that frames the
face the way the detector's crop does) drawn by :func:`~fit3dmm.synthetic.render_synthetic` at
``size`` × ``size`` pixels: the whole head with a constant skin colour (a random tone; brows, lips and eyes
tinted), spherical-harmonics shading with random light, over a random colour-gradient background with noise.
Everything is a function of (seed, n).  The render is then treated as a photo: mediapipe detection, the
built-in segmenter, the fit (every configuration from the same rigid start, :func:`fit3dmm.evaluate.evaluate_fits`).

Reported per configuration, over the fitted face region of the model (``face_vertices``: for ICT the face
and the eyeballs): the mean distance between fitted and true vertices in millimetres in the model's own
frame, where identity and expression alone decide it (``none``: no alignment), and after the best rigid
alignment of the fitted onto the true vertices (``rigid``: Kabsch, :func:`fit3dmm.metrics.vertex_error`);
the head-pose error (yaw, pitch, roll MAE).  The first row is the mean face (all coefficients 0) as a
baseline.  Renders in which no face is detected are listed and left out.
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
from fit3dmm.metrics import pose_mae, vertex_error
from fit3dmm.metrics.report import markdown_table
from fit3dmm.models.instances import SyntheticConfig, sample_coefficients
from fit3dmm.models.regressor import CoefficientLayout
from fit3dmm.render.camera import matrix_to_euler
from fit3dmm.synthetic import render_synthetic

MM_PER_CM = 10.0


def render_faces(model, count: int, seed: int, size: int) -> tuple[list[LabelledPhoto], np.ndarray, np.ndarray]:
    """``count`` synthetic photos, their true model-space vertices (N, V, 3) in cm and poses (N, 3) in degrees."""
    layout = CoefficientLayout.for_model(model, size)
    config = SyntheticConfig(size=size, seed=seed)
    region = model.region()
    photos, vertices, poses = [], [], []
    with torch.no_grad():
        for index in range(count):
            coeffs = sample_coefficients(layout, config, index)
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
    row: dict[str, object] = {"config": label, "faces": len(pred), "none (mm)": float(np.mean(none)),
                              "none median (mm)": float(np.median(none)), "rigid (mm)": float(np.mean(rigid)),
                              "rigid median (mm)": float(np.median(rigid))}
    if pose is not None:
        mae = pose_mae(pose, gt_pose)
        row.update({f"{k} (°)": mae[k] for k in ("yaw", "pitch", "roll", "mean")})
    return row, {"none_mm": none, "rigid_mm": rigid}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="number of synthetic faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=448, help="render size in pixels (square)")
    add_fit_options(parser)
    args = parser.parse_args(argv)
    info = machine()
    started = time.perf_counter()
    configs, pipeline = fit_setup(args)
    if pipeline is None:
        return 0
    model = pipeline.model
    photos, truth, gt_poses = render_faces(model, args.count, args.seed, args.size)
    targets, failures = prepare_targets(photos, pipeline, progress=progress_line)
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

    print(f"Synthetic faces: {len(targets)} of {args.count} renders ({args.size} px, seed {args.seed}) detected "
          f"and fitted ({args.model}, {args.iterations} iterations after a shared rigid stage of "
          f"{args.rigid_iterations}); errors over the {len(region)} face-region vertices.\n")
    print(f"Run at commit {info['commit']}, {seconds:.0f} s ({machine_line(info)}).\n")
    columns = list(rows[1]) if len(rows) > 1 else list(rows[0])
    print("Mean vertex distance (mm; none = model frame, no alignment; rigid = after Kabsch alignment) and "
          "head-pose MAE (degrees), means over faces:\n")
    print(markdown_table(rows, columns, floatfmt=".2f"))
    if failures:
        print("\nNo face detected in: " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
    write_json(args.json, {
        "benchmark": "synthetic", "command": command_line("bench_synthetic.py", argv), "commit": info["commit"],
        "machine": info, "seconds": seconds, "count": args.count, "seed": args.seed, "size": args.size,
        "iterations": args.iterations, "faces": evaluation.names, "failures": failures, "gt_pose_deg": gt_poses,
        "rows": rows, "per_face": per_face,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
