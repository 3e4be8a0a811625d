"""Part Re-projection Distance Loss (PRDL), Wang et al., CVPR 2024 (3DDFA-V3), Eq. 9–11.

For each facial part p the target point set C_p (pixels of the part's segmentation) and the predicted set
V_p(α) (projected visible vertices of the part) are each described by the distance statistics
F = {f_min, f_max, f_ave} (nearest, farthest and mean Euclidean distance to the set) taken from every
anchor a_i of an H × W grid:

    Γ(C)[i, j] = f_j(C, a_i),        L_prdl = Σ_p w_p ‖Γ(V_p) − Γ(C_p)‖²_F / (H·W),

w_p = ``observation.part_weights[:, p]``; a part whose C_p or V_p is empty contributes 0.  For the f_min term
the gradient is the paper's Eq. 11: for anchor a_i with nearest predicted point v_n, target distance d_im and
predicted distance d_in, ``−∂(d_in − d_im)²/∂v_n = 2(v_n − a_i)(d_im/d_in − 1)``.

Two implementations with the same value: ``"dense"`` forms all |A|·|V| distances (float64, direct
differences; the reference), ``"fast"`` finds the nearest and farthest point per anchor by exact pruned search
(:mod:`fit3dmm.ops.nearest`; the farthest only among possible hull vertices) and recomputes the chosen
distances with gradient, and gets Σ_n ‖a_i − v_n‖ for all anchors at once by FFT with exact near-field
correction (:mod:`fit3dmm.ops.distance_sum`).  An explicit (non-grid) anchor set uses the direct sum for
f_ave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from fit3dmm.losses.base import Loss, Prediction
from fit3dmm.ops.checks import check_point_sets
from fit3dmm.ops.direct import direct_distance_reduce
from fit3dmm.ops.distance_sum import DistanceSumPlan, distance_sum_plan, grid_distance_sum
from fit3dmm.ops.grid import AnchorGrid
from fit3dmm.ops.nearest import farthest_index, indexed_distance, nearest_index
from fit3dmm.types.observation import Observation, PointSet
from fit3dmm.types.parts import NUM_PARTS, PART_NAMES

STATS = ("min", "max", "ave")
IMPLS = ("fast", "dense")
_DIRECT = {"min": "min", "max": "max", "ave": "sum"}


def prdl_descriptor(
    points: Tensor,
    valid: Tensor | None,
    anchors: AnchorGrid | Tensor,
    stats: Sequence[str] = STATS,
    impl: str = "fast",
    *,
    plan: DistanceSumPlan | None = None,
) -> Tensor:
    """The descriptor Γ of B point sets: ``Γ[b, i, j] = f_j(set_b, a_i)``, (B, A, F) with F = len(stats).

    ``f_min``/``f_max``/``f_ave`` = min/max/mean over the valid points of ‖a_i − v_n‖; all 0 for an empty set.

    Args:
        points: (B, N, 2) crop pixels.
        valid: (B, N) bool, or None for all valid.
        anchors: an :class:`AnchorGrid` (A = H·W, row-major) or explicit (A, 2) positions.
        stats: a non-empty subset of ``("min", "max", "ave")``, in the order wanted.
        impl: ``"fast"`` or ``"dense"`` (float64 brute force, the reference); same value either way.
        plan: a :func:`distance_sum_plan` for the grid (dtype/device of ``points``) to reuse, fast impl only.
    """
    valid = check_point_sets(points, valid)
    if not stats or any(s not in STATS for s in stats):
        raise ValueError(f"stats must be a non-empty subset of {STATS}, got {tuple(stats)}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if isinstance(anchors, AnchorGrid):
        anchor_points = anchors.points(points.dtype, points.device)
    elif anchors.ndim == 2 and anchors.shape[-1] == 2:
        anchor_points = anchors.to(device=points.device, dtype=points.dtype)
    else:
        raise ValueError(f"anchors must be an AnchorGrid or (A, 2), got {tuple(anchors.shape)}")

    if plan is not None and plan.grid != anchors:
        raise ValueError(f"plan is for {plan.grid}, anchors are {anchors}")
    count = valid.sum(-1, keepdim=True)
    nonempty = count > 0
    if impl == "dense":
        out = direct_distance_reduce(anchor_points, points, valid, [_DIRECT[s] for s in stats])
        per_point = 1.0 / count.clamp_min(1).to(out.dtype)
        scale = torch.stack([per_point if s == "ave" else torch.ones_like(per_point) for s in stats], -1)
        return out * scale

    columns = []
    for s in stats:
        if s == "min":
            idx = nearest_index(anchors if isinstance(anchors, AnchorGrid) else anchor_points, points, valid)
            col = indexed_distance(anchor_points, points, idx)
        elif s == "max":
            idx = farthest_index(anchors if isinstance(anchors, AnchorGrid) else anchor_points, points, valid)
            col = indexed_distance(anchor_points, points, idx)
        elif isinstance(anchors, AnchorGrid):
            col = grid_distance_sum(points, valid, anchors if plan is None else plan) / count.clamp_min(1)
        else:
            col = direct_distance_reduce(anchor_points, points, valid, ("sum",))[..., 0] / count.clamp_min(1)
        columns.append(torch.where(nonempty, col, 0.0))
    return torch.stack(columns, dim=-1)


def prdl_loss(
    prediction: Mapping[str, PointSet],
    target: Tensor,
    target_valid: Tensor,
    weights: Tensor | None,
    anchors: AnchorGrid | Tensor,
    stats: Sequence[str] = STATS,
    impl: str = "fast",
    *,
    plan: DistanceSumPlan | None = None,
) -> Tensor:
    """``L[b] = Σ_p w[b, p] ‖Γ(V_p[b]) − Γ(C_p[b])‖²_F / A``, (B,).

    Args:
        prediction: part name → predicted set V_p (B, N_p, 2); parts not given contribute 0.
        target: (B, P, A, F) target descriptors Γ(C_p) in :data:`~fit3dmm.types.parts.PART_NAMES` order, from
            :func:`prdl_descriptor` with the same anchors and stats.
        target_valid: (B, P) bool, False where C_p is empty (the part is skipped).
        weights: (B, P) part weights w_p, or None for 1.
        anchors, stats, impl, plan: as in :func:`prdl_descriptor`.
    """
    if target.ndim != 4 or target.shape[1] != NUM_PARTS or target.shape[-1] != len(stats):
        raise ValueError(f"target must be (B, {NUM_PARTS}, A, {len(stats)}), got {tuple(target.shape)}")
    b = target.shape[0]
    if target_valid.shape != (b, NUM_PARTS):
        raise ValueError(f"target_valid must be ({b}, {NUM_PARTS}), got {tuple(target_valid.shape)}")
    if weights is not None and weights.shape != (b, NUM_PARTS):
        raise ValueError(f"weights must be ({b}, {NUM_PARTS}), got {tuple(weights.shape)}")
    unknown = set(prediction) - set(PART_NAMES)
    if unknown:
        raise ValueError(f"unknown parts in prediction: {sorted(unknown)}")
    total = target.new_zeros(b)
    for p, name in enumerate(PART_NAMES):
        pred = prediction.get(name)
        if pred is None:
            continue
        if pred.points.shape[0] != b:
            raise ValueError(f"prediction[{name!r}] has batch {pred.points.shape[0]}, target has {b}")
        use = target_valid[:, p] & pred.valid.any(-1)
        if not bool(use.any()):
            continue
        desc = prdl_descriptor(pred.points, pred.valid, anchors, stats, impl, plan=plan)
        term = (desc - target[:, p].to(desc.dtype)).pow(2).sum((-2, -1)) / desc.shape[-2]
        w = use.to(term.dtype) if weights is None else weights[:, p].to(term.dtype) * use
        total = total + w * term
    return total


class PRDLLoss(Loss):
    """PRDL as a fitting term; Γ(C_p) is computed once per observation in :meth:`prepare`.

    ``default_weight`` 0.1, not the paper's λ_prdl = 0.8e-3: that goes with the paper's λ_lmk = 1.6e-3 and
    λ_reg = 3e-4 (for BFM and a network); against this project's landmark χ² and prior (1/30 and 1) 0.1 gave
    the best mean Part IoU of default fits on FASSEG's 20 training photos (0.698, against 0.695 without PRDL;
    0.3 and 1 lowered the mouth with the built-in segmenter's masks; with the hand labels as targets 0.3 was
    best, 0.710 against 0.695).

    Args:
        stats: which statistics of F to use (default all three).
        stride: anchor stride in pixels on the S × S crop (default 1: every pixel, as in the paper).
        anchors: explicit (A, 2) anchor positions instead of a grid (f_ave then uses the direct sum).
        impl: ``"fast"`` (default) or ``"dense"`` (the float64 brute-force reference; slow).
        window: near-field window R of the fast f_ave (see :mod:`fit3dmm.ops.distance_sum`).
    """

    name = "prdl"
    default_weight = 0.1
    needs = ("points",)

    def __init__(
        self,
        stats: Sequence[str] = STATS,
        *,
        stride: int = 1,
        anchors: Tensor | None = None,
        impl: str = "fast",
        window: int = 8,
    ) -> None:
        super().__init__()
        if not stats or any(s not in STATS for s in stats):
            raise ValueError(f"stats must be a non-empty subset of {STATS}, got {tuple(stats)}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if anchors is not None and (anchors.ndim != 2 or anchors.shape[-1] != 2):
            raise ValueError(f"anchors must be (A, 2), got {tuple(anchors.shape)}")
        self.stats = tuple(stats)
        self.stride = stride
        self.anchors = anchors
        self.impl = impl
        self.window = window
        self._observation: Observation | None = None
        self._grid: AnchorGrid | Tensor | None = None
        self._target: Tensor | None = None
        self._target_valid: Tensor | None = None
        self._plans: dict[tuple[torch.dtype, torch.device], DistanceSumPlan] = {}

    def set_stride(self, stride: int) -> None:
        """Use an anchor grid of stride ``stride`` (no effect with explicit anchors); Γ(C_p) is recomputed at the
        next :meth:`prepare` or forward."""
        if stride < 1:
            raise ValueError(f"stride must be ≥ 1, got {stride}")
        if stride != self.stride:
            self.stride = stride
            self._observation = None

    def prepare(self, observation: Observation) -> None:
        """Compute Γ(C_p) for every part of ``observation`` (zeros and invalid where C_p is absent/empty)."""
        grid = self.anchors if self.anchors is not None else AnchorGrid.full(observation.size, self.stride)
        self._grid = grid
        self._plans = {}
        b = observation.batch_size
        n_anchors = grid.num_anchors if isinstance(grid, AnchorGrid) else grid.shape[0]
        dtype = next((s.points.dtype for s in observation.points.values()), observation.image.dtype)
        target = observation.image.new_zeros((b, NUM_PARTS, n_anchors, len(self.stats)), dtype=dtype)
        target_valid = torch.zeros((b, NUM_PARTS), dtype=torch.bool, device=observation.device)
        with torch.no_grad():
            for p, name in enumerate(PART_NAMES):
                c = observation.points.get(name)
                if c is None or c.points.shape[1] == 0:
                    continue
                target[:, p] = prdl_descriptor(
                    c.points, c.valid, grid, self.stats, self.impl, plan=self._plan(c.points)
                ).to(dtype)
                target_valid[:, p] = c.valid.any(-1)
        self._target, self._target_valid, self._observation = target, target_valid, observation

    def forward(self, prediction: Prediction, observation: Observation) -> Tensor:
        if self._observation is not observation:
            self.prepare(observation)
        pts = next(iter(prediction.parts.values()), None)
        return prdl_loss(
            prediction.parts,
            self._target,
            self._target_valid,
            observation.part_weights,
            self._grid,
            self.stats,
            self.impl,
            plan=None if pts is None else self._plan(pts.points),
        )

    def _plan(self, like: Tensor) -> DistanceSumPlan | None:
        """The f_ave FFT plan for the grid in the dtype/device of ``like`` (built once, kept)."""
        if self.impl != "fast" or "ave" not in self.stats or not isinstance(self._grid, AnchorGrid):
            return None
        key = (like.dtype, like.device)
        if key not in self._plans:
            self._plans[key] = distance_sum_plan(
                self._grid, window=self.window, dtype=like.dtype, device=like.device
            )
        return self._plans[key]
