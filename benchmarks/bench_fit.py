"""Speed and memory of fits on CPU: the stages of one fit per photo, batched throughput, the thread policy.

Run from the repository root:

    python benchmarks/bench_fit.py [--photos 10] [--losses "prdl,lmk,reg;lmk,reg"] [--batch 8]
                                   [--threads 1,2] [--json PATH]

1. Stages.  For each loss set, the first ``--photos`` FASSEG test photos (else ``examples/astronaut.jpg``)
   go one at a time through exactly what ``fit3dmm fit PHOTOS --out DIR`` runs (:func:`fit3dmm.batch.run_batch`
   with its default options: batch size 1, no worker processes, OBJ + texture + parameters + overlay).  The
   report and each ``face.json`` give per photo the time to load the image, to detect and segment the face,
   for the landmark stages (PnP, rigid and full Levenberg–Marquardt), for the refinement with the geometric
   losses, and to write the files.  Medians over the photos.
2. Batched throughput.  The same photos, observed once, fitted with the default losses B = 1 at a time and
   ``--batch`` at a time (the fit alone, no writing): faces per second.
3. Threads.  The fit alone of the first photos with each torch intra-op thread count of ``--threads``, on a
   quiet machine and with a busy process on one core (a pure-Python loop, as another job would be), with
   ``OMP_WAIT_POLICY=PASSIVE`` as the command line sets it.

The model is loaded (and its cached annotation attached) once, before.  Peak memory is the process's maximum
resident set size (``resource.getrusage``), model and all.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, command_line, create_pipeline, default_shared, machine, machine_line, progress_line, write_json

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the command line sets it, before torch is imported

import torch

from fit3dmm import batch
from fit3dmm.api import Pipeline
from fit3dmm.evaluate import LabelledPhoto, fasseg_photos, prepare_targets
from fit3dmm.io.params import read_params_json
from fit3dmm.metrics.report import markdown_table
from fit3dmm.types.observation import Observation

STAGES = ("load", "detect + segment", "landmark stages", "refinement", "write", "wall per photo")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def stage_times(out: Path) -> list[dict[str, float]]:
    """Per fitted photo of a batch output folder, the seconds of each stage (report and face.json)."""
    rows = []
    for row in batch.read_report(out / batch.REPORT_NAME):
        if row["status"] != "ok":
            continue
        timings = read_params_json((out / row["output"]).with_suffix(".json")).get("timings") or {}
        stages = {"load": float(row["time_load_s"]), "detect + segment": float(row["time_detect_s"]),
                  "landmark stages": timings.get("rigid", 0.0) + timings.get("landmarks", 0.0),
                  "refinement": timings.get("prepare", 0.0) + timings.get("refine", 0.0),
                  "write": float(row["time_write_s"])}
        stages["wall per photo"] = sum(stages.values()) + (float(row["time_fit_s"]) - stages["landmark stages"]
                                                            - stages["refinement"])
        rows.append(stages)
    return rows


def busy() -> None:
    """Another job on one core."""
    while True:
        pass


def fit_seconds(pipeline: Pipeline, observations: list[Observation], size: int) -> float:
    """Wall seconds to fit ``observations`` ``size`` at a time."""
    start = time.perf_counter()
    for i in range(0, len(observations), size):
        pipeline.fit(Observation.stack(observations[i: i + size]))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared(), help="the shared data folder")
    parser.add_argument("--photos", type=int, default=10, help="number of FASSEG test photos")
    parser.add_argument("--losses", default="prdl,lmk,reg;lmk,reg", help="semicolon-separated loss sets")
    parser.add_argument("--batch", type=int, default=8, help="the batch size compared with 1")
    parser.add_argument("--threads", default="1,2", help="torch thread counts compared")
    parser.add_argument("--thread-photos", type=int, default=3, help="photos of the thread comparison")
    parser.add_argument("--model", default="ict")
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
    specs = [s.strip() for s in args.losses.split(";") if s.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(threads[0])

    start = time.perf_counter()
    pipelines = {spec: create_pipeline(model=args.model, losses=spec, device="cpu") for spec in specs}
    if None in pipelines.values():  # no face model installed
        return 0
    load_model_s = time.perf_counter() - start
    model = next(iter(pipelines.values())).model

    # 1. stages of `fit3dmm fit`, one photo at a time
    stage_rows, per_photo = [], {}
    for spec, pipeline in pipelines.items():
        with tempfile.TemporaryDirectory(prefix="fit3dmm-bench-") as out:
            summary = batch.run_batch([p.image for p in photos], out, pipeline)
            times = stage_times(Path(out))
        progress_line(f"{spec}: {len(times)} of {len(photos)} photos in {summary.seconds:.0f} s")
        per_photo[spec] = times
        stage_rows.append({"losses": spec, **{s: median([t[s] for t in times]) for s in STAGES}})

    # 2. batched throughput of the default fit
    default = pipelines[specs[0]]
    targets, failures = prepare_targets([LabelledPhoto(p.name, p.image) for p in photos], default, score=False)
    observations = [t.observation for t in targets]
    fit_seconds(default, observations[:1], 1)  # warm-up
    one = fit_seconds(default, observations, 1)
    many = fit_seconds(default, observations, args.batch)
    throughput = [{"batch size": 1, "faces": len(observations), "s": one, "faces/s": len(observations) / one},
                  {"batch size": args.batch, "faces": len(observations), "s": many,
                   "faces/s": len(observations) / many}]
    progress_line(f"throughput: B=1 {len(observations) / one:.2f} faces/s, B={args.batch} "
                  f"{len(observations) / many:.2f} faces/s")

    # 3. thread policy, quiet and with a busy core
    thread_rows = []
    sample = observations[: args.thread_photos]
    for load in ("quiet", "one core busy"):
        hog = None
        if load != "quiet":
            hog = multiprocessing.get_context("spawn").Process(target=busy, daemon=True)
            hog.start()
            time.sleep(0.5)
        try:
            for n in threads:
                torch.set_num_threads(n)
                fit_seconds(default, sample[:1], 1)  # warm-up at this thread count
                seconds = fit_seconds(default, sample, 1) / len(sample)
                thread_rows.append({"machine": load, "torch threads": n, "s per fit": seconds})
                progress_line(f"{load}, {n} threads: {seconds:.2f} s per fit")
        finally:
            if hog is not None:
                hog.terminate()
                hog.join()
    torch.set_num_threads(threads[0])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux

    print(f"{len(photos)} FASSEG test photos ({photos[0].name}..{photos[-1].name}), {model.name}, CPU; the "
          f"`fit3dmm fit` code path, one photo at a time, {threads[0]} torch thread(s).\n")
    print(f"Run at commit {info['commit']} ({machine_line(info)}).\n")
    print("Median seconds per photo and stage:\n")
    print(markdown_table(stage_rows, ["losses", *STAGES], floatfmt=".2f"))
    print(f"\nBatched throughput of the fit alone ({specs[0]}, {len(observations)} faces, "
          f"{threads[0]} thread(s)): B = {args.batch} is {many and one / many:.2f}× B = 1.\n")
    print(markdown_table(throughput, ["batch size", "faces", "s", "faces/s"], floatfmt=".2f"))
    print(f"\nTorch threads ({specs[0]}, the fit alone, mean of {len(sample)} photos; OMP_WAIT_POLICY=PASSIVE):\n")
    print(markdown_table(thread_rows, ["machine", "torch threads", "s per fit"], floatfmt=".2f"))
    print(f"\nModel load with cached annotations: {load_model_s:.1f} s (once).  Peak memory (max RSS of the "
          f"process): {peak_mib:.0f} MiB.")
    if failures:
        print("\nNo face in: " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
    write_json(args.json, {
        "benchmark": "fit", "command": command_line("bench_fit.py", argv), "commit": info["commit"], "machine": info,
        "photos": [p.name for p in photos], "stages": stage_rows, "per_photo": per_photo, "throughput": throughput,
        "threads": thread_rows, "load_model_s": load_model_s, "peak_rss_mib": peak_mib,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
