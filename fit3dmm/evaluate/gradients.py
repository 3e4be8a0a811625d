"""Where each geometric loss pushes the predicted points of one part (the paper's Fig. 6/11), and PRDL's target
descriptor Γ(C) as images.

:func:`point_gradients` differentiates one part's term of each loss with respect to the predicted 2D points
(crop pixels) with autograd; :func:`gradient_figure` draws −∇ as arrows over the target mask, and
:func:`descriptor_figure` the channels f_min, f_max, f_ave of Γ(C) on the anchor grid.
:func:`write_gradient_figures` does both for the shared rigid start of ``fit3dmm compare --gradients PART``.
softras is left out: its gradient reaches the points only through a rendered silhouette, not through a point set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from fit3dmm.api import Pipeline
from fit3dmm.evaluate.targets import FitTarget
from fit3dmm.fitting.problem import FitProblem
from fit3dmm.io.atomic import atomic_save
from fit3dmm.losses.prdl import STATS, prdl_descriptor, prdl_loss
from fit3dmm.losses.registry import loss_class
from fit3dmm.ops.grid import AnchorGrid
from fit3dmm.types.observation import PointSet
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GRADIENT_LOSSES = ("prdl", "chamfer", "icp", "icp_rev", "dcd")
"""The losses whose gradient on the predicted points is drawn (every geometric loss but softras)."""
DEFAULT_STRIDE = 4
"""PRDL's anchor stride in crop pixels for the gradients (the fitting's coarse phase)."""
PANEL_INCHES = 3.2
DPI = 100
ARROW_LENGTH = 0.06
"""The longest arrow of a panel, as a fraction of the crop side (arrows are normalised per panel)."""


def _point_set(points: Tensor) -> PointSet:
    """(N, 2) points as a one-item PointSet, all valid."""
    return PointSet(points[None], torch.ones(1, points.shape[0], dtype=torch.bool, device=points.device))


def _prdl_term(pred: PointSet, target: PointSet, grid: AnchorGrid) -> Tensor:
    """One part's PRDL term ``‖Γ(V) − Γ(C)‖²_F / A`` through :func:`prdl_loss` (the part in the first slot)."""
    with torch.no_grad():
        desc = prdl_descriptor(target.points, target.valid, grid)
    full = desc.new_zeros((1, NUM_PARTS, *desc.shape[1:]))
    full[:, 0] = desc
    valid = torch.zeros(1, NUM_PARTS, dtype=torch.bool, device=desc.device)
    valid[:, 0] = True
    return prdl_loss({PART_NAMES[0]: pred}, full, valid, None, grid)


def point_gradients(pred_points: Tensor, target_points: Tensor, losses: Sequence[str] = GRADIENT_LOSSES, *,
                    size: int, stride: int = DEFAULT_STRIDE) -> dict[str, Tensor]:
    """The gradient of each loss's one-part term with respect to the predicted points, {loss: (N, 2)} float64.

    Args:
        pred_points: (N, 2) predicted points V_p in crop pixels.
        target_points: (M, 2) target points C_p in crop pixels.
        losses: names among :data:`GRADIENT_LOSSES` (unweighted terms, as the loss classes' defaults define them).
        size: crop side S in pixels (PRDL's anchor grid, DCD's normalisation).
        stride: PRDL's anchor stride (anchors every ``stride`` pixels of the S × S crop).
    """
    unknown = [name for name in losses if name not in GRADIENT_LOSSES]
    if unknown:
        raise ValueError(f"no point gradient for {unknown}: choose among {', '.join(GRADIENT_LOSSES)} (softras "
                         "reaches the points only through a rendered silhouette)")
    if pred_points.ndim != 2 or pred_points.shape[-1] != 2 or target_points.ndim != 2 or target_points.shape[-1] != 2:
        raise ValueError(f"points must be (N, 2), got {tuple(pred_points.shape)} and {tuple(target_points.shape)}")
    if len(pred_points) == 0 or len(target_points) == 0:
        raise ValueError("both point sets must be non-empty")
    target = _point_set(target_points.detach().double())
    grid = AnchorGrid.full(size, stride)
    out: dict[str, Tensor] = {}
    for name in losses:
        pred = pred_points.detach().double().clone().requires_grad_(True)
        if name == "prdl":
            value = _prdl_term(_point_set(pred), target, grid)
        else:
            value = loss_class(name)().pair_term(_point_set(pred), target, size)
        (out[name],) = torch.autograd.grad(value.sum(), pred)
    return out


def _new_figure(panels: int) -> Figure:
    """A matplotlib Figure (Agg canvas) of ``panels`` square panels side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(PANEL_INCHES * panels, PANEL_INCHES + 0.4), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def figure_size(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``panels`` panels (what :func:`gradient_figure` writes)."""
    return round(PANEL_INCHES * panels * DPI), round((PANEL_INCHES + 0.4) * DPI)


def gradient_figure(crop_image: np.ndarray, target_mask: np.ndarray, pred_points: np.ndarray,
                    gradients: Mapping[str, np.ndarray | Tensor], path: str | Path, title: str = "") -> Path:
    """Write a PNG (:func:`figure_size` of ``len(gradients)`` panels): per loss, the crop with the target mask
    (red) and the predicted points (white), and from each point an arrow along −∇ (where the loss moves it).

    Arrows are normalised per panel: the largest ‖∇‖ of the panel is drawn :data:`ARROW_LENGTH` × S long and its
    value is in the panel's title, so lengths compare within a panel, not across.

    Args:
        crop_image: (S, S, 3) RGB, uint8 or float in [0, 1].
        target_mask: (S, S) bool target part mask.
        pred_points: (N, 2) predicted points in crop pixels.
        gradients: loss name → (N, 2) gradient on the points (:func:`point_gradients`).
    """
    if not gradients:
        raise ValueError("no gradient to draw")
    size = crop_image.shape[0]
    points = np.asarray(pred_points, dtype=np.float64)
    fig = _new_figure(len(gradients))
    overlay = np.zeros((*target_mask.shape, 4))
    overlay[target_mask] = (1.0, 0.1, 0.1, 0.45)
    for k, (name, grad) in enumerate(gradients.items()):
        g = np.asarray(grad.detach().cpu() if isinstance(grad, Tensor) else grad, dtype=np.float64)
        norm = float(np.linalg.norm(g, axis=1).max())
        step = -g * (ARROW_LENGTH * size / norm) if norm > 0 else np.zeros_like(g)
        ax = fig.add_subplot(1, len(gradients), k + 1)
        ax.imshow(crop_image)
        ax.imshow(overlay)
        ax.scatter(points[:, 0], points[:, 1], s=2, c="white", linewidths=0)
        ax.quiver(points[:, 0], points[:, 1], step[:, 0], step[:, 1], angles="xy", scale_units="xy", scale=1.0,
                  color="yellow", width=0.004)
        ax.set_title(f"{name}: −∇, max ‖∇‖ = {norm:.3g}", fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88, wspace=0.03)
    atomic_save(path, lambda p: fig.savefig(p, format="png"))
    return Path(path)


def descriptor_figure(target_points: np.ndarray | Tensor, anchors: AnchorGrid, path: str | Path,
                      title: str = "") -> Path:
    """Write a PNG (:func:`figure_size` of 3 panels): the channels f_min, f_max, f_ave of PRDL's descriptor
    Γ(C) of ``target_points`` ((M, 2) crop pixels), each an H × W image over the anchor grid, in pixels."""
    points = torch.as_tensor(np.asarray(target_points), dtype=torch.float64)
    if points.ndim != 2 or points.shape[-1] != 2 or len(points) == 0:
        raise ValueError(f"target_points must be a non-empty (M, 2), got {tuple(points.shape)}")
    desc = prdl_descriptor(points[None], None, anchors, STATS)[0].reshape(anchors.height, anchors.width, len(STATS))
    half = anchors.stride / 2
    x0, y0 = anchors.origin
    extent = (x0 - half, x0 + (anchors.width - 1) * anchors.stride + half,
              y0 + (anchors.height - 1) * anchors.stride + half, y0 - half)
    fig = _new_figure(len(STATS))
    for k, stat in enumerate(STATS):
        ax = fig.add_subplot(1, len(STATS), k + 1)
        image = ax.imshow(desc[..., k].numpy(), extent=extent, cmap="viridis")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        ax.set_title(f"f_{stat} (px)", fontsize=8)
        ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.97, bottom=0.08, top=0.86, wspace=0.3)
    atomic_save(path, lambda p: fig.savefig(p, format="png"))
    return Path(path)


def write_gradient_figures(pipeline: Pipeline, target: FitTarget, part: str, out: str | Path,
                           losses: Sequence[str] = GRADIENT_LOSSES, stride: int = DEFAULT_STRIDE) -> list[Path]:
    """``gradients_<photo>_<part>.png`` and ``descriptors_<photo>_<part>.png`` in ``out`` for ``target`` at the
    shared start of ``fit3dmm compare`` (the pipeline's start and rigid stage): the gradient of each of
    ``losses`` (those of :data:`GRADIENT_LOSSES`) on the part's visible predicted points, and Γ(C) of its target."""
    if part not in PART_INDEX:
        raise ValueError(f"unknown part {part!r}: choose among {', '.join(PART_NAMES)}")
    losses = [name for name in losses if name in GRADIENT_LOSSES]
    if not losses:
        raise ValueError(f"no loss with a point gradient among the given ones ({', '.join(GRADIENT_LOSSES)})")
    obs = target.observation
    if part not in obs.points or not bool(obs.points[part].valid.any()):
        raise ValueError(f"{target.name}: no target points for {part!r} (is the face segmented?)")
    problem = FitProblem(pipeline.model, obs, pipeline.schedule)
    params = problem.start(None if pipeline.start is None else pipeline.start(problem.observation))
    problem.rigid(params)
    objective = problem.objective({name: loss_class(name).default_weight for name in losses})
    builder = problem.builder(objective)
    with torch.no_grad():
        pred = builder(params)
        builder.visibility(pred.points2d, pred.depth, pred.vertices_cam, force=True)
        pred = builder(params)
    predicted = pred.parts[part].item(0).cpu()
    if len(predicted) == 0:
        raise ValueError(f"{target.name}: no visible predicted point of {part!r}")
    goal = obs.points[part].item(0).cpu()
    gradients = point_gradients(predicted, goal, losses, size=obs.size, stride=stride)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    crop = obs.image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    mask = obs.masks[0, PART_INDEX[part]].cpu().numpy() if obs.masks is not None else np.zeros(crop.shape[:2], bool)
    label = f"{target.name}, {part}, rigid start"
    return [
        gradient_figure(crop, mask, predicted.numpy(), gradients, out / f"gradients_{target.name}_{part}.png",
                        title=f"{label}: arrows −∇ per loss, normalised per panel"),
        descriptor_figure(goal, AnchorGrid.full(obs.size, 1), out / f"descriptors_{target.name}_{part}.png",
                          title=f"{label}: PRDL descriptor Γ(C) of the target"),
    ]
