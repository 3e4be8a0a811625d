"""Speed and memory of one default fit on CPU: detection, segmentation, fitting and writing per photo.

Run from the repository root:

    python benchmarks/bench_fit.py [--photos 5] [--iterations 200] [--losses prdl,lmk,reg] [--json PATH]

The photos (the first ``--photos`` FASSEG test photos, else ``examples/astronaut.jpg``) go one at a time
through exactly what ``fit3dmm fit PHOTOS --out DIR`` runs (:func:`fit3dmm.batch.run_batch` with its default
options: batch size 1, no worker processes, OBJ + parameters + overlay), whose report gives per photo the
time to load the image, to detect and segment the face (``observe``), to fit (rigid stage, target
preparation and Adam iterations) and to write the outputs.  Detection and segmentation are also timed on
their own (mediapipe FaceMesh; the built-in segmenter plus the target point sets).  Medians over the photos.
The model is loaded (and its cached part annotations attached) once, before.  Peak memory is the process's
maximum resident set size (``resource.getrusage``), model and all.
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, command_line, default_shared, machine, machine_line, progress_line, write_json

from fit3dmm import batch, defaults
from fit3dmm.api import Pipeline, Schedule
from fit3dmm.evaluate import LabelledPhoto, fasseg_photos, prepare_targets
from fit3dmm.metrics.report import markdown_table

STAGES = (("load", "time_load_s"), ("detect + segment", "time_detect_s"), ("fit", "time_fit_s"),
          ("write", "time_write_s"))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared(), help="the shared data folder")
    parser.add_argument("--photos", type=int, default=5, help="number of FASSEG test photos")
    parser.add_argument("--losses", default=None, help="default: the model's default loss set")
    parser.add_argument("--iterations", type=int, default=defaults.ITERATIONS)
    parser.add_argument("--rigid-iterations", type=int, default=defaults.RIGID_ITERATIONS)
    parser.add_argument("--model", default=defaults.DEFAULT_MODEL)
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    info = machine()
    fasseg = args.shared / "datasets" / "fasseg-frontal"
    if (fasseg / "index.csv").is_file():
        photos = fasseg_photos(fasseg, "test", args.photos)
    else:
        example = REPO / "examples" / "astronaut.jpg"
        if not example.is_file():
            print(f"skipped: neither FASSEG ({fasseg}) nor {example} found")
            return 0
        photos = [LabelledPhoto("astronaut", example)]

    start = time.perf_counter()
    schedule = Schedule(iterations=args.iterations, rigid_iterations=args.rigid_iterations)
    try:
        pipeline = Pipeline.create(model=args.model, losses=args.losses, schedule=schedule, device="cpu",
                                   on_annotate=progress_line)
    except FileNotFoundError as exc:  # no face model installed
        print(f"skipped: {str(exc).splitlines()[0]}")
        return 0
    model, weights = pipeline.model, pipeline.weights
    load_model_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="fit3dmm-bench-") as out:
        summary = batch.run_batch([p.image for p in photos], out, pipeline)
        with open(Path(out) / "report.csv", newline="") as handle:
            report = [r for r in csv.DictReader(handle) if r["status"] == "ok"]
    fitted_s = summary.seconds
    progress_line(f"fitted {len(report)} of {len(photos)} photos in {fitted_s:.0f} s")
    # detection and the built-in segmentation on their own (the labels of FASSEG are not used)
    targets, failures = prepare_targets([LabelledPhoto(p.name, p.image) for p in photos], pipeline)

    stage_rows = []
    walls = [sum(float(r[column]) for _, column in STAGES) for r in report]
    for label, column in STAGES:
        values = [float(r[column]) for r in report]
        stage_rows.append({"stage": label, "median (s)": median(values), "min (s)": min(values, default=None),
                           "max (s)": max(values, default=None)})
    stage_rows.append({"stage": "wall per photo", "median (s)": median(walls), "min (s)": min(walls, default=None),
                       "max (s)": max(walls, default=None)})
    split_rows = []
    steps = {"detect": [t.timings["detect"] for t in targets],
             "segment": [t.timings["observe"] - t.timings["detect"] for t in targets]}
    for key, label in (("detect", "detection (mediapipe)"), ("segment", "crop, built-in segmentation + point sets")):
        values = steps[key]
        split_rows.append({"step": label, "median (ms)": 1000 * median(values)})
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux

    spec = ",".join(weights)
    print(f"One default fit per photo ({spec}; {args.rigid_iterations} rigid + {args.iterations} iterations; "
          f"{model.name}) on CPU, {len(report)} of {len(photos)} photos "
          f"({', '.join(p.name for p in photos)}); `fit3dmm fit` code path, one photo at a time.\n")
    print(f"Run at commit {info['commit']} ({machine_line(info)}).\n")
    print(markdown_table(stage_rows, ["stage", "median (s)", "min (s)", "max (s)"], floatfmt=".2f"))
    print()
    print(markdown_table(split_rows, ["step", "median (ms)"], floatfmt=".1f"))
    print(f"\nModel load with cached annotations: {load_model_s:.1f} s (once).  Peak memory (max RSS of the "
          f"process): {peak_mib:.0f} MiB.")
    if failures:
        print("\nNo face in: " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
    write_json(args.json, {
        "benchmark": "fit", "command": command_line("bench_fit.py", argv), "commit": info["commit"], "machine": info,
        "losses": spec, "iterations": args.iterations, "rigid_iterations": args.rigid_iterations,
        "photos": [p.name for p in photos], "stages": stage_rows, "split": split_rows, "report": report,
        "load_model_s": load_model_s, "peak_rss_mib": peak_mib,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
