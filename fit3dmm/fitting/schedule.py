"""How a fit proceeds: the stages' iteration counts and the settings of each solver."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fit3dmm.defaults import ITERATIONS, LM_ITERATIONS, RIGID_ITERATIONS

SOLVERS = ("gn", "adam")


@dataclass(frozen=True)
class Schedule:
    """The solver schedule of a fit (:class:`~fit3dmm.fitting.problem.FitProblem`'s stages).

    Attributes:
        rigid_iterations: Levenberg–Marquardt iterations on the pose alone against the landmarks (after PnP).
        lm_iterations: Levenberg–Marquardt iterations on pose, identity and expression against the objective's
            landmark and prior terms (skipped when it has no landmark term).
        iterations: refinement iterations with the whole objective, when it has terms beyond the landmarks
            and the prior (PRDL, the other geometric losses, the photometric term); split evenly over
            ``strides``.
        solver: the refinement's: ``"gn"``, gradient steps preconditioned by the landmark stage's Gauss–Newton
            matrix with a line search per face; or ``"adam"``.
        strides: anchor strides of PRDL's grid, coarse to fine, one refinement phase each.  Stride 4 alone
            (56² anchors on a 224 px crop) gave the same Part IoU on FASSEG's training photos as 4 then 2, in
            less time.
        tolerance: a refinement phase stops when no face's total loss fell by more than this (relative)
            in an iteration.
        lr, lr_rotation, lr_translation: Adam's learning rates for coefficients (unit-variance scale),
            rotation (radians) and translation (cm).
        num_identity: identity modes fitted (default all).
        fit_shape: False keeps identity and expression at zero (pose only).
        freeze: expression names (prefixes) the refinement leaves where the landmark stage put them (ICT's gaze
            follows the iris landmarks, not the eye part of a geometric loss).
        visibility_every: vertex visibility (a z-buffer pass) is refreshed every so many refinement iterations.
        loss_options: keyword arguments per loss name.
        seed: the fit's random seed.
    """

    rigid_iterations: int = RIGID_ITERATIONS
    lm_iterations: int = LM_ITERATIONS
    iterations: int = ITERATIONS
    solver: str = "gn"
    strides: tuple[int, ...] = (4,)
    tolerance: float = 1e-4
    lr: float = 0.03
    lr_rotation: float = 0.01
    lr_translation: float = 0.3
    num_identity: int | None = None
    fit_shape: bool = True
    freeze: tuple[str, ...] = ("eyeLook",)
    visibility_every: int = 10
    loss_options: dict[str, dict[str, object]] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.rigid_iterations, self.lm_iterations, self.iterations) < 0:
            raise ValueError("iteration counts must be ≥ 0")
        if not (self.lr > 0 and self.lr_rotation > 0 and self.lr_translation > 0):
            raise ValueError("learning rates must be > 0")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if not self.strides or any(not isinstance(s, int) or s < 1 for s in self.strides):
            raise ValueError(f"strides must be integers ≥ 1, got {self.strides!r}")
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be ≥ 0, got {self.tolerance}")

    @classmethod
    def no_iterations(cls, **settings: object) -> Schedule:
        """A schedule that runs no solver: the start (PnP, or a given start such as a regressor's) is the
        result."""
        return cls(rigid_iterations=0, lm_iterations=0, iterations=0, **settings)

    def phases(self) -> list[tuple[int, int]]:
        """(stride, iterations) of each refinement phase: ``iterations`` split evenly, the remainder first."""
        n, k = self.iterations, len(self.strides)
        return [(s, n // k + (i < n % k)) for i, s in enumerate(self.strides)]

    def safer(self) -> Schedule:
        """The schedule of the one retry after a divergence: every learning rate halved."""
        return dataclasses.replace(self, lr=self.lr / 2, lr_rotation=self.lr_rotation / 2,
                                   lr_translation=self.lr_translation / 2)

    def fingerprint(self) -> dict[str, object]:
        """The settings that decide a fit's numbers (for resumable runs)."""
        return {"iterations": self.iterations, "rigid_iterations": self.rigid_iterations,
                "lm_iterations": self.lm_iterations, "solver": self.solver, "strides": list(self.strides),
                "tolerance": self.tolerance, "lr": [self.lr, self.lr_rotation, self.lr_translation],
                "freeze": list(self.freeze), "seed": self.seed}
