"""Per-vertex part labels by votes: each visible vertex of a render votes for the label of the pixel it lands
on; votes are made left/right symmetric and small islands are dropped."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
from scipy.spatial import cKDTree

from fit3dmm.annotate.views import AnnotationView
from fit3dmm.types.parts import NUM_PARTS, PART_INDEX, PART_NAMES

# swap subject-left and subject-right parts (mirror symmetry)
MIRROR_PART = np.array([PART_INDEX[n.replace("left", "@").replace("right", "left").replace("@", "right")]
                        for n in PART_NAMES])


def mirror_map(vertices: np.ndarray) -> np.ndarray:
    """(V,) index of each vertex's mirror partner (x → −x) by nearest neighbour."""
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    return cKDTree(vertices).query(mirrored)[1]


def vote_parts(views: list[AnnotationView], vertices: np.ndarray) -> np.ndarray:
    """(V', P + 1) votes of the vertices ``vertices`` (V',): column p for part p, the last for "no part" (a
    visible vertex on unlabelled pixels)."""
    votes = np.zeros((len(vertices), NUM_PARTS + 1), dtype=np.float64)
    for view in views:
        if view.labels is None:
            continue
        h, w = view.labels.shape
        idx = np.flatnonzero(view.visible[vertices])
        points = view.points2d[vertices[idx]]
        col = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
        row = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
        lab = view.labels[row, col]
        np.add.at(votes, (idx, np.where(lab < 0, NUM_PARTS, lab)), 1.0)
    return votes


def symmetrize_votes(votes: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Add each vertex's mirror partner's votes with left and right parts swapped."""
    swapped = votes[mirror][:, np.append(MIRROR_PART, NUM_PARTS)]
    return votes + swapped


def drop_islands(labels: np.ndarray, triangles: np.ndarray, min_fraction: float) -> np.ndarray:
    """Per part, drop connected components (over mesh edges within the part) smaller than ``min_fraction``
    of the part's largest component; dropped vertices become −1."""
    labels = labels.copy()
    n = len(labels)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    for part in range(NUM_PARTS):
        inside = labels == part
        if not inside.any():
            continue
        e = edges[inside[edges[:, 0]] & inside[edges[:, 1]]]
        graph = scipy.sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
        _, comp = scipy.sparse.csgraph.connected_components(graph, directed=False)
        sizes = np.bincount(comp[inside], minlength=comp.max() + 1)
        small = sizes < min_fraction * sizes.max()
        labels[inside & small[comp]] = -1
    return labels


def part_labels(views: list[AnnotationView], region: np.ndarray, region_mean: np.ndarray,
                region_triangles: np.ndarray, num_vertices: int, min_island: float) -> np.ndarray:
    """(V,) part labels of the full model: votes over the region's vertices, symmetric, islands dropped;
    −1 outside the region."""
    votes = symmetrize_votes(vote_parts(views, region), mirror_map(region_mean))
    labels_region = np.where(votes.sum(1) > 0, votes.argmax(1), NUM_PARTS)
    labels_region = np.where(labels_region == NUM_PARTS, -1, labels_region)
    labels_region = drop_islands(labels_region, region_triangles, min_island)
    labels = np.full(num_vertices, -1, dtype=np.int64)
    labels[region] = labels_region
    return labels
