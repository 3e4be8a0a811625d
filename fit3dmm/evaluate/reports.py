"""Reports of an evaluation: Markdown and CSV tables (with the statistics of issue #13), per-photo figures and
their grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fit3dmm.evaluate.experiments import Evaluation
from fit3dmm.evaluate.figures import compare_figure
from fit3dmm.evaluate.statistics import LEVEL, RESAMPLES, TIE, mean_std, paired_bootstrap, win_tie_loss
from fit3dmm.evaluate.targets import FitTarget
from fit3dmm.io.atomic import atomic_write
from fit3dmm.io.images import write_png
from fit3dmm.io.tables import write_csv
from fit3dmm.metrics.report import markdown_table

REFERENCE = "prdl"
SCORER_TEXT = {
    "render": "Part IoU by render and segment (the paper's protocol): each fit rendered grey at its fitted pose in "
              "the photo frame and segmented by the built-in segmenter",
    "raster": "raster-label IoU (the model's own Algorithm 1 labels; favours point losses): the fitted mesh's "
              "part labels rasterised with a hard z-buffer",
}
"""What the main columns of ``table.md`` are, by :attr:`Evaluation.scorer`."""


def write_compare(
    evaluation: Evaluation,
    targets: Sequence[FitTarget],
    out: str | Path,
    *,
    failures: Mapping[str, str] | None = None,
    figure_rows: int = 8,
    title: str = "",
) -> list[Path]:
    """Write ``table.md`` (summary, statistics (:func:`statistics_markdown`) and per-image tables),
    ``table.csv`` (summary), ``per_image.csv``, one figure row per target under ``figures/`` and ``figure.png``
    stacking the first ``figure_rows`` rows, then ``report.html`` showing them all
    (:func:`~fit3dmm.evaluate.html_report.write_html_report`).

    Figures need the evaluation to have been run with ``keep_labels``; they show the rasterised part labels and
    their (raster-label) IoU whatever the scorer.  Returns the written paths.
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
    both = ("; raster_mean = the same mean of the raster-label IoU (the model's own Algorithm 1 labels; favours "
            "point losses); unscored = photos whose render shows no face (left out of the main columns)"
            if evaluation.both_scores else "")
    header += [f"Main columns: {SCORER_TEXT[evaluation.scorer]}, at photo resolution against the target masks; "
               f"mean = mean over images of the mean over regions{both}; iterations = refinement "
               "iterations run (mean; the refinement stops early); ms_per_face = the configuration's own "
               "stages (landmark stage and refinement) per face, median.", ""]
    for run in evaluation.runs:
        header.append(f"- {run.name}: " + ", ".join(f"{k}={v:g}" for k, v in run.weights.items()))
    header.append("")
    text = "\n".join(header) + "\n" + markdown_table(rows, columns) + "\n"
    if failures:
        text += "\nSkipped photos: " + "; ".join(f"{k} ({v})" for k, v in failures.items()) + "\n"
    statistics = statistics_markdown(evaluation)
    if statistics:
        text += "\n" + statistics + "\n"
    scores = [*evaluation.groups, "mean"] if "mean" in columns else []
    scores += ["raster_mean"] if "raster_mean" in columns else []
    unscored = ["unscored"] if evaluation.both_scores else []
    text += "\n## Per image\n\n" + markdown_table(evaluation.per_image_rows(),
                                                 ["image", "config", *scores, "status", *unscored]) + "\n"
    path = out / "table.md"
    with atomic_write(path, "w") as handle:
        handle.write(text)
    written.append(path)
    for name, table, cols in (("table.csv", rows, evaluation.table_columns(every_group=True)),
                              ("per_image.csv", evaluation.per_image_rows(), None)):
        path = out / name
        write_csv(path, table, cols or (list(table[0]) if table else []))
        written.append(path)
    if all(len(r.labels) == len(targets) for r in evaluation.runs) and all(t.masks is not None for t in targets):
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        stack = []
        for n, target in enumerate(targets):
            fitted = [(r.name, r.labels[n], r.iou_raster[n], float(evaluation.mean_iou(r, raster=True)[n]))
                      for r in evaluation.runs]
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
    from fit3dmm.evaluate.html_report import write_html_report  # it imports this module's tables

    written.append(write_html_report(out, evaluation, written, title=title, failures=failures))
    return written


def reference_name(evaluation: Evaluation) -> str:
    """The configuration the others are tested against: the one named ``prdl`` when present, else the first."""
    names = [run.name for run in evaluation.runs]
    return REFERENCE if REFERENCE in names else names[0]


def statistics_markdown(evaluation: Evaluation) -> str:
    """The statistics paragraphs of ``table.md`` ("" when the runs have no Part IoU), no trailing newline: each
    of :func:`statistics_tables`' paragraphs followed by its Markdown table."""
    return "\n\n".join(f"{lead}\n\n{markdown_table(rows, columns)}"
                       for lead, rows, columns in statistics_tables(evaluation))


def statistics_tables(evaluation: Evaluation) -> list[tuple[str, list[dict[str, object]], list[str]]]:
    """The statistics of ``table.md`` and ``report.html`` as (paragraph in Markdown, rows, columns) per table
    ([] when the runs have no Part IoU); the cells are already formatted strings or integers.

    *Spread*: per configuration, per group and for the per-photo mean, "mean ± std" over photos
    (:func:`~fit3dmm.evaluate.statistics.mean_std`, NaN regions left out, "(n = k)" when fewer than all photos
    count).  *Paired* (absent when no configuration pairs with the reference): per configuration other than
    :func:`reference_name` (that shares a scored photo with it), over the per-photo mean IoU
    (:meth:`Evaluation.mean_iou`), the mean difference reference − configuration with its paired bootstrap
    interval (:func:`~fit3dmm.evaluate.statistics.paired_bootstrap`, seed 0) and the reference's
    wins/ties/losses (:func:`~fit3dmm.evaluate.statistics.win_tie_loss`).
    """
    if not evaluation.runs or any(run.iou is None or not len(run.iou) for run in evaluation.runs):
        return []
    scores = [*evaluation.groups, "mean"]
    photos = len(evaluation.names)
    spread = []
    for run in evaluation.runs:
        table = np.column_stack([run.iou, evaluation.mean_iou(run)])
        row: dict[str, object] = {"config": run.name}
        for column, mean, std, count in zip(scores, *mean_std(table), strict=True):
            row[column] = f"{mean:.3f} ± {std:.3f}" + (f" (n = {count})" if count < photos else "")
        spread.append(row)
    tables = [("**Spread over photos.** Mean ± sample standard deviation (n − 1) over the photos of each region's "
               "IoU and of the per-photo mean (as the paper's Table 1); a region absent from a photo is left out "
               f"(n = photos counted, when fewer than all {photos}).", spread, ["config", *scores])]
    name = reference_name(evaluation)
    reference = evaluation.mean_iou(next(run for run in evaluation.runs if run.name == name))
    difference, interval = f"{name} − config", f"{100 * LEVEL:g} % interval"
    paired = []
    for run in evaluation.runs:
        other = evaluation.mean_iou(run)
        if run.name == name or np.isnan(reference + other).all():  # no pairs: NaN regions, or renders unscored
            continue
        mean, low, high = paired_bootstrap(reference, other)
        wins, ties, losses = win_tie_loss(reference, other)
        paired.append({"config": run.name, difference: f"{mean:+.3f}", interval: f"[{low:+.3f}, {high:+.3f}]",
                       "wins": wins, "ties": ties, "losses": losses})
    if paired:
        tables.append((f"**{name} against each configuration.** Per photo, d = {name}'s mean IoU − the "
                       f"configuration's (same photos, same rigid start); \"{difference}\" is the mean of d over "
                       f"the photos and \"{interval}\" its paired bootstrap percentile interval ({RESAMPLES} "
                       "resamples of the photos with replacement, seed 0, numpy's linear quantiles; photos where "
                       "either mean is NaN left out): an interval that excludes 0 is a difference the photo-to-photo "
                       f"spread does not explain.  wins / ties / losses: photos where d > {TIE:g}, |d| ≤ {TIE:g}, "
                       f"d < −{TIE:g}.", paired, ["config", difference, interval, "wins", "ties", "losses"]))
    return tables
