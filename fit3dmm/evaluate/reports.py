"""Reports of an evaluation: Markdown and CSV tables, per-photo figures and their grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fit3dmm.evaluate.experiments import Evaluation
from fit3dmm.evaluate.figures import compare_figure
from fit3dmm.evaluate.targets import FitTarget
from fit3dmm.io.atomic import atomic_write
from fit3dmm.io.images import write_png
from fit3dmm.io.tables import write_csv
from fit3dmm.metrics.report import markdown_table


def write_compare(
    evaluation: Evaluation,
    targets: Sequence[FitTarget],
    out: str | Path,
    *,
    failures: Mapping[str, str] | None = None,
    figure_rows: int = 8,
    title: str = "",
) -> list[Path]:
    """Write ``table.md`` (summary and per-image tables), ``table.csv`` (summary), ``per_image.csv``, one
    figure row per target under ``figures/`` and ``figure.png`` stacking the first ``figure_rows`` rows.

    Figures need the evaluation to have been run with ``keep_labels``.  Returns the written paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows = evaluation.summary_rows()
    columns = evaluation.table_columns()
    header = [f"# {title or 'Part IoU per configuration'}", ""]
    if evaluation.regularizer is not None:
        header.append(f"Every configuration adds the coefficient regulariser reg (λ = {evaluation.regularizer:g}); "
                      "no landmark or photometric term.")
    header += ["Part IoU of the fitted mesh's rendered part labels (hard z-buffer, photo resolution) against the "
               "target masks; mean = mean over images of the mean over regions; iterations = refinement "
               "iterations run (mean; the refinement stops early); ms_per_face = the configuration's own "
               "stages (landmark stage and refinement) per face, median.", ""]
    for run in evaluation.runs:
        header.append(f"- {run.name}: " + ", ".join(f"{k}={v:g}" for k, v in run.weights.items()))
    header.append("")
    text = "\n".join(header) + "\n" + markdown_table(rows, columns) + "\n"
    if failures:
        text += "\nSkipped photos: " + "; ".join(f"{k} ({v})" for k, v in failures.items()) + "\n"
    scores = [*evaluation.groups, "mean"] if "mean" in columns else []
    text += "\n## Per image\n\n" + markdown_table(evaluation.per_image_rows(),
                                                 ["image", "config", *scores, "status"]) + "\n"
    path = out / "table.md"
    with atomic_write(path, "w") as handle:
        handle.write(text)
    written.append(path)
    for name, table, cols in (("table.csv", rows, columns),
                              ("per_image.csv", evaluation.per_image_rows(), None)):
        path = out / name
        write_csv(path, table, cols or (list(table[0]) if table else []))
        written.append(path)
    if all(len(r.labels) == len(targets) for r in evaluation.runs) and all(t.masks is not None for t in targets):
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        stack = []
        for n, target in enumerate(targets):
            fitted = [(r.name, r.labels[n], r.iou[n], float(evaluation.mean_iou(r)[n])) for r in evaluation.runs]
            row = compare_figure(target.photo, target.masks, fitted, evaluation.groups)
            path = fig_dir / f"{target.name}.png"
            write_png(path, row)
            written.append(path)
            if n < figure_rows:
                stack.append(row)
        if stack:
            width = max(r.shape[1] for r in stack)
            grid = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                                   for r in stack], axis=0)
            path = out / "figure.png"
            write_png(path, grid)
            written.append(path)
    return written
