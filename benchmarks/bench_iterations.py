"""Part IoU against refinement iterations on FASSEG's training photos: where the default iteration count and
stopping rule come from.

Run from the repository root:

    python benchmarks/bench_iterations.py [--split train] [--iterations 0,2,5,10,20,30] [--losses prdl,lmk,reg]
                                          [--json PATH]

The photos are fitted to the built-in segmenter's masks (what ``fit3dmm fit`` does) and scored against the
FASSEG hand labels.  Every count runs with the stopping rule off (``tolerance 0``: exactly that many
refinement iterations after the landmark stage); the last row is the default schedule, whose refinement stops
when no face's loss falls by more than its tolerance in an iteration.  This is a calibration: it runs on the
training split, never on the test photos the other benchmarks score.
"""

from __future__ import annotations

import sys
import time

from common import (
    command_line,
    create_pipeline,
    dataset_parser,
    find_dataset,
    machine,
    machine_line,
    progress_line,
    write_json,
)

from fit3dmm.api import Schedule
from fit3dmm.evaluate import evaluate_fits, fasseg_photos, prepare_targets
from fit3dmm.losses.registry import parse_losses
from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS
from fit3dmm.metrics.report import markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = dataset_parser(__doc__)
    parser.add_argument("--split", default="train", choices=["train", "test", "all"])
    parser.add_argument("--iterations", default="0,2,5,10,20,30", help="comma-separated refinement iterations")
    parser.add_argument("--losses", default="prdl,lmk,reg")
    parser.add_argument("--model", default="ict")
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    root = find_dataset(args.shared, "fasseg-frontal", "index.csv")
    if root is None:
        return 0
    info = machine()
    started = time.perf_counter()
    pipeline = create_pipeline(model=args.model, losses=args.losses, device="cpu")
    if pipeline is None:
        return 0
    photos = fasseg_photos(root, args.split, args.limit)
    targets, failures = prepare_targets(photos, pipeline, fit_labels=False, progress=progress_line)
    configs = {args.losses: parse_losses(args.losses)}
    default = Schedule()
    schedules = [(f"{n}", Schedule(iterations=n, tolerance=0.0)) for n in (int(v) for v in args.iterations.split(","))]
    schedules.append((f"default (≤ {default.iterations}, tolerance {default.tolerance:g})", default))
    rows = []
    for label, schedule in schedules:
        pipeline.schedule = schedule
        evaluation = evaluate_fits(pipeline, targets, configs, groups=FASSEG_GROUPS, scorer="raster")
        summary = evaluation.summary_rows()[0]
        rows.append({"refinement iterations": label, **{g: summary[g] for g in (*FASSEG_GROUPS, "mean")},
                     "iterations run (mean)": summary["iterations"],
                     "s per face (median)": summary["ms_per_face"] / 1e3})
        progress_line(f"{label}: mean {summary['mean']:.3f}, {summary['ms_per_face'] / 1e3:.2f} s per face")
    seconds = time.perf_counter() - started
    print(f"FASSEG frontal02 {args.split} split: {len(targets)} of {len(photos)} photos, losses {args.losses}, "
          "fitted to the built-in segmenter, scored against the hand labels (Part IoU, mean over photos); the landmark "
          "stage runs before every count.\n")
    print(f"Run at commit {info['commit']}, {seconds:.0f} s ({machine_line(info)}).\n")
    print(markdown_table(rows, list(rows[0]), floatfmt=".3f"))
    if failures:
        print("\nNo fit for: " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
    write_json(args.json, {"benchmark": "iterations", "command": command_line("bench_iterations.py", argv),
                           "commit": info["commit"], "machine": info, "split": args.split, "losses": args.losses,
                           "rows": rows, "failures": failures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
