"""Loss names → loss classes, with the paper's default weights, and parsing of ``--loss``/``--weight``."""

from __future__ import annotations

import importlib

from fit3dmm.losses.base import Loss

# name → "module:Class"; imported on demand so that listing losses is cheap
LOSS_CLASSES: dict[str, str] = {
    "lmk": "fit3dmm.losses.landmark:LandmarkLoss",
    "reg": "fit3dmm.losses.regularization:RegularizationLoss",
    "pho": "fit3dmm.losses.photometric:PhotometricLoss",
    "prdl": "fit3dmm.losses.prdl:PRDLLoss",
    "softras": "fit3dmm.losses.softras:SoftRasLoss",
    "icp": "fit3dmm.losses.icp:ICPLoss",
    "icp_rev": "fit3dmm.losses.icp:ReverseICPLoss",
    "chamfer": "fit3dmm.losses.chamfer:ChamferLoss",
    "dcd": "fit3dmm.losses.dcd:DCDLoss",
}


def loss_class(name: str) -> type[Loss]:
    """The Loss class registered under ``name``."""
    if name not in LOSS_CLASSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSS_CLASSES)}")
    module, cls = LOSS_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def parse_losses(spec: str | list[str], weights: dict[str, float] | None = None) -> dict[str, float]:
    """``"prdl,lmk"`` (or a list) plus optional weight overrides → {name: weight}, defaults from the paper.

    Weights must be finite and ≥ 0, and may only be given for selected losses.
    """
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise ValueError("no loss selected")
    for name in names:
        loss_class(name)
    if len(set(names)) != len(names):
        raise ValueError(f"a loss is listed twice in {names}")
    out = {name: loss_class(name).default_weight for name in names}
    for name, value in (weights or {}).items():
        if name not in out:
            raise ValueError(f"weight given for {name!r}, which is not among the selected losses {names}")
        if not (value >= 0.0 and value < float("inf")):
            raise ValueError(f"weight of {name!r} must be a finite number ≥ 0, got {value}")
        out[name] = float(value)
    return out


def parse_weight_options(items: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``["prdl=0.8e-3", ...]`` → {"prdl": 0.0008}; clear errors for malformed items."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--weight expects NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--weight {item!r}: {value!r} is not a number") from None
    return out
