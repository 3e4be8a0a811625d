"""Training checkpoints: everything a resumed run needs to end with the same weights as an uninterrupted one."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fit3dmm.io.atomic import atomic_save
from fit3dmm.train.data import TrainItem

CHECKPOINT_FORMAT = "fit3dmm.train-checkpoint"


def data_fingerprint(items: Sequence[TrainItem]) -> str:
    """A hash of the training items (names, sources and the first bytes of each crop)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update("|".join(item.observation.names).encode() + item.source.encode())
        digest.update(item.observation.image.numpy().tobytes()[:4096])
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (step, epoch, position, network, optimiser, RNG, fingerprints)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda p: torch.save({"format": CHECKPOINT_FORMAT, **state}, p))


def load_checkpoint(path: Path, config_print: str, data_print: str) -> dict[str, Any]:
    """The state of :func:`save_checkpoint`, refused when it belongs to a run with other settings or data."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a fit3dmm training checkpoint")
    if state["config"] != config_print:
        raise ValueError(f"{path}: the run was started with other settings; resume it with "
                         "the same options (only --epochs, --max-steps and --checkpoint-every may change)")
    if state["data"] != data_print:
        raise ValueError(f"{path}: the run was started on other training data")
    return state
