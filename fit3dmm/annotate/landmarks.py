"""Where the detector's landmarks lie on the model, and how noisy they are, measured on renders.

1. Votes: each landmark starts at the visible vertex nearest to it most often (the paper's Algorithm 1).
2. Fit: the landmark becomes a convex combination of the K vertices nearest to that start (in the mean
   shape), ``X_l = Σ_k w_k V_k``, whose weights minimise its reprojection error over the renders where it faces
   the camera (non-negative least squares with Σ w = 1, a ridge towards the start).  The point then moves
   with identity and expression like the surface, and the systematic offset between what the detector
   means and a single vertex (2 px on a 224 px crop for ICT's 478 points) is gone.
3. Noise: on renders the fit did not see, the residual per landmark gives its σ (pixels of a 224 px crop,
   per axis), separately where it faces the camera and where it faces away.

All measured in the crop the observe path cuts around the detected landmarks, so that σ means the same as in
a fit.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from scipy.spatial import cKDTree

from fit3dmm.annotate.views import AnnotationView
from fit3dmm.defaults import CROP_SIZE
from fit3dmm.models.assets import Correspondence

MIN_SAMPLES = 10
"""Fewest renders from which a landmark's noise is measured; fewer fall back to the median (or twice σ)."""
DEFAULT_SIGMA = 3.0
"""The noise assumed where no landmark was seen often enough to measure it."""
MIN_SIGMA = 0.5
"""Smallest noise (px of a 224 px crop) a landmark is trusted with."""


def vote_landmarks(views: list[AnnotationView], region: np.ndarray, num_landmarks: int) -> np.ndarray:
    """For each landmark the region vertex that was most often the nearest visible one; −1 if never seen."""
    votes = np.zeros((num_landmarks, len(region)), dtype=np.int32)
    for view in views:
        if view.landmarks is None:
            continue
        idx = np.flatnonzero(view.visible[region])
        nearest = idx[cKDTree(view.points2d[region[idx]]).query(view.landmarks)[1]]
        votes[np.arange(num_landmarks), nearest] += 1
    best = region[votes.argmax(1)]
    return np.where(votes.max(1) > 0, best, -1).astype(np.int64)


def incident_triangles(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(L, 3) for each vertex one triangle that contains it (the first in ``triangles``)."""
    first: dict[int, np.ndarray] = {}
    for tri in triangles[::-1]:
        for v in tri:
            first[int(v)] = tri
    return np.stack([first[int(v)] for v in vertices])


def facing(view: AnnotationView, triangles: np.ndarray) -> np.ndarray:
    """(L,) whether each landmark's triangle faces the camera in ``view`` (counter-clockwise from outside)."""
    corners = view.vertices_cam[triangles]  # (L, 3, 3)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return (normal * corners.mean(1)).sum(-1) < 0


def fit_weights(views: list[AnnotationView], candidates: np.ndarray, start: np.ndarray, triangles: np.ndarray,
                ridge: float, size: int = CROP_SIZE) -> np.ndarray:
    """(L, K) convex weights of the candidate vertices that best reproject onto the detected landmarks.

    Args:
        views: renders with detected landmarks.
        candidates: (L, K) vertex indices per landmark.
        start: (L,) the voted vertex of each landmark (the ridge pulls towards it).
        triangles: (L, 3) the landmark triangles (views where it faces away are not used).
        ridge: weight of ‖w − e_start‖², in squared crop pixels.
    """
    used = [v for v in views if v.landmarks is not None]
    targets = np.stack([v.to_crop(v.landmarks, size) for v in used])                  # (N, L, 2)
    points = np.stack([v.to_crop(v.points2d[candidates], size) for v in used])        # (N, L, K, 2)
    front = np.stack([facing(v, triangles) for v in used])                           # (N, L)
    num, k = candidates.shape
    weights = np.zeros((num, k))
    for lmk in range(num):
        ok = front[:, lmk]
        design = points[ok, lmk].transpose(0, 2, 1).reshape(-1, k)
        goal = targets[ok, lmk].reshape(-1)
        anchor = (candidates[lmk] == start[lmk]).astype(np.float64)
        # Σ w = 1 as a heavily weighted row, w ≥ 0 by NNLS
        a = np.vstack([design, np.sqrt(ridge) * np.eye(k), 1e3 * np.ones((1, k))])
        b = np.concatenate([goal, np.sqrt(ridge) * anchor, [1e3]])
        w, _ = nnls(a, b, maxiter=50 * k)
        weights[lmk] = w / w.sum() if w.sum() > 0 else anchor
    return weights


def landmark_noise(views: list[AnnotationView], vertices: np.ndarray, weights: np.ndarray, triangles: np.ndarray,
                   size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Per landmark the residual noise per axis (px of a ``size`` crop) where it faces the camera and where it
    faces away: ``sqrt(mean ‖detected − projected‖² / 2)``."""
    used = [v for v in views if v.landmarks is not None]
    sq, front = [], []
    for v in used:
        projected = (v.to_crop(v.points2d[vertices], size) * weights[..., None]).sum(1)
        sq.append(((v.to_crop(v.landmarks, size) - projected) ** 2).sum(-1))
        front.append(facing(v, triangles))
    sq, front = np.stack(sq), np.stack(front)

    def rms(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = mask.sum(0)
        return np.sqrt((sq * mask).sum(0) / np.maximum(count, 1) / 2), count

    sigma, n_front = rms(front)
    hidden, n_back = rms(~front)
    enough = n_front >= min(MIN_SAMPLES, len(used))
    sigma = np.where(enough, sigma, np.median(sigma[enough]) if enough.any() else DEFAULT_SIGMA)
    hidden = np.where(n_back >= MIN_SAMPLES, np.maximum(hidden, sigma), 2 * sigma)
    return np.maximum(sigma, MIN_SIGMA).astype(np.float32), np.maximum(hidden, MIN_SIGMA).astype(np.float32)


def fit_correspondence(views: list[AnnotationView], region: np.ndarray, region_mean: np.ndarray,
                       triangles: np.ndarray, num_landmarks: int, support: int = 24,
                       ridge: float = 1.0) -> Correspondence:
    """The landmark correspondence of the module docstring from ``views``.

    Args:
        region: the fitted vertices (full-model indices); ``region_mean`` (V', 3) their mean positions.
        triangles: the region's triangles (full-model indices).
        num_landmarks: the detector's landmark count.
        support: K, vertices per landmark.
        ridge: pull towards the voted vertex.
    Noise is measured on the odd renders after a fit on the even ones; the final weights use all renders.

    Raises:
        RuntimeError: a landmark was never seen on a visible vertex.
    """
    start = vote_landmarks(views, region, num_landmarks)
    if (start < 0).any():
        raise RuntimeError(f"{int((start < 0).sum())} landmarks were never detected on a visible vertex")
    position = np.full(int(region.max()) + 1, -1)
    position[region] = np.arange(len(region))
    _, nearest = cKDTree(region_mean).query(region_mean[position[start]], k=support)
    candidates = region[nearest]
    tri = incident_triangles(start, triangles)
    half = fit_weights(views[0::2], candidates, start, tri, ridge)
    sigma, sigma_hidden = landmark_noise(views[1::2], candidates, half, tri)
    weights = fit_weights(views, candidates, start, tri, ridge)
    return Correspondence(candidates, weights.astype(np.float32), sigma, sigma_hidden, tri)
