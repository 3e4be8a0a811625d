"""Compare fit configurations (e.g. each geometric loss alone) on photos with a part-segmentation target.

The experiment of the paper's Fig. 8/9 and Table 1: every configuration starts from the *same* rigid
initialisation (PnP on the detected 68 landmarks, then Adam on rotation and translation against the landmarks
only), then fits identity, expression and pose with its own losses.  :func:`compare_losses` builds one
configuration per geometric loss, that loss alone plus the coefficient regulariser (``reg``, stated in every
table; no landmark or photometric term).  :func:`evaluate_fits` runs any set of configurations (the benchmark
scripts use it for ``prdl,lmk,reg`` vs ``lmk,reg`` vs ``prdl,reg``).

Each fit is scored by Part IoU at the photo's resolution (:mod:`fit3dmm.metrics.fit_metrics`: the fitted mesh's
part labels rendered with a hard z-buffer stand in for the paper's segment-the-render step, which needs a
parsing network we do not have) against the photo's target masks: a hand-made label map when one is given
(e.g. FASSEG), else the built-in landmark segmenter run on the photo.  The fit itself uses the same label map
(cleaned up and resampled into the crop, :func:`~fit3dmm.observe.segment.segment_observation`) or the
built-in segmenter.

Typical use::

    targets, failed = prepare_targets(fasseg_photos(root, "test"))
    evaluation = compare_losses(model, targets, ["prdl", "icp"], config=FitConfig(iterations=100))
    write_compare(evaluation, targets, "out/")
"""

from __future__ import annotations

import csv
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from fit3dmm.fitting.engine import FitConfig, fit_observation
from fit3dmm.io.atomic import atomic_write
from fit3dmm.io.images import write_png
from fit3dmm.losses.registry import GEOMETRIC_LOSSES, loss_class, parse_losses
from fit3dmm.metrics.fit_metrics import FASSEG_GROUPS, PART_GROUPS, fit_part_iou, pad_masks, render_fit_labels
from fit3dmm.metrics.report import markdown_table
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.detect import LandmarkDetector, get_detector
from fit3dmm.observe.image import load_image
from fit3dmm.observe.labelmaps import FORMATS, load_label_map
from fit3dmm.observe.observation import Observation
from fit3dmm.observe.observe import observe_face
from fit3dmm.observe.points import DEFAULT_COUNTS
from fit3dmm.observe.segment import color_part_map, overlay_part_map, segment_from_landmarks, segment_observation
from fit3dmm.parts import PART_INDEX

Progress = Callable[[str], None]


@dataclass
class LabelledPhoto:
    """A photo (a path or an (H, W, 3) uint8 RGB array) and, optionally, its label map (``label_format`` among
    :data:`~fit3dmm.observe.labelmaps.FORMATS`)."""

    name: str
    image: Path | np.ndarray
    label: Path | None = None
    label_format: str | None = None

    def __post_init__(self) -> None:
        if (self.label is None) != (self.label_format is None):
            raise ValueError(f"{self.name}: a label map and its format go together")
        if self.label_format is not None and self.label_format not in FORMATS:
            raise ValueError(f"unknown label map format {self.label_format!r}; choose one of {sorted(FORMATS)}")


@dataclass
class FitTarget:
    """One detected face, ready to fit and to score.

    Attributes:
        name: identifier of the photo.
        photo: (H, W, 3) uint8 RGB.
        observation: B = 1, with part masks and point sets when segmentation was asked for.
        masks: (8, H, W) bool target part masks in photo pixels (a label map as loaded, or the built-in
            segmenter on the photo), or None.
        landmarks68: (68, 2) detected 68 landmarks in photo pixels.
        timings: seconds for ``detect`` (the detector) and ``segment`` (the observation's part masks and point
            sets, :func:`~fit3dmm.observe.segment.segment_observation`).
    """

    name: str
    photo: np.ndarray
    observation: Observation
    masks: np.ndarray | None
    landmarks68: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ConfigRun:
    """The fits of one configuration on N targets (row n = target n).

    Attributes:
        name: configuration label (e.g. ``"prdl"`` or ``"prdl,lmk,reg"``).
        weights: the loss weights used.
        iou: (N, G) float64 Part IoU per group, or None when the targets have no masks.
        labels: per target the rendered (H, W) int8 part-label map (−1 none), kept for figures, or empty.
        landmarks68: (N, 68, 2) fitted projected landmarks in photo pixels.
        pose_deg: (N, 3) fitted yaw, pitch, roll.
        vertices: (N, V, 3) fitted model-space vertices (cm), when kept.
        vertices_cam: (N, V, 3) fitted camera-space vertices (cm), when kept.
        status: per target "ok" or "diverged".
        iterations: Adam iterations of the shape stage.
        fit_seconds: per batch, the seconds of the shape stage (the loop over iterations).
        batch_sizes: the number of faces of each batch.
    """

    name: str
    weights: dict[str, float]
    iou: np.ndarray | None
    labels: list[np.ndarray]
    landmarks68: np.ndarray
    pose_deg: np.ndarray
    vertices: np.ndarray | None
    vertices_cam: np.ndarray | None
    status: list[str]
    iterations: int
    fit_seconds: list[float]
    batch_sizes: list[int]

    @property
    def seconds_per_iteration(self) -> float:
        """Median over batches of the shape-stage seconds per iteration, per face (divided by the batch size)."""
        if self.iterations == 0 or not self.fit_seconds:
            return math.nan
        per_face = [s / self.iterations / b for s, b in zip(self.fit_seconds, self.batch_sizes, strict=True)]
        return float(np.median(per_face))


@dataclass
class Evaluation:
    """Every configuration's fits on the same targets.

    ``groups``: the scored regions (name → parts); ``mean_groups``: those averaged into ``mean`` (default
    all); ``rigid_seconds``: per batch, the shared rigid stage; ``regularizer``: the ``reg`` weight every
    configuration shares (for the tables), or None.
    """

    names: list[str]
    groups: dict[str, tuple[str, ...]]
    runs: list[ConfigRun]
    rigid_seconds: list[float] = field(default_factory=list)
    regularizer: float | None = None
    mean_groups: tuple[str, ...] | None = None

    def mean_iou(self, run: ConfigRun) -> np.ndarray:
        """(N,) per-target mean IoU over ``mean_groups`` (NaN regions skipped)."""
        if run.iou is None:
            raise ValueError(f"{run.name} has no Part IoU (the targets have no masks)")
        names = list(self.groups)
        columns = [names.index(g) for g in (self.mean_groups or names)]
        return nanmean(run.iou[:, columns], axis=1)

    def summary_rows(self) -> list[dict[str, object]]:
        """One row per configuration: mean IoU over targets per group, ``mean`` (the mean over targets of
        the per-target mean over ``mean_groups``), ``images``, ``iterations``, ``ms_per_it`` (per face),
        ``diverged``."""
        rows = []
        for run in self.runs:
            row: dict[str, object] = {"config": run.name}
            if run.iou is not None and len(run.iou):
                for g, name in enumerate(self.groups):
                    row[name] = float(nanmean(run.iou[:, g]))
                row["mean"] = float(nanmean(self.mean_iou(run)))
            row["images"] = len(run.status)
            row["iterations"] = run.iterations
            row["ms_per_it"] = 1000.0 * run.seconds_per_iteration
            row["diverged"] = sum(s != "ok" for s in run.status)
            rows.append(row)
        return rows

    def per_image_rows(self) -> list[dict[str, object]]:
        """One row per (target, configuration) with the IoU of each group, their mean and the status."""
        rows = []
        for run in self.runs:
            for n, name in enumerate(self.names):
                row: dict[str, object] = {"image": name, "config": run.name}
                if run.iou is not None:
                    for g, group in enumerate(self.groups):
                        row[group] = float(run.iou[n, g])
                    row["mean"] = float(self.mean_iou(run)[n])
                row["status"] = run.status[n]
                rows.append(row)
        return rows

    def table_columns(self) -> list[str]:
        has_iou = any(r.iou is not None for r in self.runs)
        scores = [*self.groups, "mean"] if has_iou else []
        return ["config", *scores, "images", "iterations", "ms_per_it", "diverged"]


def nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """``np.nanmean`` without the warning on all-NaN slices (whose NaN is the intended answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def fasseg_photos(root: str | Path, split: str = "test", limit: int | None = None) -> list[LabelledPhoto]:
    """The photos of a FASSEG folder (``index.csv``: split,name,image,label,...), numerically sorted.

    Args:
        root: the dataset folder (e.g. ``../shared/datasets/fasseg-frontal``).
        split: ``"train"``, ``"test"`` or ``"all"``.
        limit: keep the first ``limit`` photos.
    Raises:
        FileNotFoundError: no ``index.csv`` in ``root``.
    """
    root = Path(root)
    index = root / "index.csv"
    if not index.is_file():
        raise FileNotFoundError(f"{root}: no index.csv (expected the FASSEG frontal folder)")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be ≥ 1, got {limit}")
    with open(index, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if split == "all" or r["split"] == split]
    rows.sort(key=lambda r: (r["split"], int(r["name"])))
    photos = [LabelledPhoto(f"{r['split']}_{r['name']}", root / r["image"], root / r["label"], "fasseg")
              for r in rows]
    return photos[:limit] if limit is not None else photos


def prepare_targets(
    photos: Sequence[LabelledPhoto],
    *,
    segment: bool = True,
    fit_labels: bool = True,
    size: int = 224,
    detector: LandmarkDetector | None = None,
    counts: Mapping[str, int] | None = None,
    progress: Progress | None = None,
) -> tuple[list[FitTarget], dict[str, str]]:
    """Detect the largest face of each photo and build its observation and photo-level target masks.

    Args:
        photos: the photos (with label maps where available).
        segment: add part masks and point sets to the observations (needed by PRDL and the other part
            losses) and compute target masks in photo pixels; False keeps landmarks only.
        fit_labels: fit to a photo's label map when it has one; False fits to the built-in segmenter's parts
            while still scoring against the label map (the default pipeline on a labelled benchmark).
        size: working crop size.
        detector: landmark backend (default mediapipe, closed afterwards).
        counts: FPS sizes of the target point sets.
        progress: called with one line per photo that fails.
    Returns:
        (targets, failures): failures maps a photo's name to why it was skipped (no face, bad label map).
    """
    own = detector is None
    detector = detector or get_detector("mediapipe")
    targets: list[FitTarget] = []
    failures: dict[str, str] = {}
    try:
        for item in photos:
            try:
                photo = item.image if isinstance(item.image, np.ndarray) else load_image(item.image)
                start = time.perf_counter()
                found = detector.detect(photo)
                detect_s = time.perf_counter() - start
                if not found:
                    raise ValueError("no face found")
                obs = observe_face(photo, found[0], size=size, name=item.name)
                parts = masks = None
                if segment and item.label is not None:
                    parts = load_label_map(item.label, item.label_format, photo.shape[:2])
                start = time.perf_counter()
                if segment:
                    obs = segment_observation(obs, parts if fit_labels else None, counts or DEFAULT_COUNTS)
                segment_s = time.perf_counter() - start
                if segment:  # the score's target, in photo pixels
                    masks = parts.masks if parts is not None else \
                        segment_from_landmarks(found[0].landmarks, photo.shape[:2], photo).masks
            except (ValueError, OSError) as exc:
                failures[item.name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if progress is not None:
                    progress(f"{item.name}: skipped ({failures[item.name]})")
                continue
            targets.append(FitTarget(item.name, photo, obs, masks, np.asarray(found[0].landmarks68, np.float64),
                                     {"detect": detect_s, "segment": segment_s}))
    finally:
        if own:
            detector.close()
    return targets, failures


def rigid_init(model: FaceModel, observation: Observation, config: FitConfig) -> tuple[dict[str, torch.Tensor], float]:
    """The shared start: PnP + ``config.rigid_iterations`` of Adam on the pose against the 68 landmarks.

    Returns:
        ({"rotation": (B, 3), "translation": (B, 3)}, seconds).
    """
    result = fit_observation(model, observation, {"lmk": loss_class("lmk").default_weight},
                             replace(config, iterations=0))
    init = {k: result.coefficients[k].detach().clone() for k in ("rotation", "translation")}
    return init, result.timings.get("rigid", math.nan)


def evaluate_fits(
    model: FaceModel,
    targets: Sequence[FitTarget],
    configs: Mapping[str, Mapping[str, float]],
    *,
    config: FitConfig | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    batch_size: int = 1,
    keep_labels: bool = False,
    keep_vertices: bool = False,
    regularizer: float | None = None,
    mean_groups: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Fit every configuration to every target from a shared rigid start, and score the fits.

    Args:
        model: the face model (annotated when a configuration needs parts), on the device to fit on.
        targets: from :func:`prepare_targets` (with masks for Part IoU).
        configs: label → loss weights ({name: λ}, e.g. from :func:`~fit3dmm.losses.registry.parse_losses`).
        config: iterations and learning rates; ``rigid_iterations`` is the shared rigid stage.
        groups: scored regions (name → parts); default every part on its own.
        batch_size: faces fitted together (results do not depend on it; time per face does).
        keep_labels: keep the rendered label maps (for :func:`write_compare`'s figures).
        keep_vertices: keep fitted model-space and camera-space vertices.
        regularizer: the ``reg`` weight shared by the configurations, recorded for the tables.
        mean_groups: the groups averaged into the ``mean`` column (default all).
        progress: called with a line of text after each batch and configuration.
    """
    if not targets:
        raise ValueError("no target to fit (every photo failed, or none was given)")
    if not configs:
        raise ValueError("no configuration to fit")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    config = config or FitConfig()
    groups = {k: tuple(v) for k, v in (groups or PART_GROUPS).items()}
    if mean_groups is not None and (not mean_groups or set(mean_groups) - set(groups)):
        raise ValueError(f"mean_groups must be a non-empty subset of {list(groups)}, got {list(mean_groups)}")
    scored = all(t.masks is not None for t in targets)
    part_labels = model.part_labels
    if scored and int(part_labels.max()) < 0:
        raise ValueError(f"{model.name} has no part labels; annotate it (ensure_annotations) to score Part IoU")
    device = model.mean.device
    names = [t.name for t in targets]
    store: dict[str, dict[str, list]] = {label: {k: [] for k in ("iou", "labels", "lmk", "pose", "verts", "cam",
                                                                 "status", "seconds", "batch")}
                                         for label in configs}
    rigid_seconds = []
    shape_config = replace(config, rigid_iterations=0)
    for start in range(0, len(targets), batch_size):
        chunk = list(targets[start: start + batch_size])
        obs = Observation.stack([t.observation for t in chunk]).to(device)
        init, seconds = rigid_init(model, obs, config)
        rigid_seconds.append(seconds)
        frame = (max(t.photo.shape[0] for t in chunk), max(t.photo.shape[1] for t in chunk))
        target_masks = pad_masks([t.masks for t in chunk], frame) if scored else None
        for label, weights in configs.items():
            result = fit_observation(model, obs, dict(weights), shape_config, init=init)
            out = store[label]
            if scored:
                labels = render_fit_labels(result, part_labels, frame)
                iou = fit_part_iou(result, part_labels, target_masks, groups, labels=labels.cpu())
                out["iou"].append(iou.numpy())
                if keep_labels:
                    out["labels"] += [labels[b, : t.photo.shape[0], : t.photo.shape[1]].to(torch.int8).cpu().numpy()
                                      for b, t in enumerate(chunk)]
            out["lmk"].append(result.landmarks68_photo.detach().double().cpu().numpy())
            out["pose"].append(result.pose_deg.detach().double().cpu().numpy())
            if keep_vertices:
                out["verts"].append(result.vertices.detach().float().cpu().numpy())
                out["cam"].append(result.vertices_cam.detach().float().cpu().numpy())
            out["status"] += result.status
            out["seconds"].append(result.timings.get("fit", math.nan))
            out["batch"].append(len(chunk))
            if progress is not None:
                done = min(start + batch_size, len(targets))
                progress(f"{label}: {done}/{len(targets)} faces, {result.timings.get('fit', 0.0):.1f} s")
    runs = []
    for label, weights in configs.items():
        out = store[label]
        runs.append(ConfigRun(
            name=label, weights=dict(weights),
            iou=np.concatenate(out["iou"]) if scored else None,
            labels=out["labels"],
            landmarks68=np.concatenate(out["lmk"]),
            pose_deg=np.concatenate(out["pose"]),
            vertices=np.concatenate(out["verts"]) if keep_vertices else None,
            vertices_cam=np.concatenate(out["cam"]) if keep_vertices else None,
            status=out["status"], iterations=config.iterations,
            fit_seconds=out["seconds"], batch_sizes=out["batch"],
        ))
    return Evaluation(names=names, groups=groups, runs=runs, rigid_seconds=rigid_seconds, regularizer=regularizer,
                      mean_groups=None if mean_groups is None else tuple(mean_groups))


def loss_alone_configs(losses: Sequence[str], weights: Mapping[str, float] | None = None,
                       regularize: bool = True) -> dict[str, dict[str, float]]:
    """Each geometric loss alone (plus ``reg`` unless ``regularize`` is False), default weights from the
    registry with ``weights`` overrides (a ``reg`` override applies to every configuration).

    Raises:
        ValueError: an unknown or non-geometric loss, a loss listed twice, or an override for a loss not listed.
    """
    names = [n.strip() for n in losses if n.strip()]
    if not names:
        raise ValueError("no loss to compare")
    wrong = [n for n in names if n not in GEOMETRIC_LOSSES]
    if wrong:
        raise ValueError(f"compare fits geometric losses alone; {wrong} is not among {', '.join(GEOMETRIC_LOSSES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a loss is listed twice in {names}")
    overrides = dict(weights or {})
    unknown = set(overrides) - set(names) - ({"reg"} if regularize else set())
    if unknown:
        raise ValueError(f"weights given for {sorted(unknown)}, which are not compared")
    configs = {}
    for name in names:
        selected = [name, "reg"] if regularize else [name]
        configs[name] = parse_losses(selected, {k: v for k, v in overrides.items() if k in selected})
    return configs


def compare_losses(
    model: FaceModel,
    targets: Sequence[FitTarget],
    losses: Sequence[str] = GEOMETRIC_LOSSES,
    *,
    weights: Mapping[str, float] | None = None,
    regularize: bool = True,
    **options: object,
) -> Evaluation:
    """Each geometric loss alone (with the regulariser unless ``regularize`` is False) from the same rigid
    start; ``options`` go to :func:`evaluate_fits` (config, groups, batch_size, keep_labels, ...)."""
    configs = loss_alone_configs(losses, weights, regularize)
    reg = next(iter(configs.values())).get("reg")
    return evaluate_fits(model, targets, configs, regularizer=reg, **options)  # type: ignore[arg-type]


def default_groups(photos: Sequence[LabelledPhoto]) -> dict[str, tuple[str, ...]]:
    """FASSEG's classes when every photo has a FASSEG label map, else every part on its own."""
    if photos and all(p.label_format == "fasseg" for p in photos):
        return dict(FASSEG_GROUPS)
    return dict(PART_GROUPS)


# --------------------------------------------------------------------------- outputs

PANEL_HEIGHT = 256
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _short(name: str) -> str:
    """A region name short enough for a figure panel (left_eyebrow → l.brow)."""
    for long, short in (("left_", "l."), ("right_", "r."), ("eyebrow", "brow"), ("up_", "u."), ("down_", "d.")):
        name = name.replace(long, short)
    return name


def _box(mask: np.ndarray, shape: tuple[int, int], margin: float = 0.2) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of ``mask``'s bounding box grown by ``margin`` × its size, within ``shape``;
    the whole image when the mask is empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return 0, 0, shape[0], shape[1]
    dy, dx = margin * (rows[-1] - rows[0] + 1), margin * (cols[-1] - cols[0] + 1)
    return (max(0, int(rows[0] - dy)), max(0, int(cols[0] - dx)), min(shape[0], int(rows[-1] + 1 + dy)),
            min(shape[1], int(cols[-1] + 1 + dx)))


def _labelled_panel(image: np.ndarray, lines: Sequence[str], width: int) -> np.ndarray:
    """``image`` (h, w, 3) over a dark strip holding ``lines`` of text, padded to ``width``."""
    strip = np.full((14 * len(lines) + 6, width, 3), 30, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(strip, line, (4, 14 * (i + 1)), _FONT, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    top = np.zeros((image.shape[0], width, 3), np.uint8)
    top[:, : image.shape[1]] = image
    return np.concatenate([top, strip], axis=0)


def compare_figure(
    photo: np.ndarray,
    target_masks: np.ndarray,
    fitted: Sequence[tuple[str, np.ndarray, np.ndarray, float]],
    groups: Mapping[str, Sequence[str]],
    panel_height: int = PANEL_HEIGHT,
) -> np.ndarray:
    """One row: the photo with the target parts, then per configuration its fitted part regions over the photo
    (filled, part colours) with the target regions outlined in white, IoU under each panel.  Panels show the
    box around the target and the fitted regions (grown by 20 %), scaled to ``panel_height``.

    Args:
        photo: (H, W, 3) uint8 RGB.
        target_masks: (8, H, W) bool target masks.
        fitted: per configuration (name, labels (H, W) int, iou (G,), mean IoU).
        groups: the scored regions, in the order of ``iou``.
    Returns:
        (h, w, 3) uint8 RGB.
    """
    group_masks = [np.any([target_masks[PART_INDEX[p]] for p in parts], axis=0) for parts in groups.values()]
    union = np.any(group_masks, axis=0)
    covered = union | np.any([np.asarray(labels) >= 0 for _, labels, _, _ in fitted], axis=0) if fitted else union
    top, left, bottom, right = _box(covered, photo.shape[:2])
    photo = photo[top:bottom, left:right]
    group_masks = [m[top:bottom, left:right] for m in group_masks]
    union = union[top:bottom, left:right]
    fitted = [(n, np.asarray(lab)[top:bottom, left:right], iou, m) for n, lab, iou, m in fitted]
    h, w = photo.shape[:2]
    scale = panel_height / h
    pw = max(1, round(w * scale))

    def fit_size(image: np.ndarray, nearest: bool = False) -> np.ndarray:
        return cv2.resize(image, (pw, panel_height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

    outlines = []
    for mask in group_masks:
        contours, _ = cv2.findContours(fit_size(mask.astype(np.uint8), True), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        outlines.append(contours)
    target_labels = np.full((h, w), -1, np.int64)
    for parts, mask in zip(groups.values(), group_masks, strict=True):
        target_labels[mask & (target_labels < 0)] = PART_INDEX[parts[0]]
    target_view = fit_size(overlay_part_map(photo, color_part_map(target_labels), union))
    text_width = max(pw, 160)
    panels = [_labelled_panel(target_view, ["target", ""], text_width)]
    names = list(groups)
    for name, labels, iou, mean in fitted:
        labels = np.asarray(labels, np.int64)
        view = fit_size(overlay_part_map(photo, color_part_map(labels), labels >= 0, alpha=0.55))
        for contours in outlines:
            cv2.drawContours(view, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
        cells = [f"{_short(g)} {v:.2f}" for g, v in zip(names, iou, strict=True)]
        lines = [f"{name}  mean {mean:.3f}"] + ["  ".join(cells[i: i + 2]) for i in range(0, len(cells), 2)]
        panels.append(_labelled_panel(view, lines, text_width))
    height = max(p.shape[0] for p in panels)
    panels = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in panels]
    gap = np.full((height, 4, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return np.concatenate(row, axis=1)


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
               "target masks; mean = mean over images of the mean over regions; ms_per_it = shape-stage time "
               "per iteration per face.", ""]
    for run in evaluation.runs:
        header.append(f"- {run.name}: " + ", ".join(f"{k}={v:g}" for k, v in run.weights.items()))
    header.append("")
    text = "\n".join(header) + markdown_table(rows, columns) + "\n"
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
        cols = cols or (list(table[0]) if table else [])
        with atomic_write(path, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(table)
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


def run_compare(
    photos: Sequence[LabelledPhoto],
    losses: Sequence[str],
    out: str | Path,
    *,
    model: str | FaceModel = "ict",
    weights: Mapping[str, float] | None = None,
    regularize: bool = True,
    config: FitConfig | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    mean_groups: Sequence[str] | None = None,
    batch_size: int = 1,
    size: int = 224,
    device: str | torch.device | None = "auto",
    figure_rows: int = 8,
    progress: Progress | None = None,
) -> tuple[Evaluation, list[Path], dict[str, str]]:
    """``fit3dmm compare`` end to end: load and annotate the model, prepare the targets, fit each loss alone,
    write the tables and figures into ``out`` (:func:`write_compare`).

    Returns:
        (evaluation, written paths, failures by photo name).
    """
    from fit3dmm.api import resolve_device
    from fit3dmm.models.annotate import ensure_annotations
    from fit3dmm.models.store import load_model

    if not photos:
        raise ValueError("no photo to compare on")
    configs = loss_alone_configs(losses, weights, regularize)  # validate before any slow work
    face_model = load_model(model) if not isinstance(model, FaceModel) else model
    face_model = ensure_annotations(face_model.to(resolve_device(device)))
    targets, failures = prepare_targets(photos, size=size, progress=progress)
    reg = next(iter(configs.values())).get("reg")
    evaluation = evaluate_fits(face_model, targets, configs, config=config,
                               groups=groups or default_groups(photos), batch_size=batch_size, keep_labels=True,
                               regularizer=reg, mean_groups=mean_groups, progress=progress)
    written = write_compare(evaluation, targets, out, failures=failures, figure_rows=figure_rows,
                            title=f"Each geometric loss alone ({face_model.name}, {len(targets)} photos)")
    return evaluation, written, failures
