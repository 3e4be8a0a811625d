"""Batch throughput of ``fit3dmm fit DIR --out OUT`` (a script, not a test): photos per second for several
batch sizes (faces fitted at once) and worker counts, through :func:`fit3dmm.batch.run_batch`, the code path
of the command line.

Input: the 16 AFLW2000-3D photos of the shared data (``--dataset fasseg``: the FASSEG frontal photos), the
``lmk,reg`` losses, the default schedule and the default outputs (textured OBJ,
parameters JSON, overlay PNG).  The model is loaded once, outside the timings, and one photo is run first,
untimed, to warm up; each configuration writes a fresh temporary folder, so its time includes the start-up
of a run (detector, texture bake mask, worker processes), detection, fitting, writing and the report.
Prints a Markdown table: wall time, photos per second, process CPU time (this process; worker processes not
included) and the mean per-photo stage times from the report (fit time is the batch's time shared among its
faces).  On a shared CPU the wall times are noisy.

    python benchmarks/bench_batch.py [--batch-sizes 1,4,16] [--jobs 0] [--limit N] [--iterations 20]
        [--rigid-iterations 5] [--dataset aflw|fasseg] [--device cpu] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import command_line, default_shared, machine, machine_line, progress_line, write_json

from fit3dmm import defaults
from fit3dmm.api import Pipeline, Schedule
from fit3dmm.batch import BatchOptions, read_report, run_batch
from fit3dmm.observe.image import find_images

DATASETS = {"aflw": "datasets/aflw2000-16/images", "fasseg": "datasets/fasseg-frontal/images"}


def measure(paths: list[Path], pipeline: Pipeline, options: BatchOptions) -> dict[str, float]:
    """Run one batch into a temporary folder; wall and CPU seconds, photos per second, mean stage times."""
    with tempfile.TemporaryDirectory() as folder:
        start, cpu = time.perf_counter(), time.process_time()
        summary = run_batch(paths, Path(folder) / "out", pipeline, options)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        rows = read_report(Path(folder) / "out" / "report.csv")
    ok = [r for r in rows if r["status"] == "ok"]

    def mean(key: str) -> float:
        return statistics.fmean(float(r[key]) for r in ok) if ok else float("nan")

    return {"photos": len(paths), "ok": len(ok), "wall_s": wall, "cpu_s": cpu, "photos_per_s": len(paths) / wall,
            "detect_s": mean("time_detect_s"), "fit_s": mean("time_fit_s"), "write_s": mean("time_write_s"),
            "landmark_error_px": mean("landmark_error_px"), "failed": summary.failed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="aflw")
    parser.add_argument("--limit", type=int, default=0, help="use the first N photos (0: all)")
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--jobs", default="0", help="comma-separated worker counts")
    parser.add_argument("--iterations", type=int, default=defaults.ITERATIONS)
    parser.add_argument("--rigid-iterations", type=int, default=defaults.RIGID_ITERATIONS)
    parser.add_argument("--losses", default="lmk,reg")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    folder = args.shared / DATASETS[args.dataset]
    if not folder.is_dir():
        print(f"skipped: {folder} not found")
        return
    paths = find_images([folder])[: args.limit or None]
    info = machine()
    schedule = Schedule(iterations=args.iterations, rigid_iterations=args.rigid_iterations)
    pipeline = Pipeline.create(losses=args.losses, schedule=schedule, device=args.device, on_annotate=progress_line)
    progress_line("warm-up (one photo, not measured)...")
    measure(paths[:1], pipeline, BatchOptions())
    results = []
    for jobs in (int(j) for j in args.jobs.split(",")):
        for size in (int(b) for b in args.batch_sizes.split(",")):
            progress_line(f"batch size {size}, {jobs} workers: {len(paths)} photos...")
            results.append({"batch_size": size, "jobs": jobs,
                            **measure(paths, pipeline, BatchOptions(batch_size=size, jobs=jobs))})
            r = results[-1]
            progress_line(f"  {r['photos_per_s']:.3f} photos/s ({r['wall_s']:.1f} s)")

    print(f"{len(paths)} {args.dataset} photos, losses {args.losses}, {args.rigid_iterations} rigid + "
          f"{args.iterations} iterations, default outputs (textured OBJ, JSON, overlay), device {args.device}; "
          f"{machine_line(info)}.\n")
    print("| batch size | workers | wall s | photos/s | CPU s (main) | detect s/photo | fit s/face | write s/face "
          "| landmark error px | failed |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['batch_size']} | {r['jobs']} | {r['wall_s']:.1f} | {r['photos_per_s']:.3f} | {r['cpu_s']:.1f} | "
              f"{r['detect_s']:.2f} | {r['fit_s']:.2f} | {r['write_s']:.2f} | {r['landmark_error_px']:.2f} | "
              f"{r['failed']} |")
    print(f"\nCommand: `{command_line('bench_batch.py', argv)}`")
    write_json(args.json, {"machine": info, "results": results, "command": command_line("bench_batch.py", argv)})


if __name__ == "__main__":
    sys.exit(main())
