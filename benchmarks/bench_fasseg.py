"""Part IoU of fits on FASSEG frontal02 (50 test photos) for the default fit, landmarks only and PRDL alone.

Run from the repository root:

    python benchmarks/bench_fasseg.py [--split test] [--limit N] [--iterations 200] [--targets builtin]
                                      [--configs "prdl,lmk,reg;lmk,reg;prdl,reg"] [--json PATH]

Every configuration starts from the same rigid fit to the detected landmarks (:func:`fit3dmm.evaluate.evaluate_fits`)
and is scored by Part IoU at photo resolution: the fitted mesh's part labels rendered with a hard z-buffer
against FASSEG's hand labels (:mod:`fit3dmm.metrics.fit_metrics`).  FASSEG has one eye class (split into the
subject's left and right eye by connected component, scored per side and merged), one mouth class (both lips,
compared with up_lip ∪ down_lip), nose and skin; brows are painted as hair, so there is no brow score.  FASSEG's
skin reaches up to the hair line and down the neck while the model's skin stops at the line over the brows and
at the jaw, which caps the skin IoU well below 1 for every configuration.  ``mean`` averages eyes, nose, mouth
and skin (not the per-side eyes).

The fitted eyeBlink coefficients (ICT) are summarised too: a fit that closes open eyes shows there.

``--targets builtin`` (default) fits to the built-in landmark segmenter, as ``fit3dmm fit`` does on any photo;
``--targets labels`` fits to the FASSEG label map itself (an oracle segmentation).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from common import (
    add_fit_options,
    command_line,
    dataset_parser,
    find_dataset,
    fit_setup,
    machine,
    machine_line,
    progress_line,
    write_json,
)

from fit3dmm.evaluate import Evaluation, evaluate_fits, fasseg_photos, prepare_targets
from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS, FASSEG_GROUPS_BY_SIDE
from fit3dmm.metrics.report import markdown_table


def blink_rows(evaluation: Evaluation, expression_names: list[str]) -> list[dict[str, object]]:
    """Per configuration, statistics of the fitted eyeBlink coefficients (empty for a model without them)."""
    columns = [i for i, n in enumerate(expression_names) if n.startswith("eyeBlink")]
    if not columns:
        return []
    rows = []
    for run in evaluation.runs:
        blink = run.expression[:, columns].ravel()
        rows.append({"config": run.name, "mean": float(blink.mean()), "median": float(np.median(blink)),
                     "max": float(blink.max()), "> 0.3": f"{int((blink > 0.3).sum())} of {blink.size}"})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = dataset_parser(__doc__)
    parser.add_argument("--split", default="test", choices=["train", "test", "all"])
    parser.add_argument("--targets", choices=["builtin", "labels"], default="builtin",
                        help="what the fit uses as part segmentation (scoring always uses the FASSEG labels)")
    add_fit_options(parser)
    args = parser.parse_args(argv)
    root = find_dataset(args.shared, "fasseg-frontal", "index.csv")
    if root is None:
        return 0
    info = machine()
    started = time.perf_counter()
    configs, pipeline = fit_setup(args)
    if pipeline is None:
        return 0
    photos = fasseg_photos(root, args.split, args.limit)
    targets, failures = prepare_targets(photos, pipeline, fit_labels=args.targets == "labels", progress=progress_line)
    evaluation = evaluate_fits(pipeline, targets, configs, groups=FASSEG_GROUPS_BY_SIDE,
                               mean_groups=list(FASSEG_GROUPS), batch_size=args.batch, scorer="raster",
                               progress=progress_line)
    rows = evaluation.summary_rows()
    columns = evaluation.table_columns()
    seconds = time.perf_counter() - started

    print(f"FASSEG frontal02 {args.split} split: {len(targets)} of {len(photos)} photos fitted "
          f"({args.model}, {args.iterations} iterations after a shared rigid stage of {args.rigid_iterations}; "
          f"fit to the {'built-in segmenter' if args.targets == 'builtin' else 'FASSEG label maps'}; "
          f"scored against the FASSEG hand labels).\n")
    print(f"Run at commit {info['commit']}, {seconds:.0f} s ({machine_line(info)}).\n")
    print("Part IoU, mean over photos (left_eye/right_eye: FASSEG's eye class split by connected component; "
          "eyes: both; mean: eyes, nose, mouth, skin):\n")
    print(markdown_table(rows, columns))
    blinks = blink_rows(evaluation, list(pipeline.model.expression_names))
    if blinks:
        print("\nFitted eye closing (ARKit eyeBlinkLeft/Right, 0 open … 1 closed; FASSEG's subjects have their "
              "eyes open), over photos and both eyes:\n")
        print(markdown_table(blinks, list(blinks[0])))
    if failures:
        print("\nNo fit for: " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
    write_json(args.json, {
        "benchmark": "fasseg", "command": command_line("bench_fasseg.py", argv), "commit": info["commit"],
        "machine": info, "seconds": seconds, "split": args.split, "targets": args.targets,
        "iterations": args.iterations, "rigid_iterations": args.rigid_iterations, "photos": evaluation.names,
        "failures": failures, "groups": list(evaluation.groups), "mean_groups": list(FASSEG_GROUPS),
        "summary": rows, "eye_blink": blinks,
        "per_image": {run.name: run.iou for run in evaluation.runs},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
