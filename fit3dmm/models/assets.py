"""Annotations of a face model that are not part of the linear model itself (made by Algorithm 1,
:mod:`fit3dmm.annotate`, or shipped by a model): part labels, where the detector's landmarks lie on the mesh
and how noisy they are, and point samples that stand for the visible eye openings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fit3dmm.types.parts import NUM_PARTS


@dataclass(frozen=True)
class Correspondence:
    """Detector landmarks on a face model.

    Attributes:
        vertices: (L, K) int64 model vertex indices, the support of each landmark.
        weights: (L, K) float32 convex weights (≥ 0, rows sum to 1; 0 for unused slots): landmark ``l`` is
            ``Σ_k weights[l, k] · V[vertices[l, k]]``, so it moves with identity and expression like the surface.
        sigma: (L,) float32 noise per axis, in pixels of a 224 px crop, where the landmark faces the camera.
        sigma_hidden: (L,) float32 the same where it faces away (the detector then guesses).
        triangle: (L, 3) int64 vertices of a triangle at the landmark; its normal tells the side it faces.
    """

    vertices: np.ndarray
    weights: np.ndarray
    sigma: np.ndarray
    sigma_hidden: np.ndarray
    triangle: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.vertices)
        if self.vertices.ndim != 2 or self.weights.shape != self.vertices.shape:
            raise ValueError(f"landmark vertices and weights must be equal (L, K) arrays, got {self.vertices.shape} "
                             f"and {self.weights.shape}")
        if self.sigma.shape != (n,) or self.sigma_hidden.shape != (n,) or self.triangle.shape != (n, 3):
            raise ValueError(f"landmark sigma and sigma_hidden must be ({n},) and triangle ({n}, 3)")
        if (self.weights < 0).any() or not np.allclose(self.weights.sum(1), 1.0, atol=1e-4):
            raise ValueError("landmark weights must be ≥ 0 and sum to 1 per landmark")
        if not ((self.sigma > 0).all() and (self.sigma_hidden > 0).all()):
            raise ValueError("landmark noise must be > 0")

    @property
    def num_landmarks(self) -> int:
        return len(self.vertices)

    def main_vertex(self) -> np.ndarray:
        """(L,) the vertex of largest weight of each landmark."""
        return self.vertices[np.arange(self.num_landmarks), self.weights.argmax(1)]

    def remap(self, index: np.ndarray) -> Correspondence:
        """The same landmarks with vertex ``v`` renamed ``index[v]`` (e.g. into a region of the model).

        Raises:
            ValueError: a landmark's support or triangle leaves the region (``index`` −1).
        """
        vertices, triangle = index[self.vertices], index[self.triangle]
        if ((vertices < 0) & (self.weights > 0)).any() or (triangle < 0).any():
            raise ValueError("landmarks lie outside the region")
        return Correspondence(np.maximum(vertices, 0), self.weights, self.sigma, self.sigma_hidden, triangle)

    def arrays(self, prefix: str = "landmark_") -> dict[str, np.ndarray]:
        """The fields as named arrays (for saving)."""
        return {f"{prefix}{name}": getattr(self, name)
                for name in ("vertices", "weights", "sigma", "sigma_hidden", "triangle")}

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], num_vertices: int, prefix: str = "landmark_") -> Correspondence:
        """Inverse of :meth:`arrays`, checked against the model's vertex count."""
        c = Correspondence(np.asarray(arrays[f"{prefix}vertices"], np.int64),
                           np.asarray(arrays[f"{prefix}weights"], np.float32),
                           np.asarray(arrays[f"{prefix}sigma"], np.float32),
                           np.asarray(arrays[f"{prefix}sigma_hidden"], np.float32),
                           np.asarray(arrays[f"{prefix}triangle"], np.int64))
        for name in ("vertices", "triangle"):
            values = getattr(c, name)
            if values.size and (values.min() < 0 or values.max() >= num_vertices):
                raise ValueError(f"landmark {name} must index the model's {num_vertices} vertices")
        return c


@dataclass(frozen=True)
class SurfaceSamples:
    """Points fixed on a mesh: sample ``s`` is ``Σ_i bary[s, i] · V[triangles[s, i]]``.

    ``triangles`` (S, 3) int64, ``bary`` (S, 3) float32 (≥ 0, rows sum to 1).
    """

    triangles: np.ndarray
    bary: np.ndarray

    def __post_init__(self) -> None:
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3 or self.bary.shape != self.triangles.shape:
            raise ValueError(f"samples need (S, 3) triangles and barycentrics, got {self.triangles.shape} and "
                             f"{self.bary.shape}")


@dataclass
class FaceModelAssets:
    """Per-vertex annotations of a face model.

    Attributes:
        part_labels: (V,) int64 index into :data:`fit3dmm.types.parts.PART_NAMES`, −1 for no part.
        landmarks: the detector's dense landmarks (mediapipe's 478) on the mesh, with their noise.
        eye_openings: per eye part (``left_eye``, ``right_eye``) samples spread over the visible opening
            between the lids (the lid-margin ring closed by a cap): what a face parser calls "eye".  Point-set
            losses use them for the eyes instead of the eye-labelled vertices, most of which are eyeball
            behind the lids.
        source: where they came from (method, settings).
    """

    part_labels: np.ndarray | None = None
    landmarks: Correspondence | None = None
    eye_openings: dict[str, SurfaceSamples] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    def remap(self, index: np.ndarray, keep: np.ndarray) -> FaceModelAssets:
        """The assets of a region of the model: vertex ``v`` becomes ``index[v]``; ``keep`` (V',) are the kept
        old vertices (for the per-vertex labels)."""
        openings = {}
        for name, samples in self.eye_openings.items():
            tri = index[samples.triangles]
            if (tri < 0).any():
                raise ValueError(f"the {name} opening lies outside the region")
            openings[name] = SurfaceSamples(tri, samples.bary)
        return FaceModelAssets(
            part_labels=None if self.part_labels is None else self.part_labels[keep],
            landmarks=None if self.landmarks is None else self.landmarks.remap(index),
            eye_openings=openings,
            source=dict(self.source),
        )


def check_part_labels(labels: np.ndarray, num_vertices: int) -> np.ndarray:
    """Validate (V,) part labels in [-1, NUM_PARTS) and return them as int64."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (num_vertices,) or labels.min() < -1 or labels.max() >= NUM_PARTS:
        raise ValueError(f"part labels must be ({num_vertices},) in [-1, {NUM_PARTS}), got {labels.shape}")
    return labels
