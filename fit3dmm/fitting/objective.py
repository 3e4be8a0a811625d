"""The fitting objective: the selected loss terms, what they need, and their weighted sum.

One :class:`Objective` serves a per-photo fit and the training of the regressor alike: both turn
coefficients into a :class:`~fit3dmm.losses.base.Prediction` and ask the objective for
``total = Σ_i λ_i · L_i``, (B,).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from fit3dmm.losses.base import Prediction
from fit3dmm.losses.registry import loss_class
from fit3dmm.models.face_model import FaceModel
from fit3dmm.types.observation import Observation


class Objective(nn.Module):
    """Weighted loss terms for one face model.

    Args:
        weights: the selected losses and their weights λ ({name: λ}, as from
            :func:`~fit3dmm.losses.registry.parse_losses`).
        model: the (region of the) face model being fitted; the regulariser takes its prior deviations.
        options: keyword arguments per loss name (e.g. ``{"prdl": {"stride": 2}}``).
    """

    def __init__(self, weights: Mapping[str, float], model: FaceModel,
                 options: Mapping[str, Mapping[str, object]] | None = None) -> None:
        super().__init__()
        if not weights:
            raise ValueError("no loss selected")
        self.weights = dict(weights)
        self.model_name = model.name
        self.has_parts = model.has_parts
        self.has_albedo = model.has_albedo
        losses = {}
        for name in self.weights:
            kwargs = dict((options or {}).get(name, {}))
            if name == "reg":
                kwargs.setdefault("identity_std", model.identity_std)
                kwargs.setdefault("expression_std", model.expression_std)
            losses[name] = loss_class(name)(**kwargs)
        self.losses = nn.ModuleDict(losses)

    @property
    def needs(self) -> set[str]:
        """Union of what the terms need (``"landmarks"``, ``"masks"``, ``"points"``, ``"image"``)."""
        return {need for loss in self.losses.values() for need in loss.needs}

    @property
    def uses_parts(self) -> bool:
        """Whether a term needs part masks or target point sets (and so vertex visibility and part labels)."""
        return bool({"masks", "points"} & self.needs)

    @property
    def renders_image(self) -> bool:
        """Whether a term compares a rendered image with the photo (the photometric term)."""
        return "image" in self.needs

    def check(self, observation: Observation) -> None:
        """Refuse, before any work, an observation or model that lacks what a selected term needs.

        Raises:
            ValueError: naming the term and what is missing.
        """
        for name, loss in self.losses.items():
            if "landmarks" in loss.needs and observation.landmarks68 is None:
                raise ValueError(f"loss {name!r} needs landmarks but the observation has none")
            if "masks" in loss.needs and observation.masks is None:
                raise ValueError(f"loss {name!r} needs part masks but the observation has none")
            if "points" in loss.needs and not observation.points:
                raise ValueError(f"loss {name!r} needs target point sets but the observation has none")
            if ("masks" in loss.needs or "points" in loss.needs) and not self.has_parts:
                raise ValueError(f"loss {name!r} needs part annotations on the model ({self.model_name}); "
                                 "build them with `fit3dmm models annotate`")
            if "image" in loss.needs and not self.has_albedo:
                raise ValueError(f"loss {name!r} needs a model with an albedo; {self.model_name} has none")

    def set_stride(self, stride: int) -> None:
        """Use anchor stride ``stride`` in the terms that have an anchor grid (PRDL), from the next
        :meth:`prepare` on."""
        for loss in self.losses.values():
            if hasattr(loss, "set_stride"):
                loss.set_stride(stride)

    def prepare(self, observation: Observation) -> None:
        """Let each term precompute its target side (e.g. PRDL's Γ(C_p)) for this observation."""
        for loss in self.losses.values():
            loss.prepare(observation)

    def forward(self, prediction: Prediction, observation: Observation) -> tuple[Tensor, dict[str, Tensor]]:
        """→ (total Σ λ_i L_i (B,), unweighted terms {name: (B,)})."""
        terms = {name: loss(prediction, observation) for name, loss in self.losses.items()}
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, terms
