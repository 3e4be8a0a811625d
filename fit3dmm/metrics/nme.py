"""Normalised Mean Error of 2D landmarks, AFLW2000-3D protocol of 3DDFA (also used by 3DDFA_V2, SynergyNet).

For image b with predicted points p_i and ground-truth points g_i (i = 1..N, N = 68 on AFLW2000-3D),

    NME[b] = (1/N) Σ_i ‖p_i − g_i‖₂ / sqrt(w · h),

w = max_i g_i.x − min_i g_i.x and h = max_i g_i.y − min_i g_i.y: the bounding box of the *ground-truth*
points (cleardusk/3DDFA ``benchmark_aflw2000.py``, ``calc_nme``).  Values are fractions; papers print
them ×100 (%).  :func:`nme_by_yaw` groups them by |yaw| as 3DDFA's ``ana`` does.

Inputs are numpy arrays or torch tensors; :func:`nme` returns the same kind (float64).
"""

from __future__ import annotations

from torch import Tensor

from fit3dmm.metrics._array import ArrayLike, as_tensor, like_input

#: |yaw| bins of the AFLW2000-3D benchmark as (key suffix, inclusive upper bound); each bin starts just
#: above the previous bound.  As 3DDFA's ``ana``: |yaw| <= 30, 30 < |yaw| <= 60, |yaw| > 60 (so the last bin
#: also takes |yaw| > 90).
YAW_BINS: tuple[tuple[str, float], ...] = (("0_30", 30.0), ("30_60", 60.0), ("60_90", float("inf")))


def nme(pred: ArrayLike, gt: ArrayLike) -> ArrayLike:
    """Landmark error normalised by the ground-truth bounding box size.

    Args:
        pred: (B, N, 2) predicted landmarks in pixels (a third column, e.g. depth, is accepted and ignored).
        gt: (B, N, 2) ground-truth landmarks in the same pixels (a third column is ignored too, as 3DDFA
            does with ``AFLW2000-3D.pts68.npy``).

    Returns:
        (B,) float64 NME (a fraction, not %).

    Raises:
        ValueError: shapes disagree, or a ground-truth bounding box has zero width or height.
    """
    p = as_tensor(pred, "pred")
    g = as_tensor(gt, "gt")
    if p.ndim != 3 or p.shape[-1] not in (2, 3):
        raise ValueError(f"pred must be (B, N, 2) or (B, N, 3), got {tuple(p.shape)}")
    if g.ndim != 3 or g.shape[:2] != p.shape[:2] or g.shape[-1] not in (2, 3):
        raise ValueError(f"gt must be (B, N, 2) or (B, N, 3) with (B, N) = {tuple(p.shape[:2])}, "
                         f"got {tuple(g.shape)}")
    p_xy = p[..., :2].double()
    g_xy = g[..., :2].double().to(p.device)
    extent = g_xy.amax(dim=1) - g_xy.amin(dim=1)  # (B, 2): w, h
    size = (extent[:, 0] * extent[:, 1]).sqrt()
    if not bool((size > 0).all()):
        raise ValueError("every ground-truth landmark set must span a box of non-zero width and height, "
                         f"got sqrt(w*h) = {size.tolist()}")
    error = (p_xy - g_xy).norm(dim=-1).mean(dim=-1) / size
    return like_input(error, pred)


def _mean(values: Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")


def nme_by_yaw(nme_values: ArrayLike, yaw_deg: ArrayLike) -> dict[str, float | int]:
    """Mean NME per |yaw| bin, overall, and balanced over the three bins (3DDFA's "[0, 90] Mean").

    Args:
        nme_values: (B,) per-image NME (from :func:`nme`).
        yaw_deg: (B,) ground-truth yaw in degrees (sign ignored).

    Returns:
        ``nme_0_30``, ``nme_30_60``, ``nme_60_90`` (bins of :data:`YAW_BINS`), ``nme_all`` (mean over all
        images) and ``nme_balanced`` (mean of the three bin means), each with ``count_<same suffix>`` (the
        balanced count is the number of images in the three bins).  An empty bin has mean NaN and count 0,
        which makes the balanced mean NaN.  Means are in the units of ``nme_values``.
    """
    values = as_tensor(nme_values, "nme_values").double()
    yaw = as_tensor(yaw_deg, "yaw_deg").double().to(values.device)
    if values.ndim != 1 or yaw.shape != values.shape:
        raise ValueError(f"nme_values and yaw_deg must both be (B,), got {tuple(values.shape)} and "
                         f"{tuple(yaw.shape)}")
    if not bool(yaw.isfinite().all()):
        raise ValueError("yaw_deg must be finite, got NaN or inf")
    abs_yaw = yaw.abs()
    out: dict[str, float | int] = {}
    bin_means = []
    low = float("-inf")
    for suffix, high in YAW_BINS:
        members = values[(abs_yaw > low) & (abs_yaw <= high)]
        low = high
        bin_means.append(_mean(members))
        out[f"nme_{suffix}"] = bin_means[-1]
        out[f"count_{suffix}"] = int(members.numel())
    out["nme_all"] = _mean(values)
    out["count_all"] = int(values.numel())
    out["nme_balanced"] = sum(bin_means) / len(bin_means)
    out["count_balanced"] = out["count_all"]  # the bins cover every finite |yaw|
    return out
