"""fit3dmm: fit a 3D Morphable Model to a photo with the Part Re-projection Distance Loss (PRDL).

The names users import are available here (imported on first use, so that ``import fit3dmm`` and the
command line's ``--help`` stay fast)::

    import fit3dmm
    result = fit3dmm.fit("photo.jpg")                 # the same path as `fit3dmm fit`
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name → the module that defines it (the README's "Python API" lists these)
_EXPORTS = {
    "fit": "fit3dmm.api",
    "observe_faces": "fit3dmm.api",
    "landmark_error": "fit3dmm.api",
    "load_model": "fit3dmm.api",
    "Pipeline": "fit3dmm.api",
    "Schedule": "fit3dmm.api",
    "ObserveOptions": "fit3dmm.api",
    "track": "fit3dmm.api",
    "TrackOptions": "fit3dmm.api",
    "FitResult": "fit3dmm.types",
    "Observation": "fit3dmm.types",
    "PointSet": "fit3dmm.types",
    "PART_NAMES": "fit3dmm.types",
    "FaceModel": "fit3dmm.models",
    "fit_observation": "fit3dmm.fitting.engine",
    "FitProblem": "fit3dmm.fitting.problem",
    "Objective": "fit3dmm.fitting.objective",
}
_SUBPACKAGES = ("api", "batch", "evaluate", "fitting", "io", "losses", "metrics", "models", "observe", "render",
                "ops", "train", "types")

__all__ = [*_EXPORTS, *_SUBPACKAGES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"fit3dmm.{name}")
    else:
        raise AttributeError(f"module 'fit3dmm' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
