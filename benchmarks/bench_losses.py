"""Time the geometric losses at the paper's setting and check the fast PRDL against the dense reference.

A synthetic face on a 224 px crop (a script, not a test; deterministic seed): 8 parts drawn as ellipses and
arcs (face oval for the skin, eyes, eyebrows, lips, nose).  The target C_p are the part's mask pixels
(at most 3000 per part, a fixed random subset, as the observation's point sampling does); the prediction is a
triangulated vertex grid (≈ 2.6 px spacing, ≈ 3000 skin vertices) labelled by part and moved by a small
similarity transform (scale 1.03, rotation 2°, shift (2, −1.5) px), so every loss sees a few-pixel misfit.

For each loss: value, forward+backward wall time (median of ``--repeats`` after a warm-up) and the norm of
the gradient on the projected vertices, raw and times the loss's default weight (how hard it pulls at its
default, compared with PRDL at λ = 0.8e-3).  The dense float64 PRDL runs once (it takes seconds); the fast
PRDL is compared with it at equal inputs: relative difference of value and gradient, and the speed-up; and
with itself at anchor strides 2 and 4 (the coarse grids of the refinement).
Timings on a shared CPU are noisy.  On an oversubscribed machine OpenMP's spinning barrier makes every op of
the fast path cost milliseconds with more than one intra-op thread: there, measure with ``--threads 1`` or
with ``OMP_WAIT_POLICY=PASSIVE`` in the environment.

    python benchmarks/bench_losses.py [--repeats 3] [--size 224] [--device cpu] [--threads N] [--skip-dense]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from fit3dmm.losses.base import Loss, Prediction
from fit3dmm.losses.chamfer import ChamferLoss
from fit3dmm.losses.dcd import DCDLoss
from fit3dmm.losses.icp import ICPLoss, ReverseICPLoss
from fit3dmm.losses.prdl import PRDLLoss
from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES


def ellipse(x: Tensor, y: Tensor, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def part_labels(x: Tensor, y: Tensor, size: int) -> Tensor:
    """Part index per position (−1 outside the face) for the synthetic face on a ``size`` crop."""
    k = size / 224.0
    face = ellipse(x, y, 112 * k, 120 * k, 75 * k, 92 * k)
    label = torch.where(face, PART_INDEX["skin"], -1)
    brow_l = ellipse(x, y, 148 * k, 88 * k, 22 * k, 9 * k) & ~ellipse(x, y, 148 * k, 93 * k, 21 * k, 8 * k)
    brow_r = ellipse(x, y, 76 * k, 88 * k, 22 * k, 9 * k) & ~ellipse(x, y, 76 * k, 93 * k, 21 * k, 8 * k)
    shapes = [
        ("left_eye", ellipse(x, y, 146 * k, 104 * k, 15 * k, 6 * k)),
        ("right_eye", ellipse(x, y, 78 * k, 104 * k, 15 * k, 6 * k)),
        ("left_eyebrow", brow_l),
        ("right_eyebrow", brow_r),
        ("nose", ellipse(x, y, 112 * k, 128 * k, 14 * k, 24 * k)),
        ("up_lip", ellipse(x, y, 112 * k, 166 * k, 26 * k, 6 * k)),
        ("down_lip", ellipse(x, y, 112 * k, 177 * k, 24 * k, 7 * k)),
    ]
    for name, inside in shapes:
        label = torch.where(inside & face, PART_INDEX[name], label)
    return label


def synthetic_face(size: int, device: torch.device) -> tuple[Observation, Prediction]:
    """The benchmark's observation (masks, target point sets) and prediction (mesh, part sets)."""
    gen = torch.Generator().manual_seed(0)
    r, c = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    pix_label = part_labels(c, r, size)
    masks = torch.stack([pix_label == p for p in range(NUM_PARTS)])[None]
    points = {}
    for p, name in enumerate(PART_NAMES):
        rc = (pix_label == p).nonzero().to(torch.float64)
        pick = torch.randperm(rc.shape[0], generator=gen)[:3000].sort().values
        points[name] = PointSet(rc[pick].flip(-1)[None].float(), torch.ones((1, pick.numel()), dtype=torch.bool))
    obs = Observation(
        image=torch.zeros((1, 3, size, size)), crop_to_photo=torch.eye(3)[None],
        photo_size=torch.tensor([[size, size]]), masks=masks, part_weights=torch.ones((1, NUM_PARTS)), points=points,
    ).to(device)

    # a triangulated vertex grid over the face, labelled, then moved by a small similarity transform
    step = 2.6 * size / 224.0
    n = int(size / step) + 1
    gy, gx = torch.meshgrid(torch.arange(n, dtype=torch.float64) * step, torch.arange(n, dtype=torch.float64) * step,
                            indexing="ij")
    vert = torch.stack([gx, gy], -1).reshape(-1, 2)
    vlabel = part_labels(vert[:, 0], vert[:, 1], size)
    i = torch.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).reshape(-1)
    tri = torch.cat([torch.stack([a, a + 1, a + n], -1), torch.stack([a + 1, a + n + 1, a + n], -1)])
    theta, centre = math.radians(2.0), torch.tensor([size / 2, size / 2], dtype=torch.float64)
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    moved = (vert - centre) @ rot.T * 1.03 + centre + torch.tensor([2.0, -1.5], dtype=torch.float64) * size / 224.0
    pts2d = moved[None].float().to(device)
    v = pts2d.shape[1]
    pred = Prediction(
        vertices=torch.zeros((1, v, 3), device=device), vertices_cam=torch.zeros((1, v, 3), device=device),
        points2d=pts2d, depth=torch.ones((1, v), device=device), visible=torch.ones((1, v), dtype=torch.bool,
                                                                                    device=device),
        triangles=tri.to(device), part_labels=vlabel.to(device), landmarks68=torch.zeros((1, 68, 2), device=device),
    )
    return obs, pred


def with_parts(pred: Prediction, points2d: Tensor) -> Prediction:
    """``pred`` with its vertices replaced by ``points2d`` and the part sets V_p taken from them."""
    parts = {}
    for p, name in enumerate(PART_NAMES):
        idx = (pred.part_labels == p).nonzero().flatten()
        parts[name] = PointSet(points2d[:, idx], torch.ones((points2d.shape[0], idx.numel()), dtype=torch.bool,
                                                            device=points2d.device))
    return Prediction(**{**pred.__dict__, "points2d": points2d, "parts": parts})


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def value_and_grad(loss: Loss, pred: Prediction, obs: Observation, dtype: torch.dtype) -> tuple[float, Tensor]:
    x = pred.points2d.detach().to(dtype).requires_grad_()
    value = loss(with_parts(pred, x), obs).sum()
    value.backward()
    return float(value.detach()), x.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-dense", action="store_true", help="skip the slow dense PRDL reference")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    obs, pred = synthetic_face(args.size, device)
    counts = {name: int(obs.points[name].valid.sum()) for name in PART_NAMES}
    vcounts = {name: int((pred.part_labels == p).sum()) for p, name in enumerate(PART_NAMES)}
    print(f"device {device}, torch threads {torch.get_num_threads()}, os cpu count {os.cpu_count()}, "
          f"crop {args.size}², anchors {args.size ** 2}")
    print("target |C_p|: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print("predicted |V_p|: " + ", ".join(f"{k} {v}" for k, v in vcounts.items()))

    losses: dict[str, Loss] = {
        "prdl": PRDLLoss(),
        "icp": ICPLoss(),
        "icp_rev": ReverseICPLoss(),
        "chamfer": ChamferLoss(),
        "dcd": DCDLoss(),
    }
    if importlib.util.find_spec("fit3dmm.losses.softras") is not None:
        from fit3dmm.losses.softras import SoftRasLoss

        losses["softras"] = SoftRasLoss()
    else:
        print("fit3dmm.losses.softras is missing: SoftRas not timed")

    rows = []
    for name, loss in losses.items():
        loss.prepare(obs)
        value, grad = value_and_grad(loss, pred, obs, torch.float32)
        seconds = median_time(lambda loss=loss: value_and_grad(loss, pred, obs, torch.float32), args.repeats, device)
        norm = float(grad.norm())
        rows.append((name, value, seconds, norm, norm * loss.default_weight, loss.default_weight))
    print("\n| loss | value | fwd+bwd (ms) | ‖∂L/∂x‖ | default weight | weight·‖∂L/∂x‖ |")
    print("|---|---|---|---|---|---|")
    for name, value, seconds, norm, wnorm, weight in rows:
        print(f"| {name} | {value:.6g} | {seconds * 1e3:.1f} | {norm:.4g} | {weight:g} | {wnorm:.4g} |")

    print("\nPRDL at coarser anchor grids (the refinement's working resolution is the schedule's stride, default 4):")
    print("| anchor stride | anchors | fwd+bwd (ms) | speed-up | rel. value diff | rel. gradient diff (‖Δg‖/‖g‖) |")
    print("|---|---|---|---|---|---|")
    v_full, g_full, t_full = None, None, None
    for stride in (1, 2, 4):
        loss = PRDLLoss(stride=stride)
        loss.prepare(obs)
        v, g = value_and_grad(loss, pred, obs, torch.float32)
        t = median_time(lambda loss=loss: value_and_grad(loss, pred, obs, torch.float32), args.repeats, device)
        if v_full is None:
            v_full, g_full, t_full = v, g, t
        anchors = math.ceil(args.size / stride) ** 2
        dv, dg = abs(v - v_full) / abs(v_full), float((g - g_full).norm() / g_full.norm())
        print(f"| {stride} | {anchors} | {t * 1e3:.1f} | {t_full / t:.1f}× | {dv:.2e} | {dg:.2e} |")

    if args.skip_dense:
        return
    fast, dense = PRDLLoss(), PRDLLoss(impl="dense")
    fast.prepare(obs)
    dense.prepare(obs)
    start = time.perf_counter()
    v_dense, g_dense = value_and_grad(dense, pred, obs, torch.float64)
    t_dense = time.perf_counter() - start
    print("\nPRDL, fast vs dense reference (dense: float64 brute force, run once)")
    print("| impl | dtype | fwd+bwd (ms) | speed-up | rel. value diff | rel. gradient diff (‖Δg‖/‖g‖) |")
    print("|---|---|---|---|---|---|")
    print(f"| dense | float64 | {t_dense * 1e3:.0f} | 1 | 0 | 0 |")
    for dtype in (torch.float64, torch.float32):
        v, g = value_and_grad(fast, pred, obs, dtype)
        t = median_time(lambda dtype=dtype: value_and_grad(fast, pred, obs, dtype), args.repeats, device)
        dv = abs(v - v_dense) / abs(v_dense)
        dg = float((g.double() - g_dense).norm() / g_dense.norm())
        name = str(dtype).removeprefix("torch.")
        print(f"| fast | {name} | {t * 1e3:.1f} | {t_dense / t:.0f}× | {dv:.2e} | {dg:.2e} |")


if __name__ == "__main__":
    main()
