"""Folders in, trained regressor out: the Python API behind ``fit3dmm train`` and ``fit3dmm predict``.

:func:`train_from_folders` observes the photos once through the fitting pipeline (cached under
``<out>/cache``), adds distillation targets and synthetic faces, and runs
:func:`~fit3dmm.train.loop.train_regressor`, as one process or under ``torchrun`` (rank 0 observes the photos
and writes the cache, the other ranks then read it).  :func:`predict_photo` runs a trained regressor alone on
a photo and returns a :class:`~fit3dmm.types.result.FitResult` with every output a fit has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fit3dmm.api import ObserveOptions, Pipeline, Schedule, load_model
from fit3dmm.fitting.engine import fit_observation
from fit3dmm.losses.registry import parse_losses
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.instances import SyntheticConfig
from fit3dmm.models.regressor import CoefficientLayout, FaceRegressor, RegressorStart, check_model, load_regressor
from fit3dmm.observe.image import load_image
from fit3dmm.train.data import ObservationCache, TrainItem, find_target, observe_photos, read_target
from fit3dmm.train.distributed import DistInfo, barrier, setup_distributed, teardown_distributed
from fit3dmm.train.loop import TrainConfig, train_regressor
from fit3dmm.train.synthetic import synthetic_items
from fit3dmm.types.observation import Observation
from fit3dmm.types.result import FitResult


def photo_items(
    model: FaceModel,
    photos: Sequence[Path],
    pipeline: Pipeline,
    *,
    cache: ObservationCache | None,
    targets: str | Path | None = None,
    layout: CoefficientLayout | None = None,
    log: Callable[[str], None] = print,
) -> list[TrainItem]:
    """Training items from photos (observed once through ``pipeline``, cached), with their fit as target when
    ``targets`` is a folder of ``fit3dmm fit`` outputs (photos without one train self-supervised only)."""
    items = []
    missing = 0
    for path, obs in observe_photos(photos, pipeline, cache=cache, log=log):
        target = None
        if targets is not None:
            found = find_target(targets, path)
            if found is None:
                missing += 1
            else:
                target = read_target(found, model, layout or CoefficientLayout.for_model(model, obs.size))
        items.append(TrainItem(obs, target, "photo"))
    if targets is not None and missing:
        log(f"{missing} of {len(items)} photos have no fit in {targets}; they train without a target")
    return items


def train_from_folders(
    out: str | Path,
    *,
    images: Sequence[Path] = (),
    val_images: Sequence[Path] = (),
    model: str | FaceModel = "ict",
    losses: str | None = None,
    weights: dict[str, float] | None = None,
    targets: str | Path | None = None,
    synthetic: int = 0,
    config: TrainConfig | None = None,
    device: str | torch.device = "auto",
    resume: bool = False,
    backbone_weights: str | Path | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train a regressor on photos (and/or synthetic faces) and return the path of ``<out>/model.pt``.

    Args:
        out: the run folder (``cache/``, ``checkpoints/``, logs, curves, ``model.pt``).
        images, val_images: photo paths for training and for the per-epoch validation.
        model: face model name/path or a loaded FaceModel.
        losses, weights: as for ``fit3dmm fit`` (default: the paper's set).
        targets: a folder of ``fit3dmm fit`` outputs used as distillation targets.
        synthetic: number of synthetic faces to add (rendered once, cached).
        config: training settings (its ``weights`` are replaced by the parsed ``losses``/``weights``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``; under torchrun each process takes ``cuda:LOCAL_RANK``.
    """
    from fit3dmm.api import resolve_device

    if losses:
        parse_losses(losses, weights)
    if not images and synthetic <= 0:
        raise ValueError("nothing to train on: give --images and/or --synthetic N")
    info = DistInfo.from_env()
    dev = setup_distributed(info, resolve_device(device))
    try:
        size = (config or TrainConfig(weights={"lmk": 1.0})).size
        say = log if info.is_main else (lambda _msg: None)
        pipeline: Pipeline | None = None
        # rank 0 annotates the model (once, cached) and observes; the others wait, then read the caches
        for turn in ("main", "others"):
            if (turn == "main") == info.is_main:
                pipeline = Pipeline.create(model=model, losses=losses, weights=weights, device=dev,
                                           observe=ObserveOptions(size=size), on_annotate=say)
            barrier(info)
        assert pipeline is not None
        face_model = pipeline.model
        config = TrainConfig(weights=pipeline.weights) if config is None else replace(config, weights=pipeline.weights)
        layout = CoefficientLayout.for_model(face_model, config.size, config.num_identity)
        cache = ObservationCache(Path(out) / "cache")
        items: list[TrainItem] = []
        val: list[TrainItem] = []
        for turn in ("main", "others"):
            if (turn == "main") == info.is_main:
                items = photo_items(face_model, list(images), pipeline, cache=cache, targets=targets, layout=layout,
                                    log=say)
                if synthetic > 0:
                    say(f"rendering {synthetic} synthetic faces (once; cached)...")
                    items += synthetic_items(face_model, layout, synthetic,
                                             SyntheticConfig(size=config.size, seed=config.seed), cache)
                val = photo_items(face_model, list(val_images), pipeline, cache=cache, log=say)
            barrier(info)
        say(f"training on {len(items)} faces ({sum(i.source == 'synthetic' for i in items)} synthetic, "
            f"{sum(i.target is not None for i in items)} with known coefficients), validating on {len(val)}")
        train_regressor(face_model, items, config, out, val_items=val, device=dev, dist_info=info,
                        backbone_weights=backbone_weights, resume=resume, progress=progress, log=say)
    finally:
        teardown_distributed()
    return Path(out) / "model.pt"


def regressor_result(
    regressor: FaceRegressor,
    model: FaceModel,
    observation: Observation,
    *,
    refine: Schedule | None = None,
    weights: dict[str, float] | None = None,
) -> FitResult:
    """The regressor's reconstruction of ``observation`` as a FitResult (optionally refined by a fit).

    Without ``refine`` the network's coefficients are evaluated as they are (a fit with zero iterations
    started from them: same outputs as ``fit``, losses reported for ``weights``, default landmarks +
    regulariser).  With ``refine`` they start :func:`~fit3dmm.fitting.engine.fit_observation`.
    """
    schedule = replace(refine or Schedule.no_iterations(), num_identity=regressor.layout.identity)
    return fit_observation(model, observation, weights or parse_losses("lmk,reg"), schedule,
                           init=RegressorStart(regressor))


def predict_photo(
    photo: str | Path | np.ndarray,
    regressor: str | Path | FaceRegressor,
    model: str | FaceModel | None = None,
    *,
    device: str | torch.device = "auto",
) -> FitResult:
    """Reconstruct the largest face of ``photo`` with a trained regressor alone (no optimisation).

    ``model`` defaults to the one the regressor was trained for (checked by checksum either way).
    """
    meta = {"model": {}}
    if not isinstance(regressor, FaceRegressor):
        regressor, meta = load_regressor(regressor)
    if not isinstance(model, FaceModel):
        model = load_model(model or meta["model"].get("name") or "ict")
    if meta["model"]:
        check_model(meta, model)
    schedule = Schedule.no_iterations(num_identity=regressor.layout.identity)
    pipeline = Pipeline.create(model=model, losses="lmk,reg", device=device, schedule=schedule,
                               observe=ObserveOptions(size=regressor.size), init=RegressorStart(regressor))
    name = "image" if isinstance(photo, np.ndarray) else str(photo)
    image = photo if isinstance(photo, np.ndarray) else load_image(photo)
    detector = pipeline.detector_factory()
    try:
        observation = pipeline.observe(image, detector, name=name)[0]
    finally:
        detector.close()
    return pipeline.fit(observation)
