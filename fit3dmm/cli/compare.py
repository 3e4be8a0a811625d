"""``fit3dmm compare``: fit each geometric loss alone from the same start and compare their Part IoU.

Without photos it runs on the example photos of a source checkout (``examples/*.jpg``) and writes into
``./compare-out``, so that ``fit3dmm compare`` alone shows what the command gives.
"""

from __future__ import annotations

from pathlib import Path

import click

from fit3dmm.cli.common import (
    device_option,
    fail,
    model_option,
    parse_weights,
    schedule_options,
    seg_format_option,
    size_option,
    source_checkout,
    use_threads,
)
from fit3dmm.defaults import GEOMETRIC_LOSSES

GROUP_CHOICES = ("auto", "fasseg", "fasseg-sides", "parts")
DEFAULT_OUT = Path("compare-out")


def example_photos() -> list[Path]:
    """The example photos of the source checkout (``examples/*.jpg``): what compare runs on without IMAGEs."""
    folder = source_checkout() / "examples"
    photos = sorted(folder.glob("*.jpg"))
    if not photos:
        fail(f"no IMAGE given and no example photos in {folder} (they come with a source checkout); give "
             "IMAGE... or --dataset NAME DIR")
    return photos


@click.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out", default=DEFAULT_OUT, show_default=True, type=click.Path(path_type=Path),
              help="Output folder: table.md, table.csv, per_image.csv, figure.png, figures/, report.html.")
@click.option("--losses", default=",".join(GEOMETRIC_LOSSES), show_default=True,
              help="Comma-separated geometric losses, each fitted alone; prdl:min, prdl:max, prdl:ave (or "
                   "joined, prdl:min+ave) fit PRDL with only those distance statistics (Fig. 10 ablation).")
@click.option("--weight", "weights", multiple=True, callback=parse_weights,
              help="Override a loss weight, e.g. --weight prdl=1e-3 or --weight reg=0 (repeatable).")
@click.option("--no-reg", is_flag=True, help="Fit each loss without the coefficient regulariser.")
@click.option("--seg", "segs", multiple=True, type=click.Path(path_type=Path),
              help="Label map of an IMAGE (repeat once per image, same order); default: built-in segmenter.")
@seg_format_option
@click.option("--dataset", nargs=2, type=(click.Choice(["fasseg"]), click.Path(path_type=Path)), default=None,
              help="A labelled dataset: NAME DIR, e.g. --dataset fasseg ../shared/datasets/fasseg-frontal.")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="test", show_default=True,
              help="Split of --dataset.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N photos of --dataset.")
@click.option("--groups", type=click.Choice(GROUP_CHOICES), default="auto", show_default=True,
              help="Scored regions: FASSEG classes (eyes, nose, mouth, skin), the same plus each eye (the mean "
                   "stays over the four classes), or every part; auto = fasseg for FASSEG labels, else parts.")
@click.option("--scorer", type=click.Choice(["render", "raster"]), default="render", show_default=True,
              help="Part IoU of the main columns: render = the fit rendered grey and segmented by the built-in "
                   "segmenter (the paper's protocol; the raster-label IoU stays beside it), raster = the model's "
                   "own part labels rasterised (favours point losses).")
@model_option
@schedule_options
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 1024),
              help="Faces fitted together (results do not depend on it; on CPU 1 is fastest per face).")
@size_option
@device_option
@click.option("--figure-rows", default=8, show_default=True, type=click.IntRange(0, 1000),
              help="Photos stacked in figure.png (every photo gets figures/<name>.png).")
@click.option("--gradients", "gradients", metavar="PART", default=None,
              help="Also write gradients_<photo>_<PART>.png (each point loss's gradient on PART's predicted points "
                   "at the shared start) and descriptors_<photo>_<PART>.png (PRDL's Γ(C)) for the first photo, "
                   "e.g. --gradients nose.")
@click.option("--targets", "targets_from", type=click.Choice(["segmenter", "labels"]), default=None,
              help="What the losses are fitted to on labelled photos: the built-in segmenter's parts (what a user "
                   "gets) or the label maps (an oracle segmentation); the score is always against the label maps. "
                   "Default: segmenter with --dataset, labels with --seg.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def compare(images, out, losses, weights, no_reg, segs, seg_format, dataset, split, limit, groups, scorer, model,
            rigid_iterations, lm_iterations, iterations, batch, size, device, threads, figure_rows, gradients,
            targets_from, quiet) -> None:
    """Fit each geometric loss alone to IMAGES (or --dataset; neither: the example photos) and write Part IoU
    tables and figures."""
    from fit3dmm.observe.image import find_images

    if dataset is not None and (images or segs):
        fail("give IMAGE... (with --seg) or --dataset, not both")
    if segs and not images:
        fail("--seg labels the IMAGEs given; give them too")
    if bool(segs) != (seg_format is not None):
        fail("--seg and --seg-format go together")
    report = None if quiet else (lambda line: click.echo(line, err=True))
    paths: list[Path] = []
    if dataset is None:  # the inputs are checked before torch is loaded
        paths = find_images(list(images)) if images else example_photos()
        if segs and len(segs) != len(paths):
            fail(f"--seg was given {len(segs)} times for {len(paths)} images; give one label map per image")
        if not images and report is not None:
            report("no IMAGE given: comparing on " + ", ".join(str(p) for p in paths))
    use_threads(threads)
    from fit3dmm.api import ObserveOptions, Schedule
    from fit3dmm.evaluate import LabelledPhoto, fasseg_photos, run_compare
    from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS, FASSEG_GROUPS_BY_SIDE, PART_GROUPS
    from fit3dmm.metrics.report import markdown_table

    if dataset is not None:
        photos = fasseg_photos(dataset[1], split, limit)
    else:
        labels = list(segs) if segs else [None] * len(paths)
        photos = [LabelledPhoto(p.stem, p, s, seg_format if s is not None else None)
                  for p, s in zip(paths, labels, strict=True)]
    chosen = {"auto": None, "fasseg": FASSEG_GROUPS, "fasseg-sides": FASSEG_GROUPS_BY_SIDE,
              "parts": PART_GROUPS}[groups]
    mean_groups = list(FASSEG_GROUPS) if groups == "fasseg-sides" else None
    schedule = Schedule(rigid_iterations=rigid_iterations, lm_iterations=lm_iterations, iterations=iterations)
    evaluation, written, failures = run_compare(
        photos, losses.split(","), out, model=model, weights=weights, regularize=not no_reg, schedule=schedule,
        observe=ObserveOptions(size=size), groups=chosen, mean_groups=mean_groups, scorer=scorer,
        batch_size=batch, device=device, figure_rows=figure_rows, progress=report, gradients=gradients,
        targets_from=targets_from or ("segmenter" if dataset is not None else "labels"))
    click.echo(markdown_table(evaluation.summary_rows(), evaluation.table_columns()))
    if failures:
        click.echo(f"skipped {len(failures)} photo(s): " + "; ".join(f"{k} ({v})" for k, v in failures.items()))
    click.echo(f"wrote {len(written)} files under {out}")
