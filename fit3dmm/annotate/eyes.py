"""The visible eye openings of a model whose face mesh is open at the eyes (ICT-FaceKit).

What a face parser calls "eye" is the opening between the lids, not the eyeball behind them.  On such a mesh
each opening is a hole of the face surface bounded by the lid-margin ring.  The ring is closed by a cap
(ear-clipping triangulation of the ring in the neutral shape, no new vertices), and points spread evenly
over the cap stand for the eye in the point-set losses: they move with the lids only, so blinking shrinks
them and gaze does not move them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from fit3dmm.models.assets import SurfaceSamples
from fit3dmm.types.parts import PART_INDEX

EYES = ("left_eye", "right_eye")
SAMPLES = 120
"""Points per eye opening."""
MAX_OFFSET = 2.0
"""Largest distance (cm) between an opening's centre and the centre of the eye-labelled vertices."""


def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """The boundary loops (ordered vertex rings) of a triangle mesh, from its edges used by one triangle."""
    count: dict[tuple[int, int], int] = defaultdict(int)
    for a, b in np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]):
        count[(min(a, b), max(a, b))] += 1
    neighbours: dict[int, list[int]] = defaultdict(list)
    for (a, b), n in count.items():
        if n == 1:
            neighbours[a].append(b)
            neighbours[b].append(a)
    seen: set[int] = set()
    loops = []
    for first in sorted(neighbours):
        if first in seen:
            continue
        loop, previous, current = [first], -1, first
        seen.add(first)
        while True:
            ahead = [v for v in neighbours[current] if v != previous and v not in seen]
            if not ahead:
                break
            previous, current = current, ahead[0]
            loop.append(current)
            seen.add(current)
        loops.append(np.array(loop, dtype=np.int64))
    return loops


def components(triangles: np.ndarray, num_vertices: int) -> tuple[np.ndarray, int]:
    """(component of each vertex (V,), the component of the most triangles: the face surface)."""
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]]])
    graph = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                    shape=(num_vertices, num_vertices))
    _, comp = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return comp, int(np.bincount(comp[triangles[:, 0]]).argmax())


def ear_clip(polygon: np.ndarray) -> np.ndarray:
    """(n − 2, 3) indices into a simple 2D polygon (n, 2) that triangulate it (ear clipping)."""
    ring = list(range(len(polygon)))
    if _area(polygon) < 0:
        ring.reverse()
    out = []
    guard = 0
    while len(ring) > 3 and guard < 10 * len(polygon) ** 2:
        guard += 1
        for i in range(len(ring)):
            a, b, c = ring[i - 1], ring[i], ring[(i + 1) % len(ring)]
            if _cross(polygon[a], polygon[b], polygon[c]) <= 0:
                continue  # reflex corner
            others = [p for p in ring if p not in (a, b, c)]
            if any(_inside(polygon[p], polygon[a], polygon[b], polygon[c]) for p in others):
                continue
            out.append((a, b, c))
            ring.pop(i)
            break
        else:  # degenerate: clip anyway
            out.append((ring[-1], ring[0], ring[1]))
            ring.pop(0)
    out.append(tuple(ring))
    return np.array(out, dtype=np.int64)


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _cross(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def _inside(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bool:
    return _cross(a, b, p) >= 0 and _cross(b, c, p) >= 0 and _cross(c, a, p) >= 0


def cap_samples(ring: np.ndarray, mean: np.ndarray, count: int = SAMPLES, seed: int = 0) -> SurfaceSamples:
    """``count`` points spread by area over the cap of a vertex ring (in the mean shape ``mean``)."""
    points = mean[ring]
    centred = points - points.mean(0)
    basis = np.linalg.svd(centred, full_matrices=False)[2][:2]  # the ring's plane
    cap = ear_clip(centred @ basis.T)
    corners = points[cap]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    rng = np.random.default_rng(seed)
    # stratified by area: each triangle gets its share, the rest by chance
    share = np.floor(count * area / area.sum()).astype(int)
    extra = rng.choice(len(cap), size=count - share.sum(), p=area / area.sum())
    which = np.concatenate([np.repeat(np.arange(len(cap)), share), extra])
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    bary = np.stack([1 - u - v, u, v], axis=1)
    return SurfaceSamples(ring[cap[which]], bary.astype(np.float32))


def eye_openings(mean: np.ndarray, triangles: np.ndarray, labels: np.ndarray
                 ) -> tuple[dict[str, SurfaceSamples], np.ndarray]:
    """Samples over each eye's opening, for every eye part whose labelled vertices surround a hole of the face
    surface (none for a mesh closed over the eyes), and the labels with every vertex of the separate meshes
    behind an opening (the eyeball) given that eye's part: only the eyeball's part seen through the opening
    shows in a render, so a rendered "eye" is then exactly the opening.

    Args:
        mean: (V, 3) mean shape; triangles: the fitted region's triangles (full-model indices).
        labels: (V,) part labels.
    Returns:
        (samples per eye part, the relabelled (V,) labels).
    """
    comp, face_comp = components(triangles, len(mean))
    face = triangles[comp[triangles[:, 0]] == face_comp]
    loops = sorted(boundary_loops(face), key=len)[:-1]  # the longest loop is the face's outer edge
    out, labels = {}, labels.copy()
    used = np.unique(triangles)
    for name in EYES:
        members = labels == PART_INDEX[name]
        if not members.any() or not loops:
            continue
        centre = mean[members].mean(0)
        offsets = [np.linalg.norm(mean[loop].mean(0) - centre) for loop in loops]
        best = int(np.argmin(offsets))
        if offsets[best] > MAX_OFFSET:
            continue
        ring = loops[best]
        out[name] = cap_samples(ring, mean)
        hole = mean[ring].mean(0)
        for c in np.unique(comp[used]):
            members = used[comp[used] == c]
            if c != face_comp and np.linalg.norm(mean[members].mean(0)[:2] - hole[:2]) <= MAX_OFFSET:
                labels[members] = PART_INDEX[name]
    return out, labels
