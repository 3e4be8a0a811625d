"""The interface between the fitting engine and its loss terms.

At every iteration the engine turns the current coefficients into a :class:`Prediction` (projected vertices,
visibility, per-part predicted point sets V_p(α), landmarks) and asks each loss for a (B,) value.  A loss
never opens files or parses options; what it precomputes from the target (e.g. PRDL's Γ(C_p)) it does once
in :meth:`Loss.prepare`, once per observation (a batch of faces).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from torch import Tensor, nn

from fit3dmm.types.observation import Observation, PointSet


@dataclass
class Prediction:
    """The model's current guess for B faces, in the crop's pixel frame.

    Attributes:
        vertices: (B, V, 3) model-space vertices (cm) of the fitted region.
        vertices_cam: (B, V, 3) camera-space vertices.
        points2d: (B, V, 2) projected vertices in crop pixels.
        depth: (B, V) distance along the view axis.
        visible: (B, V) bool, facing the camera and not occluded (no gradient).
        triangles: (T, 3) triangles indexing ``vertices``.
        part_labels: (V,) part index per vertex, -1 = none.
        landmarks68: (B, 68, 2) the projected landmarks that mean the detector's 68.
        landmarks: (B, L, 2) the projected model landmarks (the detector's dense set, e.g. mediapipe's 478,
            or the 68 for a model without a landmark correspondence; ``landmark_target`` says which).
        landmark_sigma: (B, L) their noise per axis in crop pixels for the current pose (the landmark term
            needs both).
        landmark_target: ``"dense"`` (compared with ``Observation.landmarks``) or ``"68"``
            (``Observation.landmarks68``).
        parts: per part name, the predicted point set V_p(α): projected vertices of part p that are visible,
            below the forehead line and (skin) not on hair in the target; (B, N_p, 2) with a validity mask.
        coefficients: the current coefficients by name (identity, expression, rotation, translation, ...).
        image: (B, 3, S, S) rendered shaded/albedo image for the photometric term, or None.
        image_mask: (B, 1, S, S) where ``image`` is defined, or None.
    """

    vertices: Tensor
    vertices_cam: Tensor
    points2d: Tensor
    depth: Tensor
    visible: Tensor
    triangles: Tensor
    part_labels: Tensor
    landmarks68: Tensor
    landmarks: Tensor | None = None
    landmark_sigma: Tensor | None = None
    landmark_target: str = "68"
    parts: dict[str, PointSet] = field(default_factory=dict)
    coefficients: dict[str, Tensor] = field(default_factory=dict)
    image: Tensor | None = None
    image_mask: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.points2d.shape[0]


class Loss(nn.Module, ABC):
    """A loss term: ``forward(prediction, observation) -> (B,)``, unweighted.

    Subclasses set ``name`` and ``default_weight`` (the paper's λ where it has one) and may override
    :meth:`prepare` to precompute target-side quantities once per observation.  ``needs`` lists what the
    term requires of the Observation/Prediction (``"landmarks"``, ``"masks"``, ``"points"``, ``"image"``),
    so that the engine can refuse a combination before any work starts.
    """

    name: str = "loss"
    default_weight: float = 1.0
    needs: tuple[str, ...] = ()

    def prepare(self, observation: Observation) -> None:
        """Precompute target-side data for ``observation`` (called once per observation, i.e. per batch of
        faces, before its iterations; a fit calls it once, training once per batch)."""

    @abstractmethod
    def forward(self, prediction: Prediction, observation: Observation) -> Tensor:
        """The unweighted loss per batch item, (B,)."""
