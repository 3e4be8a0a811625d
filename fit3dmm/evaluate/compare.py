"""``fit3dmm compare`` end to end: each geometric loss alone on labelled photos, tables and figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from fit3dmm.api import ObserveOptions, Pipeline, Schedule
from fit3dmm.defaults import DEFAULT_MODEL
from fit3dmm.evaluate.datasets import LabelledPhoto, default_groups
from fit3dmm.evaluate.experiments import Evaluation, Progress, evaluate_fits, loss_alone_configs
from fit3dmm.evaluate.gradients import GRADIENT_LOSSES, write_gradient_figures
from fit3dmm.evaluate.reports import write_compare
from fit3dmm.evaluate.targets import prepare_targets
from fit3dmm.models.face_model import FaceModel
from fit3dmm.types.parts import PART_NAMES

TARGET_SOURCES = ("labels", "segmenter")
"""What ``compare`` fits to on a labelled photo: its label map (oracle) or the built-in segmenter's parts."""


def run_compare(
    photos: Sequence[LabelledPhoto],
    losses: Sequence[str],
    out: str | Path,
    *,
    model: str | FaceModel = DEFAULT_MODEL,
    weights: Mapping[str, float] | None = None,
    regularize: bool = True,
    schedule: Schedule | None = None,
    observe: ObserveOptions | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    mean_groups: Sequence[str] | None = None,
    scorer: str = "render",
    batch_size: int = 1,
    device: str | torch.device | None = "auto",
    figure_rows: int = 8,
    progress: Progress | None = None,
    gradients: str | None = None,
    targets_from: str = "labels",
) -> tuple[Evaluation, list[Path], dict[str, str]]:
    """Set up the pipeline (model annotated, observe path, schedule), observe the photos, fit each loss alone
    from a shared start, write the tables and figures into ``out``
    (:func:`~fit3dmm.evaluate.reports.write_compare`).  ``scorer`` is the main columns' Part IoU
    (:data:`~fit3dmm.evaluate.experiments.SCORERS`; the raster-label IoU is kept beside the render one).
    ``gradients`` (a part name) also writes, for the first photo, each point loss's gradient on that part at the
    shared start and PRDL's target descriptor (:func:`~fit3dmm.evaluate.gradients.write_gradient_figures`).
    ``targets_from``: what the losses are fitted to on photos with a label map: ``"labels"`` (the map itself:
    an oracle segmentation) or ``"segmenter"`` (the built-in segmenter's parts, what a user gets); the score is
    always against the label map.

    Returns:
        (evaluation, written paths, failures by photo name).
    """
    if not photos:
        raise ValueError("no photo to compare on")
    if targets_from not in TARGET_SOURCES:
        raise ValueError(f"targets_from must be one of {', '.join(TARGET_SOURCES)}, got {targets_from!r}")
    configs = loss_alone_configs(losses, weights, regularize)  # validate before any slow work
    every_loss = list(dict.fromkeys(name for config in configs.values() for name in config))
    if gradients is not None and gradients not in PART_NAMES:
        raise ValueError(f"unknown part {gradients!r} for the gradients: choose among {', '.join(PART_NAMES)}")
    if gradients is not None and not set(every_loss) & set(GRADIENT_LOSSES):
        raise ValueError(f"the gradients need one of the losses {', '.join(GRADIENT_LOSSES)}")
    pipeline = Pipeline.create(model=model, losses=every_loss, schedule=schedule, observe=observe, device=device,
                               on_annotate=progress)
    targets, failures = prepare_targets(photos, pipeline, fit_labels=targets_from == "labels", progress=progress)
    reg = next(iter(configs.values())).get("reg")
    evaluation = evaluate_fits(pipeline, targets, configs, groups=groups or default_groups(photos),
                               batch_size=batch_size, keep_labels=True, regularizer=reg, mean_groups=mean_groups,
                               scorer=scorer, progress=progress)
    fitted_to = {"labels": "fitted to the label maps", "segmenter": "fitted to the built-in segmenter's parts, "
                 "scored against the label maps"}[targets_from]
    written = write_compare(evaluation, targets, out, failures=failures, figure_rows=figure_rows,
                            title=f"Each geometric loss alone ({pipeline.model.name}, {len(targets)} photos, "
                                  f"{fitted_to})")
    if gradients is not None:
        written += write_gradient_figures(pipeline, targets[0], gradients, out, every_loss)
    return evaluation, written, failures
