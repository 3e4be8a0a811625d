"""How a fit proceeds: iteration counts, step sizes and the settings of each stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fit3dmm.defaults import ITERATIONS, RIGID_ITERATIONS


@dataclass(frozen=True)
class Schedule:
    """The solver schedule of a fit.

    ``rigid_iterations`` of Adam on the pose against the landmarks (after the PnP start), then
    ``iterations`` on all coefficients with the selected losses.  Learning rates per group: coefficients
    (unit-variance scale), rotation (radians), translation (cm).  ``num_identity`` limits the identity
    modes.  ``fit_shape=False`` keeps identity and expression at zero (pose only).  ``visibility_every``:
    vertex visibility (a z-buffer pass) is refreshed every so many iterations.  ``loss_options``: keyword
    arguments per loss name.
    """

    rigid_iterations: int = RIGID_ITERATIONS
    iterations: int = ITERATIONS
    lr: float = 0.03
    lr_rotation: float = 0.01
    lr_translation: float = 0.3
    num_identity: int | None = None
    fit_shape: bool = True
    visibility_every: int = 10
    loss_options: dict[str, dict[str, object]] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rigid_iterations < 0 or self.iterations < 0:
            raise ValueError("iteration counts must be ≥ 0")
        if not (self.lr > 0 and self.lr_rotation > 0 and self.lr_translation > 0):
            raise ValueError("learning rates must be > 0")

    def safer(self) -> Schedule:
        """The schedule of the one retry after a divergence: every learning rate halved."""
        return dataclasses.replace(self, lr=self.lr / 2, lr_rotation=self.lr_rotation / 2,
                                   lr_translation=self.lr_translation / 2)

    def fingerprint(self) -> dict[str, object]:
        """The settings that decide a fit's numbers (for resumable runs)."""
        return {"iterations": self.iterations, "rigid_iterations": self.rigid_iterations,
                "lr": [self.lr, self.lr_rotation, self.lr_translation], "seed": self.seed}
