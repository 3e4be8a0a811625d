"""The public Python API: photo(s) in, :class:`~fit3dmm.types.result.FitResult` out.

The command line calls exactly these functions and the :class:`Pipeline` behind them.
"""

from fit3dmm.api.functions import fit, landmark_error, observe_faces
from fit3dmm.api.pipeline import (
    FaceFit,
    Pipeline,
    default_detector,
    default_losses,
    needs_parts,
    resolve_device,
)
from fit3dmm.api.tracking import TrackInterrupted, TrackOptions, TrackSummary, track
from fit3dmm.fitting.schedule import Schedule
from fit3dmm.models.store import load_model
from fit3dmm.observe.observe import FaceTooSmallError, ObserveOptions

__all__ = [
    "FaceFit",
    "FaceTooSmallError",
    "ObserveOptions",
    "Pipeline",
    "Schedule",
    "TrackInterrupted",
    "TrackOptions",
    "TrackSummary",
    "default_detector",
    "default_losses",
    "fit",
    "landmark_error",
    "load_model",
    "needs_parts",
    "observe_faces",
    "resolve_device",
    "track",
]
