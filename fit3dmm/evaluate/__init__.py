"""What ``fit3dmm compare`` and the benchmarks share: labelled photo sets (:mod:`~fit3dmm.evaluate.datasets`),
targets observed through the one pipeline (:mod:`~fit3dmm.evaluate.targets`), experiments that fit several
configurations from one start and score them (:mod:`~fit3dmm.evaluate.experiments`), figures and reports
(:mod:`~fit3dmm.evaluate.figures`, :mod:`~fit3dmm.evaluate.reports`), the statistics of their tables
(:mod:`~fit3dmm.evaluate.statistics`) and the compare command (:mod:`~fit3dmm.evaluate.compare`)."""

from fit3dmm.evaluate.compare import run_compare
from fit3dmm.evaluate.datasets import LabelledPhoto, default_groups, fasseg_photos
from fit3dmm.evaluate.experiments import (
    Config,
    ConfigRun,
    Evaluation,
    compare_losses,
    evaluate_fits,
    loss_alone_configs,
    nanmean,
)
from fit3dmm.evaluate.figures import compare_figure
from fit3dmm.evaluate.reports import write_compare
from fit3dmm.evaluate.statistics import mean_std, paired_bootstrap, win_tie_loss
from fit3dmm.evaluate.targets import FitTarget, prepare_targets

__all__ = [
    "Config",
    "ConfigRun",
    "Evaluation",
    "FitTarget",
    "LabelledPhoto",
    "compare_figure",
    "compare_losses",
    "default_groups",
    "evaluate_fits",
    "fasseg_photos",
    "loss_alone_configs",
    "mean_std",
    "nanmean",
    "paired_bootstrap",
    "prepare_targets",
    "run_compare",
    "win_tie_loss",
    "write_compare",
]
