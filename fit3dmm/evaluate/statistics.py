"""Statistics of per-photo scores (issue #13): mean ± sample std per column, a paired bootstrap interval of a
mean difference, and per-photo win/tie/loss counts.

Pure numpy on arrays of per-photo scores (row n = photo n); NaN marks a score that does not exist for that photo
(a region absent from it) and is left out, never counted as 0.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
TIE = 1e-3


def _scores(values: object, name: str, ndim: tuple[int, ...]) -> np.ndarray:
    """``values`` as float64 with one of the allowed ``ndim`` and at least one row, NaN allowed, ±inf not."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in ndim or array.shape[0] == 0:
        raise ValueError(f"{name} must be {' or '.join(f'{d}-D' for d in ndim)} with at least one row, "
                         f"got shape {array.shape}")
    if np.isinf(array).any():
        raise ValueError(f"{name} has infinite values")
    return array


def _pairs(a: object, b: object) -> np.ndarray:
    """(M,) differences a − b over the photos where both are present (NaN pairs dropped)."""
    a, b = _scores(a, "a", (1,)), _scores(b, "b", (1,))
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same photos, got shapes {a.shape} and {b.shape}")
    difference = a - b
    return difference[~np.isnan(difference)]


def mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-aware mean and sample standard deviation of (N,) or (N, G) scores over the N photos.

    Per column, over the n photos where the value is present: mean = Σx / n and
    std = sqrt(Σ(x − mean)² / (n − 1)) (ddof = 1, as ``np.nanstd(..., ddof=1)``).

    Returns:
        (mean, std, n), each of shape ``values.shape[1:]`` (numpy scalars for (N,) input); mean is NaN where
        n = 0 and std where n < 2.
    """
    x = _scores(values, "values", (1, 2))
    present = ~np.isnan(x)
    count = present.sum(axis=0)
    kept = np.where(present, x, 0.0)
    mean = np.divide(kept.sum(axis=0), count, out=np.full(count.shape, np.nan), where=count > 0)
    squares = (np.where(present, x - mean, 0.0) ** 2).sum(axis=0)
    variance = np.divide(squares, count - 1, out=np.full(count.shape, np.nan), where=count > 1)
    return mean, np.sqrt(variance), count


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0,
                     level: float = LEVEL, indices: np.ndarray | None = None) -> tuple[float, float, float]:
    """Mean difference of paired (N,) scores and its bootstrap percentile interval.

    The photos where a or b is NaN are dropped first, leaving M pairs with differences d = a − b.  Each of R
    resamples draws M photos with replacement (the same photos for a and b: paired) and takes the mean of their
    d; the interval is the (1 − level)/2 and (1 + level)/2 quantiles of the R resampled means with numpy's
    default linear interpolation (sorted means m₀ ≤ … ≤ m_{R−1}, quantile q = m_⌊h⌋ + (h − ⌊h⌋)(m_⌊h⌋₊₁ −
    m_⌊h⌋) at h = (R − 1) q).

    Args:
        a, b: (N,) scores of the same photos.
        resamples: R, when ``indices`` is not given.
        seed: seed of ``np.random.default_rng`` drawing the resamples (the same seed gives the same interval).
        level: coverage of the interval, in (0, 1).
        indices: (R, M') integer resamples to use instead of random ones, indices into the M kept pairs
            (usually M' = M); for checking the interval by hand.

    Returns:
        (mean of d over the M pairs, low, high).
    """
    d = _pairs(a, b)
    if d.size == 0:
        raise ValueError("no photo where both a and b are present")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if indices is None:
        if resamples < 1:
            raise ValueError(f"resamples must be ≥ 1, got {resamples}")
        indices = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be a non-empty (R, M') integer array, got {indices.dtype} {indices.shape}")
    if indices.min() < 0 or indices.max() >= d.size:
        raise ValueError(f"indices must lie in [0, {d.size}) (the pairs without NaN)")
    means = d[indices].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2, (1.0 + level) / 2])
    return float(d.mean()), float(low), float(high)


def win_tie_loss(a: np.ndarray, b: np.ndarray, tie: float = TIE) -> tuple[int, int, int]:
    """Per-photo comparison of paired (N,) scores: a wins where a − b > tie, loses where a − b < −tie, and ties
    otherwise; photos where a or b is NaN are skipped.

    Returns:
        (wins, ties, losses) of a against b.
    """
    if not tie >= 0.0:
        raise ValueError(f"tie must be ≥ 0, got {tie}")
    d = _pairs(a, b)
    wins, losses = int((d > tie).sum()), int((d < -tie).sum())
    return wins, d.size - wins - losses, losses
