"""Each geometric loss alone with settings tuned per loss: a grid on FASSEG's train photos, then the test photos.

Run from the repository root:

    python benchmarks/bench_compare_tuning.py [--factors 0.3,1,3] [--iterations 10,30] [--limit N] [--json PATH]

For every loss of ``fit3dmm compare`` (prdl, softras, icp, icp_rev, chamfer, dcd), the grid is its weight
relative to ``reg`` (the default weight times each of ``--factors``; ``reg`` stays 1) times the refinement
iterations (``--iterations``, each with the default early stop).  The solver (preconditioned Gauss–Newton with a
line search) has no learning rate, so that axis of the issue's grid does not exist here.  All grid points are
fitted to FASSEG's 20 **train** photos from one shared rigid start, fitted to the built-in segmenter's parts and
scored against the hand labels by render and segment (``compare``'s defaults); each loss keeps the grid point
with the best mean Part IoU.  Then the chosen settings are run once on the 50 **test** photos, the same way, and
written as ``compare`` writes its tables (spreads, paired bootstrap intervals and win counts against PRDL).
The test photos are never looked at before that run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
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
from fit3dmm.evaluate import Evaluation, evaluate_fits, fasseg_photos, prepare_targets, write_compare
from fit3dmm.evaluate.experiments import Config, nanmean
from fit3dmm.losses.registry import loss_class
from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS
from fit3dmm.metrics.report import markdown_table

LOSSES = ("prdl", "softras", "icp", "icp_rev", "chamfer", "dcd")


def grid_run(pipeline, targets, configs: dict[str, Config], iterations: int) -> Evaluation:
    """``configs`` fitted with ``iterations`` refinement iterations (default early stop) from one rigid start."""
    pipeline.schedule = Schedule(iterations=iterations)
    return evaluate_fits(pipeline, targets, configs, groups=FASSEG_GROUPS, regularizer=1.0, progress=progress_line)


def main(argv: list[str] | None = None) -> int:
    parser = dataset_parser(__doc__)
    parser.add_argument("--factors", default="0.3,1,3", help="loss weight factors relative to the default")
    parser.add_argument("--iterations", default="10,30", help="refinement iterations")
    parser.add_argument("--model", default="ict")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    root = find_dataset(args.shared, "fasseg-frontal", "index.csv")
    if root is None:
        return 0
    info = machine()
    started = time.perf_counter()
    pipeline = create_pipeline(model=args.model, losses=",".join((*LOSSES, "reg")), device="cpu")
    if pipeline is None:
        return 0
    factors = [float(f) for f in args.factors.split(",")]
    iteration_counts = [int(n) for n in args.iterations.split(",")]
    train, failed_train = prepare_targets(fasseg_photos(root, "train", args.limit), pipeline, fit_labels=False,
                                          progress=progress_line)
    grid_rows, scores = [], {}
    for n in iteration_counts:
        configs = {f"{loss} ×{f:g}": Config({loss: loss_class(loss).default_weight * f, "reg": 1.0})
                   for loss in LOSSES for f in factors}
        evaluation = grid_run(pipeline, train, configs, n)
        for run, (label, config) in zip(evaluation.runs, configs.items(), strict=True):
            mean = float(nanmean(evaluation.mean_iou(run)))
            loss, factor = label.split(" ×")
            scores[(loss, float(factor), n)] = (mean, dict(config))
            grid_rows.append({"loss": loss, "weight factor": factor, "iterations": n, "train mean IoU": mean})
    chosen = {loss: max(((k, v) for k, v in scores.items() if k[0] == loss), key=lambda kv: kv[1][0])
              for loss in LOSSES}
    test, failed_test = prepare_targets(fasseg_photos(root, "test", args.limit), pipeline, fit_labels=False,
                                        progress=progress_line)
    runs = []
    for n in sorted({k[2] for k, _ in chosen.values()}):
        configs = {loss: Config(v[1]) for loss, (k, v) in chosen.items() if k[2] == n}
        runs += grid_run(pipeline, test, configs, n).runs
    runs.sort(key=lambda r: LOSSES.index(r.name))
    tuned = Evaluation(names=[t.name for t in test], groups=dict(FASSEG_GROUPS), runs=runs, regularizer=1.0,
                       scorer="render")
    with tempfile.TemporaryDirectory() as tmp:
        write_compare(tuned, test, tmp, failures=failed_test, figure_rows=0,
                      title="Each geometric loss alone, settings tuned per loss on FASSEG train")
        table = (Path(tmp) / "table.md").read_text().split("\n## Per image")[0]
    choice_rows = [{"loss": loss, "weight": v[1][loss], "weight factor": k[1], "iterations": k[2],
                    "train mean IoU": v[0]} for loss, (k, v) in chosen.items()]
    print(f"Grid on {len(train)} FASSEG train photos ({len(failed_train)} skipped); chosen settings run once on "
          f"{len(test)} test photos ({len(failed_test)} skipped).  {machine_line(info)}; "
          f"{time.perf_counter() - started:.0f} s.\n")
    print("Chosen per loss (best train mean Part IoU, render and segment):\n")
    print(markdown_table(choice_rows, ["loss", "weight", "weight factor", "iterations", "train mean IoU"]))
    print("\n" + "\n".join(table.splitlines()[2:]))
    print("\nThe whole grid (train):\n")
    print(markdown_table(grid_rows, ["loss", "weight factor", "iterations", "train mean IoU"]))
    write_json(args.json, {"machine": info, "command": command_line("bench_compare_tuning.py", argv),
                           "grid": grid_rows, "chosen": choice_rows,
                           "test": [{"config": r.name, "mean": float(np.nanmean(tuned.mean_iou(r)))} for r in runs]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
