"""A trained regressor (``fit3dmm train``) against per-photo fitting on FASSEG frontal02 test photos.

Run from the repository root, after a training run:

    python benchmarks/bench_train.py --regressor RUN/model.pt [--split test] [--limit N] [--fit-limit 10]
                                     [--refine-iterations 30] [--size 224] [--json PATH]

Five ways to reconstruct each photo, all scored the same way as ``bench_fasseg.py`` (Part IoU at photo
resolution against FASSEG's hand labels, :func:`~fit3dmm.metrics.fit_metrics.fit_part_iou`, FASSEG's classes
eyes/nose/mouth/skin) plus the 68-landmark NME against the *detected* landmarks (FASSEG has no landmark ground
truth, so this measures agreement with mediapipe, normalised by the landmark box):

0. **rest state**: what an untrained network (zero head) predicts for every photo: the mean face, frontal, at
   the nominal place of a face in the crop; the baseline the training has to beat;
1. **regressor**: the network alone (coefficients evaluated as they are, no optimisation);
2. **regressor + N it.**: :func:`~fit3dmm.fitting.engine.fit_observation` started from the network's
   coefficients (no rigid stage; the landmark stage, then N refinement iterations), with the default losses
   (PRDL, landmarks, regulariser);
3. **fit, N it.**: the same from the usual start (PnP and the rigid stage), to separate the regressor's
   contribution from the fit's;
4. **fit** (the default schedule), what ``fit3dmm fit`` does.

Every method sees the same observation (crop of ``--size`` px with the built-in segmenter's targets; the
regressor resizes the crop to its own input size).  Methods 2-4 run on the first ``--fit-limit`` photos.
Seconds per photo exclude detection and segmentation (shared by all methods; reported separately).
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    command_line,
    dataset_parser,
    find_dataset,
    machine,
    machine_line,
    progress_line,
    write_json,
)

from fit3dmm.api import ObserveOptions, Pipeline, Schedule
from fit3dmm.evaluate import fasseg_photos, nanmean, prepare_targets
from fit3dmm.fitting.engine import fit_observation
from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS, fit_landmark_nme, fit_part_iou
from fit3dmm.metrics.report import markdown_table
from fit3dmm.models.regressor import FaceRegressor, check_model, load_regressor, predict_init
from fit3dmm.train.run import regressor_result


def training_summary(run: Path, results: Path | None) -> str:
    """Markdown about the training run that wrote ``run/model.pt`` (its config.json, log.csv, val.csv), and
    copies of its curves and logs into ``results`` (``train_curves.png``, ``train_log.csv``, ``train_val.csv``)."""
    if not (run / "config.json").is_file() or not (run / "log.csv").is_file():
        return ""
    config = json.loads((run / "config.json").read_text())
    with open(run / "log.csv", newline="") as handle:
        log = list(csv.DictReader(handle))
    val = []
    if (run / "val.csv").is_file():
        with open(run / "val.csv", newline="") as handle:
            val = list(csv.DictReader(handle))
    c = config["config"]
    seconds = sum(float(r["seconds"]) for r in log)
    lines = [f"Training run `{run}`: {config['train_items']} training faces, {config['val_items']} validation "
             f"faces, {len(log)} steps of {c['batch_size']} faces ({int(log[-1]['epoch']) + 1 if log else 0} "
             f"epochs), {c['size']} px crops, Adam lr {c['lr']}, "
             f"losses {', '.join(f'{k}={v:g}' for k, v in c['weights'].items())}, supervision weight "
             f"{c['supervise']}, {seconds / 60:.0f} min of training steps ({seconds / max(len(log), 1):.1f} s "
             f"per step).", ""]
    if val:
        keys = [k for k in val[0] if k not in ("step",)]
        lines += ["Validation after each epoch (Part IoU against the built-in segmenter's masks, NME against the "
                  "detected landmarks, as fractions):", "",
                  markdown_table([{k: r[k] for k in keys} for r in val], keys), ""]
    if results is not None:
        results.mkdir(parents=True, exist_ok=True)
        for name, target in (("curves.png", "train_curves.png"), ("log.csv", "train_log.csv"),
                             ("val.csv", "train_val.csv")):
            if (run / name).is_file():
                shutil.copyfile(run / name, results / target)
        where = results.resolve().relative_to(Path(__file__).resolve().parent).as_posix()
        lines += [f"Curves: `{where}/train_curves.png`; every step: `{where}/train_log.csv`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = dataset_parser(__doc__)
    parser.add_argument("--regressor", type=Path, required=True, help="a trained run/model.pt")
    parser.add_argument("--split", default="test", choices=["train", "test", "all"])
    parser.add_argument("--fit-limit", type=int, default=10, help="run the fits on the first N photos only")
    parser.add_argument("--refine-iterations", type=int, default=30)
    parser.add_argument("--size", type=int, default=224, help="crop size of the observations")
    parser.add_argument("--model", default="ict")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--results", type=Path, default=None,
                        help="copy the training run's curves and logs into this folder")
    args = parser.parse_args(argv)
    root = find_dataset(args.shared, "fasseg-frontal", "index.csv")
    if root is None:
        return 0
    info = machine()
    started = time.perf_counter()
    pipeline = Pipeline.create(model=args.model, observe=ObserveOptions(size=args.size), device="cpu",
                               on_annotate=progress_line)
    model, weights = pipeline.model, pipeline.weights
    regressor, meta = load_regressor(args.regressor)
    check_model(meta, model)
    n_it = args.refine_iterations
    rest = FaceRegressor(regressor.layout, regressor.size).eval()  # zero head: mean face at the nominal pose
    methods = {"rest state": None,
               "regressor": None,
               f"regressor + {n_it} it.": Schedule(rigid_iterations=0, iterations=n_it),
               f"fit, {n_it} it.": Schedule(iterations=n_it),
               "fit (default schedule)": Schedule()}
    photos = fasseg_photos(root, args.split, args.limit)
    targets, failures = prepare_targets(photos, pipeline, fit_labels=False, progress=progress_line)
    scores: dict[str, dict[str, list]] = {m: {"iou": [], "nme": [], "seconds": []} for m in methods}
    for index, target in enumerate(targets):
        obs = target.observation
        masks = target.masks[None]
        detected = target.landmarks68[None]
        for method, config in methods.items():
            if config is not None and index >= args.fit_limit:
                continue
            start = time.perf_counter()
            if config is None:
                network = regressor if method == "regressor" else rest
                predict_init(network, obs)
                seconds = time.perf_counter() - start  # the network alone; the FitResult below is bookkeeping
                result = regressor_result(network, model, obs)
            elif method.startswith("regressor"):
                result = regressor_result(regressor, model, obs, refine=config, weights=weights)
                seconds = time.perf_counter() - start
            else:
                result = fit_observation(model, obs, weights, config)
                seconds = time.perf_counter() - start
            iou = fit_part_iou(result, model.part_labels, masks, FASSEG_GROUPS)[0].numpy()
            scores[method]["iou"].append(iou)
            scores[method]["nme"].append(float(fit_landmark_nme(result, detected)[0]))
            scores[method]["seconds"].append(seconds)
        progress_line(f"{target.name}: " + ", ".join(
            f"{m} IoU {nanmean(s['iou'][-1]):.3f}" for m, s in scores.items() if len(s["iou"]) == index + 1))

    groups = list(FASSEG_GROUPS)
    rows = []
    for method, s in scores.items():
        if not s["iou"]:
            continue
        iou = np.stack(s["iou"])
        per_group = nanmean(iou, axis=0)
        rows.append({"method": method, "photos": len(s["iou"]),
                     **{g: f"{v:.3f}" for g, v in zip(groups, per_group, strict=True)},
                     "mean IoU": f"{nanmean(per_group):.3f}",
                     "NME vs detector (%)": f"{100 * np.mean(s['nme']):.2f}",
                     "s / photo (median)": f"{np.median(s['seconds']):.2f}"})
    # the same restricted to the photos every method ran on, for a like-for-like comparison
    k = min(len(s["iou"]) for s in scores.values())
    subset = [{"method": m, "photos": k, "mean IoU": f"{nanmean(nanmean(np.stack(s['iou'][:k]), axis=0)):.3f}",
               "NME vs detector (%)": f"{100 * np.mean(s['nme'][:k]):.2f}"} for m, s in scores.items() if k]
    detect = [t.timings["detect"] + t.timings["segment"] for t in targets]
    seconds = time.perf_counter() - started
    extra = meta.get("extra", {})
    print(f"FASSEG frontal02 {args.split} split, {len(targets)} of {len(photos)} photos "
          f"(fits on the first {min(args.fit_limit, len(targets))}); regressor {args.regressor} "
          f"({extra.get('steps', '?')} training steps, input {meta['size']} px), observations at {args.size} px, "
          f"losses {','.join(weights)}.\n")
    print(f"Command: `{command_line('bench_train.py', argv)}` (commit {info['commit']}, {seconds:.0f} s; "
          f"{machine_line(info)}).\n")
    summary = training_summary(args.regressor.parent, args.results)
    if summary:
        print(summary)
    print(markdown_table(rows, list(rows[0])))
    if k:
        print(f"\nOn the {k} photos every method ran on:\n")
        print(markdown_table(subset, list(subset[0])))
    print(f"\nDetection + segmentation (shared by all methods): median {np.median(detect):.2f} s per photo.")
    if failures:
        print("\nNo face in: " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
    write_json(args.json, {
        "benchmark": "train", "command": command_line("bench_train.py", argv), "commit": info["commit"],
        "machine": info, "seconds": seconds, "regressor": str(args.regressor), "regressor_meta": meta,
        "photos": [t.name for t in targets], "failures": failures, "groups": groups, "summary": rows,
        "subset": subset, "per_image": {m: {"iou": np.stack(s["iou"]).tolist() if s["iou"] else [],
                                            "nme": s["nme"], "seconds": s["seconds"]} for m, s in scores.items()},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
