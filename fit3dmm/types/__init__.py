"""The data that flows between the layers: facial parts, :class:`Observation` (what the fitting sees of a
photo), :class:`FitResult` (what a fit returns).  Nothing here computes a face; every layer above may use it."""

from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES
from fit3dmm.types.result import FitResult

__all__ = ["NUM_PARTS", "PART_INDEX", "PART_NAMES", "FitResult", "Observation", "PointSet"]
