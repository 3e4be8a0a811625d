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

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from fit3dmm.io.atomic import atomic_write
from fit3dmm.io.tables import append_csv, read_csv, write_csv
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.regressor import CoefficientLayout, FaceRegressor, save_regressor
from fit3dmm.train.checkpoints import data_fingerprint, load_checkpoint, save_checkpoint
from fit3dmm.train.data import TrainItem, collate
from fit3dmm.train.distributed import DistInfo, barrier, mean_across
from fit3dmm.train.evaluation import evaluate, recalibrate_batchnorm
from fit3dmm.train.logs import RunPaths, plot_curves
from fit3dmm.train.objective import SUPERVISION, RegressionObjective


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

    data_print = data_fingerprint(items)
    step, epoch, position = 0, 0, 0
    if resume:
        state = load_checkpoint(paths.checkpoint, config.fingerprint(), data_print)
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
            log_rows = [r for r in read_csv(paths.log) if int(r["step"]) <= step]
            val_rows = [r for r in read_csv(paths.val) if int(r["epoch"]) < epoch]
        with atomic_write(paths.config, "w", encoding="utf-8") as handle:
            json.dump({"config": asdict(config), "layout": asdict(layout), "model": model.describe(),
                       "train_items": len(items), "val_items": len(val_items),
                       "world_size": info.world_size}, handle, indent=2, default=str)
        write_csv(paths.log, log_rows, columns)
        write_csv(paths.val, val_rows, val_columns)

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

    def checkpoint(epoch_: int, position_: int) -> None:
        if not info.is_main:
            return
        save_checkpoint(paths.checkpoint, {
            "step": step, "epoch": epoch_, "position": position_, "regressor": regressor.state_dict(),
            "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "config": config.fingerprint(),
            "data": data_print})

    def validate(epoch_: int) -> None:
        recalibrate_batchnorm(regressor, items, config.batch_size)
        if info.is_main and val_items:
            metrics = evaluate(regressor, objective, val_items, config.batch_size)
            append_csv(paths.val, {"step": step, "epoch": epoch_, **{k: f"{v:.6g}" for k, v in metrics.items()}},
                        val_columns)
            log(f"epoch {epoch_ + 1}: validation " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        if info.is_main:
            plot_curves(read_csv(paths.log), read_csv(paths.val), paths.curves)
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
            total, terms, _ = objective(coeffs, obs, None if target is None else target.to(device), has)
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
                append_csv(paths.log, {"step": step, "epoch": epoch, "seconds": f"{time.perf_counter() - start:.3f}",
                                        "lr": config.lr, **{k: f"{v:.8g}" for k, v in logged.items()}}, columns)
            if progress is not None:
                progress(step, total_steps, logged)
            if config.max_steps is not None and step >= config.max_steps:
                checkpoint(epoch, index + 1)
                stopped = True
                break
            if step % config.checkpoint_every == 0:
                checkpoint(epoch, index + 1)
        else:
            validate(epoch)
            epoch, position = epoch + 1, 0
            checkpoint(epoch, 0)
    if stopped:  # stopped inside an epoch (at an epoch's end, validate() has just recalibrated)
        recalibrate_batchnorm(regressor, items, config.batch_size)
    if info.is_main:
        save_regressor(paths.model, regressor, model, extra={"steps": step, "epochs": epoch,
                                                             "config": asdict(config)})
        plot_curves(read_csv(paths.log), read_csv(paths.val), paths.curves)
        log(f"wrote {paths.model} after {step} steps")
    barrier(info)
    return regressor
