"""Evaluation experiments: fit several configurations (loss sets) to the same targets from one shared start,
and score each fit.

The experiment of the paper's Fig. 8/9 and Table 1: every configuration starts from the *same* rigid
initialisation (the start and rigid stages of :class:`~fit3dmm.fitting.problem.FitProblem`, run once per
batch), then refines identity, expression and pose with its own losses.  :func:`compare_losses` builds one
configuration per geometric loss, that loss alone plus the coefficient regulariser (``reg``, stated in every
table; no landmark or photometric term); ``prdl:min``, ``prdl:max``, ``prdl:ave`` (or ``prdl:min+ave``) fit
PRDL with only those distance statistics, the paper's Fig. 10 ablation.  :func:`evaluate_fits` runs any set of
configurations (the benchmark scripts use it for ``prdl,lmk,reg`` vs ``lmk,reg`` vs ``prdl,reg``); a
:class:`Config` adds loss options (e.g. PRDL's ``stats``) to its weights.

Each fit is scored by Part IoU at the photo's resolution against the photo's target masks (a hand-made label map
when one is given, e.g. FASSEG, else the built-in landmark segmenter run on the photo), two ways (issue #13):
by default the paper's protocol (:mod:`fit3dmm.evaluate.render_score`: the fit rendered grey in the photo
frame, segmented by the built-in segmenter) is the primary score, and the raster-label IoU
(:mod:`fit3dmm.metrics.fit_metrics`: the model's own Algorithm 1 labels rasterised with a hard z-buffer, the
labels the point losses pull onto the masks) is always kept beside it; ``scorer="raster"`` makes the latter the
only one, as before.

Typical use::

    pipeline = Pipeline.create(losses="prdl,icp,reg", schedule=Schedule(iterations=100))
    targets, failed = prepare_targets(fasseg_photos(root, "test"), pipeline)
    evaluation = compare_losses(pipeline, targets, ["prdl", "prdl:min", "icp"])
    write_compare(evaluation, targets, "out/")
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch

from fit3dmm.api import Pipeline
from fit3dmm.defaults import GEOMETRIC_LOSSES, STATUS_OK
from fit3dmm.evaluate.render_score import render_segment_iou
from fit3dmm.evaluate.targets import FitTarget
from fit3dmm.fitting.problem import FitProblem
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.losses.prdl import STATS as PRDL_STATS
from fit3dmm.losses.registry import parse_losses
from fit3dmm.metrics.fit_metrics import PART_GROUPS, fit_part_iou, pad_masks, render_fit_labels
from fit3dmm.observe.detect import MediaPipeDetector
from fit3dmm.types.observation import Observation

Progress = Callable[[str], None]

LOSS_VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {"prdl": ("stats", PRDL_STATS)}
"""Losses a compared configuration may narrow: name → (keyword, choices); ``prdl:min+ave`` fits PRDL with
``stats=("min", "ave")``, i.e. F = {f_min, f_ave}."""

SCORERS = ("render", "raster")
"""The primary Part IoU of an evaluation: ``render`` segments a grey render of the fit (the paper's protocol,
:mod:`fit3dmm.evaluate.render_score`), ``raster`` rasterises the model's own part labels."""


@dataclass(frozen=True, eq=False)
class Config(Mapping[str, float]):
    """One configuration: loss weights {name: λ} and keyword arguments per loss for this configuration only.

    The configuration is the mapping of its weights, so a plain {name: λ} is one without options (and equal
    to it).  ``loss_options`` are merged over the schedule's (``Schedule.loss_options``) keyword by keyword.
    """

    weights: Mapping[str, float]
    loss_options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        extra = set(self.loss_options) - set(self.weights)
        if extra:
            raise ValueError(f"options given for {sorted(extra)}, which the configuration {dict(self.weights)} "
                             "does not use")
        object.__setattr__(self, "weights", dict(self.weights))
        object.__setattr__(self, "loss_options", {k: dict(v) for k, v in self.loss_options.items()})

    def __getitem__(self, name: str) -> float:
        return self.weights[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)

    def __eq__(self, other: object) -> bool:
        """Same weights and options (a plain mapping has none)."""
        if not isinstance(other, Mapping):
            return NotImplemented
        options = other.loss_options if isinstance(other, Config) else {}
        return self.weights == dict(other) and self.loss_options == options

    def schedule(self, base: Schedule) -> Schedule:
        """``base`` with this configuration's loss options merged over its own."""
        if not self.loss_options:
            return base
        merged = {name: dict(options) for name, options in base.loss_options.items()}
        for name, options in self.loss_options.items():
            merged[name] = {**merged.get(name, {}), **options}
        return dataclasses.replace(base, loss_options=merged)


@dataclass
class ConfigRun:
    """The fits of one configuration on N targets (row n = target n).

    Attributes:
        name: configuration label (e.g. ``"prdl"`` or ``"prdl,lmk,reg"``).
        weights: the loss weights used.
        iou: (N, G) float64 Part IoU per group by the evaluation's scorer (NaN rows: targets not scored), or
            None when the targets have no masks.
        labels: per target the rasterised (H, W) int8 part-label map (−1 none), kept for figures, or empty.
        landmarks68: (N, 68, 2) fitted projected landmarks in photo pixels.
        pose_deg: (N, 3) fitted yaw, pitch, roll.
        expression: (N, E) fitted expression coefficients (the model's ``expression_names``).
        vertices: (N, V, 3) fitted model-space vertices (cm), when kept.
        vertices_cam: (N, V, 3) fitted camera-space vertices (cm), when kept.
        status: per target "ok" or "diverged".
        iterations: per target, the refinement iterations it ran.
        fit_seconds: per batch, the seconds of the configuration's own stages (landmark stage and refinement).
        batch_sizes: the number of faces of each batch.
        loss_options: the configuration's own loss options (:class:`Config`), e.g. ``{"prdl": {"stats":
            ("min",)}}``.
        iou_raster: (N, G) raster-label Part IoU (``iou`` itself when that is the scorer), or None.
        unscored: per target "" or why the render scorer could not score it; empty without that scorer.
    """

    name: str
    weights: dict[str, float]
    iou: np.ndarray | None
    labels: list[np.ndarray]
    landmarks68: np.ndarray
    pose_deg: np.ndarray
    expression: np.ndarray
    vertices: np.ndarray | None
    vertices_cam: np.ndarray | None
    status: list[str]
    iterations: list[int]
    fit_seconds: list[float]
    batch_sizes: list[int]
    loss_options: dict[str, dict[str, object]] = field(default_factory=dict)
    iou_raster: np.ndarray | None = None
    unscored: list[str] = field(default_factory=list)

    @property
    def seconds_per_face(self) -> float:
        """Median over batches of the configuration's fitting seconds per face (divided by the batch size)."""
        if not self.fit_seconds:
            return math.nan
        return float(np.median([s / b for s, b in zip(self.fit_seconds, self.batch_sizes, strict=True)]))


@dataclass
class Evaluation:
    """Every configuration's fits on the same targets.

    ``groups``: the scored regions (name → parts); ``mean_groups``: those averaged into ``mean`` (default
    all); ``rigid_seconds``: per batch, the shared rigid stage; ``regularizer``: the ``reg`` weight every
    configuration shares (for the tables), or None; ``scorer``: what ``ConfigRun.iou`` is (:data:`SCORERS`);
    with ``render`` the tables add the raster-label IoU (``raster_*`` columns) and the ``unscored`` photos.
    """

    names: list[str]
    groups: dict[str, tuple[str, ...]]
    runs: list[ConfigRun]
    rigid_seconds: list[float] = field(default_factory=list)
    regularizer: float | None = None
    mean_groups: tuple[str, ...] | None = None
    scorer: str = "raster"

    @property
    def both_scores(self) -> bool:
        """Whether the tables show the raster-label IoU beside the primary score (the render scorer's)."""
        return self.scorer == "render"

    def mean_iou(self, run: ConfigRun, raster: bool = False) -> np.ndarray:
        """(N,) per-target mean IoU over ``mean_groups`` (NaN regions skipped), of ``run.iou`` or, with
        ``raster``, of ``run.iou_raster``."""
        iou = run.iou_raster if raster else run.iou
        if iou is None:
            raise ValueError(f"{run.name} has no {'raster-label ' if raster else ''}Part IoU")
        names = list(self.groups)
        columns = [names.index(g) for g in (self.mean_groups or names)]
        return nanmean(iou[:, columns], axis=1)

    def summary_rows(self) -> list[dict[str, object]]:
        """One row per configuration: mean IoU over targets per group, ``mean`` (the mean over targets of
        the per-target mean over ``mean_groups``; targets not scored left out), ``images``, ``iterations`` (mean
        refinement iterations run), ``ms_per_face`` (landmark stage and refinement), ``diverged``; with
        :attr:`both_scores` also ``raster_<group>``, ``raster_mean`` and ``unscored`` (the count)."""
        rows = []
        for run in self.runs:
            row: dict[str, object] = {"config": run.name}
            if run.iou is not None and len(run.iou):
                for prefix, raster in (("", False), ("raster_", True)) if self.both_scores else (("", False),):
                    iou = run.iou_raster if raster else run.iou
                    for g, name in enumerate(self.groups):
                        row[prefix + name] = float(nanmean(iou[:, g]))
                    row[prefix + "mean"] = float(nanmean(self.mean_iou(run, raster)))
            if self.both_scores:
                row["unscored"] = sum(bool(reason) for reason in run.unscored)
            row["images"] = len(run.status)
            row["iterations"] = float(np.mean(run.iterations)) if run.iterations else 0.0
            row["ms_per_face"] = 1000.0 * run.seconds_per_face
            row["diverged"] = sum(s != STATUS_OK for s in run.status)
            rows.append(row)
        return rows

    def per_image_rows(self) -> list[dict[str, object]]:
        """One row per (target, configuration) with the IoU of each group, their mean and the status; with
        :attr:`both_scores` also the raster-label IoU (``raster_*``) and ``unscored`` (the reason, or "")."""
        rows = []
        for run in self.runs:
            for n, name in enumerate(self.names):
                row: dict[str, object] = {"image": name, "config": run.name}
                if run.iou is not None:
                    for prefix, raster in (("", False), ("raster_", True)) if self.both_scores else (("", False),):
                        iou = run.iou_raster if raster else run.iou
                        for g, group in enumerate(self.groups):
                            row[prefix + group] = float(iou[n, g])
                        row[prefix + "mean"] = float(self.mean_iou(run, raster)[n])
                row["status"] = run.status[n]
                if self.both_scores:
                    row["unscored"] = run.unscored[n]
                rows.append(row)
        return rows

    def table_columns(self, every_group: bool = False) -> list[str]:
        """The summary's columns: the primary score per group and its mean, then (:attr:`both_scores`) the
        raster-label mean (and per group with ``every_group``, as the CSV has them) and the unscored count."""
        has_iou = any(r.iou is not None for r in self.runs)
        scores = [*self.groups, "mean"] if has_iou else []
        if self.both_scores:
            raster = [f"raster_{g}" for g in self.groups] if every_group and has_iou else []
            scores += [*raster, "raster_mean"] if has_iou else []
            scores.append("unscored")
        return ["config", *scores, "images", "iterations", "ms_per_face", "diverged"]


def nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """``np.nanmean`` without the warning on all-NaN slices (whose NaN is the intended answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def evaluate_fits(
    pipeline: Pipeline,
    targets: Sequence[FitTarget],
    configs: Mapping[str, Mapping[str, float]],
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    batch_size: int = 1,
    keep_labels: bool = False,
    keep_vertices: bool = False,
    regularizer: float | None = None,
    mean_groups: Sequence[str] | None = None,
    scorer: str = "render",
    progress: Progress | None = None,
) -> Evaluation:
    """Fit every configuration to every target from a shared start, and score the fits.

    Args:
        pipeline: the model (annotated when a configuration needs parts), device, schedule and start;
            ``schedule.rigid_iterations`` is the shared rigid stage.
        targets: from :func:`~fit3dmm.evaluate.targets.prepare_targets` (with masks for Part IoU).
        configs: label → loss weights ({name: λ}, e.g. from :func:`~fit3dmm.losses.registry.parse_losses`), or a
            :class:`Config` (weights and loss options, e.g. from :func:`loss_alone_configs`).
        groups: scored regions (name → parts); default every part on its own.
        batch_size: faces fitted together (results do not depend on it; time per face does).
        keep_labels: keep the rasterised label maps (for :func:`~fit3dmm.evaluate.reports.write_compare`'s
            figures).
        keep_vertices: keep fitted model-space and camera-space vertices.
        regularizer: the ``reg`` weight shared by the configurations, recorded for the tables.
        mean_groups: the groups averaged into the ``mean`` column (default all).
        scorer: the primary Part IoU (:data:`SCORERS`): ``render`` segments a render of each fit (one mediapipe
            FaceMesh in image mode for the run; a fit whose render shows no face gets a NaN row and its reason in
            ``unscored``) and keeps the raster-label IoU beside it; ``raster`` scores the raster labels alone.
        progress: called with a line of text after each batch and configuration.
    """
    if not targets:
        raise ValueError("no target to fit (every photo failed, or none was given)")
    if not configs:
        raise ValueError("no configuration to fit")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {scorer!r}")
    model, schedule = pipeline.model, pipeline.schedule
    groups = {k: tuple(v) for k, v in (groups or PART_GROUPS).items()}
    if mean_groups is not None and (not mean_groups or set(mean_groups) - set(groups)):
        raise ValueError(f"mean_groups must be a non-empty subset of {list(groups)}, got {list(mean_groups)}")
    scored = all(t.masks is not None for t in targets)
    part_labels = model.part_labels
    if scored and int(part_labels.max()) < 0:
        raise ValueError(f"{model.name} has no part labels; annotate it (ensure_annotations) to score Part IoU")
    configs = {label: c if isinstance(c, Config) else Config(c) for label, c in configs.items()}
    names = [t.name for t in targets]
    store: dict[str, dict[str, list]] = {label: {k: [] for k in ("iou", "raster", "unscored", "labels", "lmk", "pose",
                                                                 "expr", "verts", "cam", "status", "seconds",
                                                                 "batch", "iterations")}
                                         for label in configs}
    rigid_seconds = []
    by_render = scored and scorer == "render"
    with ExitStack() as stack:
        detector = stack.enter_context(MediaPipeDetector(max_faces=1)) if by_render else None
        for start in range(0, len(targets), batch_size):
            chunk = list(targets[start: start + batch_size])
            problem = FitProblem(model, Observation.stack([t.observation for t in chunk]), schedule)
            init = None if pipeline.start is None else pipeline.start(problem.observation)
            shared = problem.start(init)
            problem.rigid(shared)
            rigid_seconds.append(problem.timings.get("rigid", math.nan))
            frame = (max(t.photo.shape[0] for t in chunk), max(t.photo.shape[1] for t in chunk))
            target_masks = pad_masks([t.masks for t in chunk], frame) if scored else None
            for label, config in configs.items():
                problem.schedule = config.schedule(schedule)  # its own loss options; the stages are the same
                objective = problem.objective(config.weights)
                params = problem.start({**(init or {}), **shared.as_dict()}, photometric="pho" in config)
                clock = time.perf_counter()
                problem.landmarks(params, objective)
                refinement = problem.refine(params, objective)
                seconds = time.perf_counter() - clock
                result = problem.result(params, objective, refinement)
                out = store[label]
                if scored:
                    labels = render_fit_labels(result, part_labels, frame)
                    out["raster"].append(fit_part_iou(result, part_labels, target_masks, groups,
                                                      labels=labels.cpu()).numpy())
                    if detector is not None:
                        scores = [render_segment_iou(result, b, t.masks, detector, groups)
                                  for b, t in enumerate(chunk)]
                        out["iou"].append(np.stack([np.full(len(groups), np.nan) if score.iou is None else score.iou
                                                    for score in scores]))
                        out["unscored"] += [score.reason or "" for score in scores]
                    if keep_labels:
                        out["labels"] += [labels[b, : t.photo.shape[0], : t.photo.shape[1]].to(torch.int8).cpu().numpy()
                                          for b, t in enumerate(chunk)]
                out["lmk"].append(result.landmarks68_photo.detach().double().cpu().numpy())
                out["pose"].append(result.pose_deg.detach().double().cpu().numpy())
                out["expr"].append(result.coefficients["expression"].detach().double().cpu().numpy())
                if keep_vertices:
                    out["verts"].append(result.vertices.detach().float().cpu().numpy())
                    out["cam"].append(result.vertices_cam.detach().float().cpu().numpy())
                out["status"] += result.status
                out["seconds"].append(seconds)
                out["batch"].append(len(chunk))
                out["iterations"] += [result.iterations(b) for b in range(len(chunk))]
                if progress is not None:
                    done = min(start + batch_size, len(targets))
                    progress(f"{label}: {done}/{len(targets)} faces, {seconds:.1f} s")
    runs = []
    for label, config in configs.items():
        out = store[label]
        runs.append(ConfigRun(
            name=label, weights=dict(config.weights), loss_options=dict(config.loss_options),
            iou=np.concatenate(out["iou" if by_render else "raster"]) if scored else None,
            iou_raster=np.concatenate(out["raster"]) if scored else None,
            unscored=out["unscored"],
            labels=out["labels"],
            landmarks68=np.concatenate(out["lmk"]),
            pose_deg=np.concatenate(out["pose"]),
            expression=np.concatenate(out["expr"]),
            vertices=np.concatenate(out["verts"]) if keep_vertices else None,
            vertices_cam=np.concatenate(out["cam"]) if keep_vertices else None,
            status=out["status"], iterations=out["iterations"],
            fit_seconds=out["seconds"], batch_sizes=out["batch"],
        ))
    return Evaluation(names=names, groups=groups, runs=runs, rigid_seconds=rigid_seconds, regularizer=regularizer,
                      mean_groups=None if mean_groups is None else tuple(mean_groups),
                      scorer="render" if by_render else "raster")


def loss_variant(label: str) -> tuple[str, dict[str, object]]:
    """A compared loss as typed → (loss name, its options): ``"prdl:min+ave"`` → ``("prdl", {"stats": ("min",
    "ave")})`` (:data:`LOSS_VARIANTS`; choices in their canonical order), a plain name → (name, {}).

    Raises:
        ValueError: options on a loss that has none, an unknown or repeated choice.
    """
    name, sep, choice = label.partition(":")
    if not sep:
        return name, {}
    if name not in LOSS_VARIANTS:
        raise ValueError(f"{label!r}: {name} takes no options (only {', '.join(LOSS_VARIANTS)} here)")
    keyword, choices = LOSS_VARIANTS[name]
    picked = choice.split("+")
    if any(c not in choices for c in picked) or len(set(picked)) != len(picked):
        raise ValueError(f"{label!r}: choose among {', '.join(choices)}, each once, joined by '+' "
                         f"(e.g. {name}:{choices[0]}+{choices[-1]})")
    return name, {keyword: tuple(c for c in choices if c in picked)}


def loss_alone_configs(losses: Sequence[str], weights: Mapping[str, float] | None = None,
                       regularize: bool = True) -> dict[str, Config]:
    """Each geometric loss alone (plus ``reg`` unless ``regularize`` is False), labelled as typed, default weights
    from the registry with ``weights`` overrides by loss name (a ``reg`` override applies to every
    configuration; a ``prdl`` one to every PRDL variant).  A loss may carry options (:func:`loss_variant`):
    ``prdl:min`` fits PRDL with F = {f_min} alone.

    Raises:
        ValueError: an unknown or non-geometric loss, a bad option, a configuration listed twice, or an
            override for a loss not listed.
    """
    labels = [n.strip() for n in losses if n.strip()]
    if not labels:
        raise ValueError("no loss to compare")
    wrong = [n for n in labels if n.partition(":")[0] not in GEOMETRIC_LOSSES]
    if wrong:
        raise ValueError(f"compare fits geometric losses alone; {wrong} is not among {', '.join(GEOMETRIC_LOSSES)}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"a loss is listed twice in {labels}")
    variants = {label: loss_variant(label) for label in labels}
    overrides = dict(weights or {})
    unknown = set(overrides) - {name for name, _ in variants.values()} - ({"reg"} if regularize else set())
    if unknown:
        raise ValueError(f"weights given for {sorted(unknown)}, which are not compared")
    configs = {}
    for label, (name, options) in variants.items():
        selected = [name, "reg"] if regularize else [name]
        configs[label] = Config(parse_losses(selected, {k: v for k, v in overrides.items() if k in selected}),
                                {name: options} if options else {})
    return configs


def compare_losses(
    pipeline: Pipeline,
    targets: Sequence[FitTarget],
    losses: Sequence[str] = GEOMETRIC_LOSSES,
    *,
    weights: Mapping[str, float] | None = None,
    regularize: bool = True,
    **options: object,
) -> Evaluation:
    """Each geometric loss alone (with the regulariser unless ``regularize`` is False) from the same rigid
    start, ``losses`` as :func:`loss_alone_configs` takes them (e.g. ``["prdl:min", "prdl:max", "prdl:ave",
    "prdl"]``); ``options`` go to :func:`evaluate_fits` (groups, batch_size, keep_labels, ...)."""
    configs = loss_alone_configs(losses, weights, regularize)
    reg = next(iter(configs.values())).get("reg")
    return evaluate_fits(pipeline, targets, configs, regularizer=reg, **options)  # type: ignore[arg-type]
