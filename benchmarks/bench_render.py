"""Time the pure-torch renderers on the ICT-FaceKit face region (a script, not a test).

The neutral ICT face is placed with its 68-landmark centroid at (0, 0, −110) cm in front of the default crop
camera (f = 1015 px at 224 px), which frames the landmarks over ≈ 60 % of the crop as in Deep3DFaceRecon.
Prints the median wall and CPU time of each stage over ``--repeats`` runs and the machine's core count; on
a shared machine the wall times are noisy.

    python benchmarks/bench_render.py [--shared ../shared] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fit3dmm.models.ict import load_ict
from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.render.rasterize import rasterize, vertex_visibility
from fit3dmm.render.shading import render_shaded, vertex_normals
from fit3dmm.render.soft import ndc_sigma_to_pixels, soft_silhouettes
from fit3dmm.types.parts import NUM_PARTS


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, float]:
    """Median wall and process-CPU seconds of ``fn`` over ``repeats`` runs after one warm-up run.

    On a loaded machine the CPU time (all threads of this process) is the steadier of the two.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def report(what: str, times: tuple[float, float]) -> None:
    print(f"{what}: {1e3 * times[0]:.1f} ms wall, {1e3 * times[1]:.1f} ms CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[1].parent / "shared"
    parser.add_argument("--shared", default=os.environ.get("FIT3DMM_SHARED", str(shared)),
                        help="folder holding face-models/")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    size = (224, 224)

    model = load_ict(Path(args.shared) / "face-models" / "ict-facekit-light", num_identity=1).to(device)
    triangles = model.face_triangles()
    verts = model().vertices
    verts = verts - verts[:, model.landmarks68].mean(1, keepdim=True) + verts.new_tensor([0.0, 0.0, -110.0])
    # synthetic part labels for the benchmark (ICT is not part-annotated): 8 vertical bands of the face
    y = verts[0, :, 1]
    edges = torch.quantile(y[model.face_vertices], torch.linspace(0, 1, NUM_PARTS + 1, device=device)[1:-1])
    tri_labels = torch.bucketize(y.contiguous(), edges)[triangles].mode(dim=1).values

    print(f"torch {torch.__version__}, device {device}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads")
    print(f"ICT face region: {int(model.face_vertices.numel())} vertices, {triangles.shape[0]} triangles; "
          f"full model: {model.num_vertices} vertices, {model.triangles.shape[0]} triangles")
    for side in (224, 1024):
        cam = PerspectiveCamera.for_crop(side, device=device)
        points, depth = cam.project(verts)
        covered = int(rasterize(points, depth, triangles, (side, side)).mask.sum())
        report(f"rasterize {side}² face region ({covered} px covered)",
               median_time(lambda p=points, d=depth, s=side: rasterize(p, d, triangles, (s, s)), args.repeats,
                           device))
    cam = PerspectiveCamera.for_crop(224, device=device)
    points, depth = cam.project(verts)
    normals = vertex_normals(verts, model.triangles)
    for name, tris in (("face region", triangles), ("full model", model.triangles)):
        report(f"vertex_visibility 224² {name}",
               median_time(lambda tr=tris: vertex_visibility(points, depth, tr, size, normals), args.repeats,
                           device))
    report("render_shaded 224² face region",
           median_time(lambda: render_shaded(points, depth, triangles, normals, size), args.repeats, device))

    sigma = ndc_sigma_to_pixels(1e-4, size)
    leaf = points.detach().requires_grad_(True)

    def soft_step() -> None:
        sil = soft_silhouettes(leaf, triangles, tri_labels, NUM_PARTS, size, sigma)
        sil.sum().backward()

    report(f"soft_silhouettes 224², {NUM_PARTS} parts, σ = 1e-4 NDC ({sigma:.3f} px²), forward+backward",
           median_time(soft_step, args.repeats, device))


if __name__ == "__main__":
    main()
