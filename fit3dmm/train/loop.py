"""Self-supervised training of the coefficient regressor with the fitting's own loss modules.

Per batch the network's coefficients go through the same :class:`~fit3dmm.fitting.prediction.PredictionBuilder`
and :class:`~fit3dmm.losses.base.Loss` modules as a per-photo fit (PRDL, landmarks, regulariser, ...), so
L = Σ λ_i·L_i is the fitting objective, averaged over the batch, optimised over the network's weights with
Adam (3DDFA-V3: learning rate 1e-4).  Faces with known coefficients (synthetic renders, ``--targets``) add
a supervision term ``sup``: the mean squared distance (cm²) between predicted and true camera-space vertices
of the fitted region.  At the end of every epoch and of the run, the BatchNorm statistics that eval mode uses
are re-estimated over a fixed spread of training batches (:func:`recalibrate_batchnorm`).

Runs are resumable: the batch order is a function of (seed, epoch) only (``DistributedSampler``), and a
checkpoint holds the network, the optimiser, the RNG state and the position in the epoch, so a resumed run
ends with the same weights as an uninterrupted one (bit for bit on CPU; on GPU up to the nondeterminism of
cuDNN kernels).  ``<out>/`` receives ``checkpoints/last.pt``, ``log.csv`` (every loss term, every step),
``val.csv`` (validation metrics per epoch), ``curves.png`` and, at the end, ``model.pt``.  Under ``torchrun``
only rank 0 writes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from fit3dmm.fitting.engine import _check_needs, build_losses
from fit3dmm.fitting.prediction import PredictionBuilder
from fit3dmm.io.atomic import atomic_save, atomic_write
from fit3dmm.losses.base import Prediction
from fit3dmm.metrics import mean_part_iou, nme, part_iou
from fit3dmm.models.face_model import FaceModel
from fit3dmm.observe.observation import Observation
from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.render.rasterize import render_labels
from fit3dmm.train.data import TrainItem, collate
from fit3dmm.train.distributed import DistInfo, barrier, mean_across
from fit3dmm.train.regressor import CoefficientLayout, Coefficients, FaceRegressor, save_regressor

CHECKPOINT_FORMAT = "fit3dmm.train-checkpoint"
SUPERVISION = "sup"


@dataclass
class TrainConfig:
    """Training settings.

    Attributes:
        weights: selected losses and their weights ({name: λ}, as from ``parse_losses``).
        size: crop size of the network's input (and of the observations).
        batch_size: faces per step *per process*.
        epochs: passes over the training items.
        lr: Adam learning rate (paper: 1e-4).
        supervise: weight of the ``sup`` term for faces with known coefficients (0 disables it).
        checkpoint_every: write ``checkpoints/last.pt`` every this many steps (and at each epoch's end).
        seed: initialisation and batch order.
        num_identity: identity modes predicted (default all).
        loss_options: keyword arguments per loss, as for fitting.
        max_steps: stop (with a checkpoint) after this many steps in total; None runs every epoch.
    """

    weights: dict[str, float]
    size: int = 224
    batch_size: int = 8
    epochs: int = 10
    lr: float = 1e-4
    supervise: float = 0.1
    checkpoint_every: int = 100
    seed: int = 0
    num_identity: int | None = None
    loss_options: dict[str, dict[str, object]] = field(default_factory=dict)
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("no loss selected")
        # ≥ 64 px: ResNet-50's last stage then has ≥ 2×2 cells, which BatchNorm needs for a batch of one face
        if self.size < 64 or self.batch_size < 1 or self.epochs < 0 or self.checkpoint_every < 1:
            raise ValueError("size must be ≥ 64, batch_size and checkpoint_every ≥ 1, epochs ≥ 0")
        if not (self.lr > 0 and self.supervise >= 0):
            raise ValueError("lr must be > 0 and supervise ≥ 0")

    def fingerprint(self) -> str:
        """Hash of the settings that a resumed run must share (not the step limits or checkpoint period)."""
        keep = {k: v for k, v in asdict(self).items() if k not in ("max_steps", "checkpoint_every", "epochs")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


class RegressionObjective(nn.Module):
    """The fitting's loss modules applied to predicted coefficients, plus the supervision term.

    Args:
        model: the full face model (its face region is used, as in fitting).
        weights: {loss name: λ}.
        supervise: weight of ``sup`` (mean squared vertex distance in cm² to known coefficients).
        loss_options: keyword arguments per loss.
    """

    def __init__(self, model: FaceModel, weights: dict[str, float], supervise: float = 0.0,
                 loss_options: dict[str, dict[str, object]] | None = None) -> None:
        super().__init__()
        self.region = model.region()
        self.weights = dict(weights)
        self.supervise = supervise
        self.losses = nn.ModuleDict(build_losses(self.weights, self.region, loss_options or {}))

    @property
    def term_names(self) -> list[str]:
        return list(self.weights) + ([SUPERVISION] if self.supervise > 0 else [])

    def check(self, observation: Observation) -> None:
        """Refuse observations that lack what a selected loss needs (before any training)."""
        _check_needs(dict(self.losses), observation, self.region)

    def predict(self, coeffs: Coefficients, observation: Observation) -> Prediction:
        """The Prediction of the fitting engine for ``coeffs`` on the crops of ``observation``."""
        camera = PerspectiveCamera.for_crop(observation.size, observation.batch_size, device=observation.device)
        builder = PredictionBuilder(self.region, camera, observation)
        return builder(coeffs, render_image="pho" in self.losses)

    def forward(self, coeffs: Coefficients, observation: Observation, target: Coefficients | None = None,
                has_target: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor], Prediction]:
        """→ (total (B,), unweighted terms {name: (B,)}, prediction)."""
        pred = self.predict(coeffs, observation)
        terms = {}
        for name, loss in self.losses.items():
            loss.prepare(observation)
            terms[name] = loss(pred, observation)
        if self.supervise > 0:
            term = pred.vertices_cam.new_zeros(observation.batch_size)
            if target is not None and has_target is not None and bool(has_target.any()):
                with torch.no_grad():
                    true = target.vertices_cam(self.region)
                dist2 = (pred.vertices_cam - true.to(pred.vertices_cam)).pow(2).sum(-1).mean(-1)
                term = torch.where(has_target.to(dist2.device), dist2, term)
            terms[SUPERVISION] = term
        total = sum(self._weight(name) * value for name, value in terms.items())
        return total, terms, pred

    def _weight(self, name: str) -> float:
        return self.supervise if name == SUPERVISION else self.weights[name]


@torch.no_grad()
def part_label_map(region: FaceModel, prediction: Prediction, size: int) -> Tensor:
    """(B, S, S) rendered part index per crop pixel (−1 = none) of a prediction of the fitted region."""
    return render_labels(prediction.points2d, prediction.depth, region.triangles, region.part_labels, (size, size))


@torch.no_grad()
def prediction_metrics(region: FaceModel, prediction: Prediction, observation: Observation) -> dict[str, Tensor]:
    """Per face (B,): ``part_iou`` (mean over the parts present in the target masks; needs masks and a model
    with part annotations) and ``nme`` (68 landmarks against the observation's, normalised by their box)."""
    out = {}
    if observation.masks is not None and region.has_parts:
        labels = part_label_map(region, prediction, observation.size)
        iou = part_iou(labels, observation.masks, observation.part_weights)
        out["part_iou"] = mean_part_iou(iou).float()
    if observation.landmarks68 is not None:
        out["nme"] = nme(prediction.landmarks68, observation.landmarks68).float()
    return out


def _move(coeffs: Coefficients | None, device: torch.device) -> Coefficients | None:
    if coeffs is None:
        return None
    return Coefficients(*(None if v is None else v.to(device) for v in (
        coeffs.identity, coeffs.expression, coeffs.rotation, coeffs.translation, coeffs.albedo, coeffs.lighting)))


@torch.no_grad()
def evaluate(regressor: FaceRegressor, objective: RegressionObjective, items: Sequence[TrainItem],
             batch_size: int = 8) -> dict[str, float]:
    """Mean loss terms and metrics (:func:`prediction_metrics`) of the regressor on ``items`` (eval mode)."""
    was_training = regressor.training
    regressor.eval()
    device = regressor.nominal.device
    sums: dict[str, list[Tensor]] = {}
    try:
        for start in range(0, len(items), batch_size):
            obs, target, has = collate(items[start: start + batch_size])
            obs = obs.to(device)
            coeffs = regressor(obs.image)
            total, terms, pred = objective(coeffs, obs, _move(target, device), has)
            values = {"total": total, **terms, **prediction_metrics(objective.region, pred, obs)}
            for name, value in values.items():
                sums.setdefault(name, []).append(value.detach().float().cpu())
    finally:
        regressor.train(was_training)
    return {name: float(torch.nanmean(torch.cat(v))) for name, v in sums.items()}


@torch.no_grad()
def recalibrate_batchnorm(regressor: FaceRegressor, items: Sequence[TrainItem], batch_size: int = 8,
                          batches: int = 16) -> None:
    """Re-estimate the BatchNorm running statistics as plain averages over ``batches`` batches of ``items``
    ("precise BN", Wu & Johnson 2021), in a fixed order spread over the whole list.

    Eval mode (prediction, validation) normalises with these statistics.  Their default estimate, an
    exponential average over the last training steps, lags a network whose weights still change fast, as in
    a short run from a random initialisation, and its predictions then differ from the trained (batch
    statistics) ones.  Every process computes the same statistics (same items, same order).
    """
    norms = [m for m in regressor.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not items:
        return
    count = min(len(items), batches * batch_size)
    order = torch.linspace(0, len(items) - 1, count).round().long().tolist()
    momenta = [m.momentum for m in norms]
    was_training = regressor.training
    device = regressor.nominal.device
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        regressor.train()
        for start in range(0, count, batch_size):
            obs, _, _ = collate([items[i] for i in order[start: start + batch_size]])
            regressor.backbone(regressor.normalize(obs.image.to(device)))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        regressor.train(was_training)


class _RawOutput(nn.Module):
    """The regressor with a plain tensor output (what DistributedDataParallel wraps)."""

    def __init__(self, regressor: FaceRegressor) -> None:
        super().__init__()
        self.regressor = regressor

    def forward(self, images: Tensor) -> Tensor:
        r = self.regressor
        if images.shape[-2:] != (r.size, r.size):
            raise ValueError(f"training crops must be {r.size}×{r.size}, got {tuple(images.shape[-2:])}")
        return r.backbone(r.normalize(images))


@dataclass
class RunPaths:
    """The files of a training run folder."""

    out: Path

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    @property
    def model(self) -> Path:
        return self.out / "model.pt"

    @property
    def log(self) -> Path:
        return self.out / "log.csv"

    @property
    def val(self) -> Path:
        return self.out / "val.csv"

    @property
    def curves(self) -> Path:
        return self.out / "curves.png"

    @property
    def config(self) -> Path:
        return self.out / "config.json"


def _data_fingerprint(items: Sequence[TrainItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update("|".join(item.observation.names).encode() + item.source.encode())
        digest.update(item.observation.image.numpy().tobytes()[:4096])
    return digest.hexdigest()


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _append_csv(path: Path, row: dict[str, Any], columns: list[str]) -> None:
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n").writerow(row)


def _series(rows: list[dict[str, str]], name: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows where column ``name`` holds a number."""
    pairs = [(int(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_curves(log_rows: list[dict[str, str]], val_rows: list[dict[str, str]], path: Path) -> None:
    """One panel per loss term (training per step, validation per epoch as dots) and one per metric."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not log_rows:
        return
    terms = [c for c in log_rows[0] if c not in ("step", "epoch", "seconds", "lr")]
    metrics = [m for m in ("part_iou", "nme") if val_rows and m in val_rows[0]]
    panels = terms + metrics
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.0 * cols, 2.8 * rows), dpi=80)
    FigureCanvasAgg(fig)
    for k, name in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        if name in terms:
            steps, values = _series(log_rows, name)
            ax.plot(steps, values, lw=0.8, label="train")
            if len(values) >= 10:  # running mean over 10 steps
                window = [sum(values[max(0, i - 9): i + 1]) / len(values[max(0, i - 9): i + 1])
                          for i in range(len(values))]
                ax.plot(steps, window, lw=1.5, label="train (mean of 10)")
            if all(v > 0 for v in values):
                ax.set_yscale("log")
        if val_rows and name in val_rows[0]:
            ax.plot(*_series(val_rows, name), "o-", ms=3, label="validation")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_save(path, lambda p: fig.savefig(p, format="png"))


def train_regressor(
    model: FaceModel,
    items: Sequence[TrainItem],
    config: TrainConfig,
    out: str | Path,
    *,
    val_items: Sequence[TrainItem] = (),
    device: torch.device | str = "cpu",
    dist_info: DistInfo | None = None,
    backbone_weights: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    log: Callable[[str], None] = print,
) -> FaceRegressor:
    """Train a :class:`FaceRegressor` for ``model`` on ``items``; see the module docstring for the files.

    Args:
        model: the face model (part annotations when a part loss is selected).
        items: training faces (every process passes the same list, in the same order).
        config: settings.
        out: the run folder.
        val_items: faces to evaluate after each epoch (rank 0).
        device: this process's device (under torchrun: from :func:`setup_distributed`).
        dist_info: this process's rank; default from the environment.
        backbone_weights: a torchvision ResNet-50 checkpoint to start the backbone from.
        resume: continue from ``checkpoints/last.pt`` (identical to an uninterrupted run).
        progress: called as ``progress(step, total_steps, logged_values)`` after every step.
    Returns:
        The trained regressor (on ``device``).
    """
    info = dist_info or DistInfo.from_env()
    device = torch.device(device)
    paths = RunPaths(Path(out))
    if not items:
        raise ValueError("no training faces")
    if resume and not paths.checkpoint.is_file():
        log(f"{paths.checkpoint} does not exist; starting from scratch")
        resume = False
    if not resume and paths.checkpoint.is_file():
        raise ValueError(f"{paths.out} already holds a training run; pass --resume to continue it or choose "
                         "another --out")

    torch.manual_seed(config.seed)
    layout = CoefficientLayout.for_model(model, config.size, config.num_identity)
    regressor = FaceRegressor(layout, config.size)
    if backbone_weights is not None:
        skipped = regressor.load_backbone(backbone_weights)
        log(f"backbone initialised from {backbone_weights} (kept the new {', '.join(skipped) or 'nothing'})")
    regressor.to(device).train()
    objective = RegressionObjective(model, config.weights, config.supervise, config.loss_options).to(device)
    objective.check(collate(list(items[: min(len(items), 2)]))[0])
    optimizer = torch.optim.Adam(regressor.parameters(), lr=config.lr)

    data_print = _data_fingerprint(items)
    step, epoch, position = 0, 0, 0
    if resume:
        state = torch.load(paths.checkpoint, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{paths.checkpoint}: not a fit3dmm training checkpoint")
        if state["config"] != config.fingerprint():
            raise ValueError(f"{paths.checkpoint}: the run was started with other settings; resume it with "
                             "the same options (only --epochs, --max-steps and --checkpoint-every may change)")
        if state["data"] != data_print:
            raise ValueError(f"{paths.checkpoint}: the run was started on other training data")
        regressor.load_state_dict(state["regressor"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step, epoch, position = int(state["step"]), int(state["epoch"]), int(state["position"])
        log(f"resumed from {paths.checkpoint} at step {step} (epoch {epoch + 1}, batch {position})")

    columns = ["step", "epoch", "seconds", "lr", "total", *objective.term_names]
    val_columns = ["step", "epoch", "total", *objective.term_names, "part_iou", "nme"]
    log_rows: list[dict[str, str]] = []
    val_rows: list[dict[str, str]] = []
    if info.is_main:
        paths.out.mkdir(parents=True, exist_ok=True)
        if resume:  # forget what was logged after the checkpoint (it will be redone identically)
            log_rows = [r for r in _read_csv(paths.log) if int(r["step"]) <= step]
            val_rows = [r for r in _read_csv(paths.val) if int(r["epoch"]) < epoch]
        with atomic_write(paths.config, "w", encoding="utf-8") as handle:
            json.dump({"config": asdict(config), "layout": asdict(layout), "model": model.describe(),
                       "train_items": len(items), "val_items": len(val_items),
                       "world_size": info.world_size}, handle, indent=2, default=str)
        _write_csv(paths.log, log_rows, columns)
        _write_csv(paths.val, val_rows, val_columns)

    network: nn.Module = _RawOutput(regressor)
    if info.distributed:
        network = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = DistributedSampler(items, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=config.seed, drop_last=False)
    per_epoch = math.ceil(len(sampler) / config.batch_size)
    total_steps = per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    def save_checkpoint(epoch_: int, position_: int) -> None:
        if not info.is_main:
            return
        state = {"format": CHECKPOINT_FORMAT, "step": step, "epoch": epoch_, "position": position_,
                 "regressor": regressor.state_dict(), "optimizer": optimizer.state_dict(),
                 "rng": torch.get_rng_state(), "config": config.fingerprint(), "data": data_print}
        paths.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(paths.checkpoint, lambda p: torch.save(state, p))

    def validate(epoch_: int) -> None:
        recalibrate_batchnorm(regressor, items, config.batch_size)
        if info.is_main and val_items:
            metrics = evaluate(regressor, objective, val_items, config.batch_size)
            _append_csv(paths.val, {"step": step, "epoch": epoch_, **{k: f"{v:.6g}" for k, v in metrics.items()}},
                        val_columns)
            log(f"epoch {epoch_ + 1}: validation " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        if info.is_main:
            plot_curves(_read_csv(paths.log), _read_csv(paths.val), paths.curves)
        barrier(info)

    stopped = False
    while epoch < config.epochs and not stopped:
        sampler.set_epoch(epoch)
        order = list(sampler)
        batches = [order[i: i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        for index in range(position, len(batches)):
            start = time.perf_counter()
            obs, target, has = collate([items[i] for i in batches[index]])
            obs = obs.to(device)
            coeffs = regressor.decode(network(obs.image))
            total, terms, _ = objective(coeffs, obs, _move(target, device), has)
            loss = total.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            logged = {SUPERVISION: (terms[SUPERVISION].sum() / has.sum().clamp_min(1)).detach()} \
                if SUPERVISION in terms else {}
            logged = mean_across({"total": loss.detach(), **{k: v.mean().detach() for k, v in terms.items()},
                                  **logged}, info)
            if info.is_main:
                _append_csv(paths.log, {"step": step, "epoch": epoch, "seconds": f"{time.perf_counter() - start:.3f}",
                                        "lr": config.lr, **{k: f"{v:.8g}" for k, v in logged.items()}}, columns)
            if progress is not None:
                progress(step, total_steps, logged)
            if config.max_steps is not None and step >= config.max_steps:
                save_checkpoint(epoch, index + 1)
                stopped = True
                break
            if step % config.checkpoint_every == 0:
                save_checkpoint(epoch, index + 1)
        else:
            validate(epoch)
            epoch, position = epoch + 1, 0
            save_checkpoint(epoch, 0)
    if stopped:  # stopped inside an epoch (at an epoch's end, validate() has just recalibrated)
        recalibrate_batchnorm(regressor, items, config.batch_size)
    if info.is_main:
        save_regressor(paths.model, regressor, model, extra={"steps": step, "epochs": epoch,
                                                             "config": asdict(config)})
        plot_curves(_read_csv(paths.log), _read_csv(paths.val), paths.curves)
        log(f"wrote {paths.model} after {step} steps")
    barrier(info)
    return regressor
