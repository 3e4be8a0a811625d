"""Random instances of a face model with known coefficients, rendered as plausible photos.

Each instance draws identity ~ N(0, s²) per unit-variance mode, a few active expressions (bounded models) or
N(0, s²) expressions, a head pose within the configured yaw/pitch/roll ranges, and a translation around the
nominal crop framing (:func:`~fit3dmm.models.regressor.nominal_translation`), so that it fills the image as a
detected face fills its crop.  The whole model is rendered with :func:`~fit3dmm.render.shading.render_shaded`:
a skin tone drawn between a light and a dark one, eyebrows, lips and eyes tinted when the model has part
annotations, random spherical-harmonics light, over a random background (a colour gradient plus noise).
Everything is a function of (seed, index), so the set is the same on every run and every process.

Used to annotate a model (Algorithm 1, landmark correspondences) and, with the exact observation added, as
synthetic faces for training and benchmarks (:mod:`fit3dmm.synthetic`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.regressor import CoefficientLayout, Coefficients
from fit3dmm.render.camera import PerspectiveCamera, euler_to_matrix, matrix_to_axis_angle, transform_points
from fit3dmm.render.rasterize import triangle_winding
from fit3dmm.render.shading import render_shaded, vertex_normals
from fit3dmm.types.parts import PART_INDEX

SKIN_LIGHT = (0.93, 0.78, 0.68)
SKIN_DARK = (0.42, 0.28, 0.20)
# multiplicative tint of the skin tone per part
PART_TINT = {"left_eyebrow": (0.35, 0.3, 0.28), "right_eyebrow": (0.35, 0.3, 0.28),
             "up_lip": (0.95, 0.62, 0.62), "down_lip": (0.95, 0.62, 0.62),
             "left_eye": (0.55, 0.55, 0.6), "right_eye": (0.55, 0.55, 0.6)}


@dataclass(frozen=True)
class SyntheticConfig:
    """Distribution of the synthetic faces (angles in degrees, lengths in cm)."""

    size: int = 224
    seed: int = 0
    max_yaw: float = 40.0
    max_pitch: float = 20.0
    max_roll: float = 12.0
    identity_scale: float = 0.8
    expression_probability: float = 0.12
    expression_max: float = 0.8
    expression_scale: float = 0.5  # for unbounded expressions
    lateral_jitter: float = 1.0
    depth_jitter: float = 8.0

    def describe(self) -> str:
        return repr(self)


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % (2**63 - 1))


def sample_coefficients(layout: CoefficientLayout, config: SyntheticConfig, index: int) -> Coefficients:
    """The coefficients of synthetic face ``index`` (B = 1), a function of (config.seed, index)."""
    gen = _generator(config.seed, index)
    identity = config.identity_scale * torch.randn(1, layout.identity, generator=gen)
    if layout.expression_range is not None:
        lo, hi = layout.expression_range
        active = torch.rand(1, layout.expression, generator=gen) < config.expression_probability
        amount = torch.rand(1, layout.expression, generator=gen) * config.expression_max
        expression = (lo + (hi - lo) * amount * active).clamp(lo, hi)
    else:
        expression = config.expression_scale * torch.randn(1, layout.expression, generator=gen)
    limits = torch.tensor([config.max_yaw, config.max_pitch, config.max_roll])
    pose = (2.0 * torch.rand(1, 3, generator=gen) - 1.0) * limits
    rotation = matrix_to_axis_angle(euler_to_matrix(pose))
    jitter = torch.tensor([config.lateral_jitter, config.lateral_jitter, config.depth_jitter])
    translation = torch.tensor([layout.nominal_translation]) + jitter * torch.randn(1, 3, generator=gen)
    return Coefficients(identity, expression, rotation, translation)


def _appearance(model: FaceModel, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Per-vertex albedo (V, 3), SH light (27,), background colours (2, 3) for one face."""
    t = torch.rand(1, generator=gen)
    skin = torch.tensor(SKIN_LIGHT) * (1 - t) + torch.tensor(SKIN_DARK) * t
    skin = skin * (1.0 + 0.08 * (2 * torch.rand(3, generator=gen) - 1))
    albedo = skin.expand(model.num_vertices, 3).clone()
    if model.has_parts:
        labels = model.part_labels.cpu()
        for name, tint in PART_TINT.items():
            albedo[labels == PART_INDEX[name]] *= torch.tensor(tint)
    light = torch.zeros(3, 9)
    light[:, 0] = 0.15 * (2 * torch.rand(1, generator=gen) - 1) + 0.03 * torch.randn(3, generator=gen)
    light[:, 1:4] = 0.2 * torch.randn(1, 3, generator=gen)  # one direction, all channels
    light[:, 4:] = 0.05 * torch.randn(1, 5, generator=gen)
    background = torch.rand(2, 3, generator=gen)
    return albedo.clamp(0, 1), light.flatten(), background


@dataclass
class RenderedInstance:
    """One rendered instance: ``image`` (1, 3, S, S) RGB in [0, 1], the camera, and every model vertex in camera
    space ``vertices_cam`` (1, V, 3), projected ``points2d`` (1, V, 2) with ``depth`` (1, V), and the vertex
    ``normals`` (1, V, 3)."""

    image: Tensor
    camera: PerspectiveCamera
    vertices_cam: Tensor
    points2d: Tensor
    depth: Tensor
    normals: Tensor


@torch.no_grad()
def render_instance(model: FaceModel, coeffs: Coefficients, size: int, index_seed: tuple[int, int]
                    ) -> RenderedInstance:
    """Render one instance (B = 1) of ``model`` with ``coeffs`` into a ``size`` × ``size`` image; ``index_seed`` =
    (seed, index) draws the appearance."""
    if coeffs.batch_size != 1:
        raise ValueError("render_instance draws one face at a time")
    gen = _generator(index_seed[0] + 7919, index_seed[1])
    device = model.mean.device
    coeffs = coeffs.to(device)
    camera = PerspectiveCamera.for_crop(size, 1, device=device)
    albedo, light, background = _appearance(model, gen)
    verts = transform_points(model(coeffs.identity, coeffs.expression).vertices, coeffs.rotation_matrix(),
                             coeffs.translation)
    pix, depth = camera.project(verts)
    normals = vertex_normals(verts, model.triangles)
    front = model.triangles[triangle_winding(pix, model.triangles)[0] < 0]  # back faces are hidden anyway
    image, mask = render_shaded(pix, depth, front, normals, (size, size), albedo=albedo[None].to(device),
                                light=light[None].to(device))
    ramp = torch.linspace(0, 1, size, device=device)
    angle = 2 * math.pi * float(torch.rand(1, generator=gen))
    mix = (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]).clamp(0, 1)
    bg = background[0].to(device)[:, None, None] * (1 - mix) + background[1].to(device)[:, None, None] * mix
    bg = bg + 0.04 * torch.randn((3, size, size), generator=gen).to(device)
    image = (image * mask + bg[None] * (1 - mask)).clamp(0, 1)
    return RenderedInstance(image, camera, verts, pix, depth, normals)


def to_uint8(image: Tensor) -> np.ndarray:
    """(1, 3, S, S) RGB in [0, 1] → (S, S, 3) uint8, as a photo."""
    return (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
