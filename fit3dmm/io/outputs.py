"""Write everything a fit produces for one face: mesh, parameters, overlay, and on request NPZ, depth and parts.

Meshes are written in *photo space* by default so that they line up with the input photo: x and y are
photo pixel coordinates (y flipped so that +y is up, i.e. y_mesh = H − 1 − y_photo) and z is the depth
relief in the same pixel scale (camera-space depth × focal / mean depth, larger towards the viewer), the
convention of 3DDFA and PRNet but with the crop undone.  ``space="camera"`` writes metric camera-space
vertices (cm) instead; the camera that projects them onto the photo is in the parameters JSON.

Files of one face with stem ``face`` (:class:`OutputPaths`):

| file | when | content |
| --- | --- | --- |
| ``face.obj`` / ``.ply`` / ``.glb`` | always | the full model's mesh, vertex order of the model |
| ``face.mtl``, ``face_texture.png`` | OBJ with ``color="texture"`` | material and texture (GLB embeds it) |
| ``face.json`` | always | parameters, :mod:`fit3dmm.io.params` schema |
| ``face_overlay.png`` | by default | face region shaded over the photo, landmarks in green; ≤ 2048 px preview |
| ``face.npz`` | ``npz`` | the parameters as arrays (:func:`~fit3dmm.io.params.write_params_npz`) |
| ``face_depth.png`` | ``depth`` | 16-bit depth at photo resolution (:func:`~fit3dmm.io.images.write_depth_png`) |
| ``face_parts.png`` | ``parts`` | colour-coded part map at photo size (:func:`~fit3dmm.io.images.colorize_labels`) |

Colour: ``"vertex"`` samples the photo at the visible vertices (the others get the mean colour);
``"texture"`` bakes the photo into the model's UV tile [0, 1]² (:func:`~fit3dmm.io.mesh.bake_texture`, the
face region's triangles only).  Triangles outside that tile or region (ICT: the other material tiles, u in
1..7, eyes, mouth interior, back of the head) all get one texture coordinate, the texel farthest from
everything sampled, whose pull-push fill is the face's average colour.

Depth and part maps render the full mesh, the overlay the fitted face region (headlight shading), both only
over the bounding box of the projection and in tiles of :data:`RENDER_TILE` pixels, and vertex visibility
uses a z-buffer of at most :data:`VISIBILITY_MAX_SIDE` pixels: a very large photo costs memory for its own
pixels, not for a full-resolution z-buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from fit3dmm.io.images import colorize_labels, write_depth_png, write_png
from fit3dmm.io.mesh import MESH_FORMATS, bake_texture, sample_vertex_colors, write_mesh
from fit3dmm.io.params import result_to_dict, write_params_json, write_params_npz
from fit3dmm.render.overlay import draw_points, overlay_mesh
from fit3dmm.render.rasterize import rasterize, render_labels, vertex_visibility
from fit3dmm.render.shading import vertex_normals
from fit3dmm.types.result import FitResult

if TYPE_CHECKING:
    from fit3dmm.models.face_model import FaceModel

COLOR_MODES = ("auto", "texture", "vertex", "none")
SPACES = ("photo", "camera")
RENDER_TILE = 1024
"""Depth, part and overlay images are rendered in pieces of at most this many pixels square."""
OVERLAY_MAX_SIDE = 2048
"""The overlay is a preview: photos with a longer side are shrunk to it."""
VISIBILITY_MAX_SIDE = 1024
"""Vertex visibility (for colours and textures) uses a z-buffer of at most this side."""


@dataclass(frozen=True)
class OutputOptions:
    """What to write per face.

    Attributes:
        mesh_format: ``".obj"``, ``".ply"`` or ``".glb"`` (the dot may be left out).
        color: ``"texture"`` (UVs + texture map; OBJ and GLB), ``"vertex"`` (per-vertex colours), ``"none"``,
            or ``"auto"``: texture when the format and the model allow it, else vertex colours.
        space: ``"photo"`` or ``"camera"`` mesh coordinates (module docstring).
        overlay: write the overlay PNG.
        npz: also write the parameters as NPZ arrays.
        depth: write a 16-bit depth PNG at photo resolution.
        parts: write a colour-coded part map at photo resolution (needs an annotated model).
        texture_size: side of the texture map in pixels.
    """

    mesh_format: str = ".obj"
    color: str = "auto"
    space: str = "photo"
    overlay: bool = True
    npz: bool = False
    depth: bool = False
    parts: bool = False
    texture_size: int = 512

    def __post_init__(self) -> None:
        fmt = self.mesh_format.lower()
        fmt = fmt if fmt.startswith(".") else "." + fmt
        if fmt not in MESH_FORMATS:
            raise ValueError(f"mesh format must be one of {', '.join(f[1:] for f in MESH_FORMATS)}, "
                             f"got {self.mesh_format!r}")
        object.__setattr__(self, "mesh_format", fmt)
        if self.color not in COLOR_MODES:
            raise ValueError(f"color must be one of {', '.join(COLOR_MODES)}, got {self.color!r}")
        if self.space not in SPACES:
            raise ValueError(f"space must be 'photo' or 'camera', got {self.space!r}")
        if not isinstance(self.texture_size, int) or not 16 <= self.texture_size <= 8192:
            raise ValueError(f"texture size must be an integer in 16..8192, got {self.texture_size!r}")
        if self.color == "texture" and self.mesh_format == ".ply":
            raise ValueError("--color texture needs --format obj or glb (PLY holds no texture); "
                             "use --color vertex for PLY")

    def resolved_color(self, extras: MeshExtras | None) -> str:
        """The colour mode actually written (``"auto"`` decided); raises when texture is impossible."""
        has_uv = extras is not None and extras.uv is not None
        if self.color == "auto":
            return "texture" if has_uv and self.mesh_format != ".ply" else "vertex"
        if self.color == "texture" and not has_uv:
            raise ValueError("--color texture needs a model with texture coordinates (UVs); this one has none")
        return self.color


@dataclass(frozen=True)
class MeshExtras:
    """Model data the writers need beyond a :class:`FitResult` (picklable numpy arrays).

    Attributes:
        uv: (Nuv, 2) texture coordinates, or None.
        triangles_uv: (T, 3) uv index per triangle corner of the full model, or None.
        bake_mask: (T,) bool, the triangles whose texels are baked from the photo, or None (no texture).
        bake_order: (T,) the triangles' priority where their UVs overlap (:func:`bake_priority`), or None.
        part_labels: (V,) int64 part index per vertex (−1 none), or None when the model is not annotated.
    """

    uv: np.ndarray | None
    triangles_uv: np.ndarray | None
    bake_mask: np.ndarray | None
    bake_order: np.ndarray | None
    part_labels: np.ndarray | None

    @staticmethod
    def from_model(model: FaceModel, texture_size: int | None = None) -> MeshExtras:
        """From a :class:`~fit3dmm.models.face_model.FaceModel`; ``texture_size`` given (and UVs present):
        also the bake mask for textures of that size (:func:`bake_mask`)."""
        labels = model.assets.part_labels
        uv = None if model.uv is None else np.asarray(model.uv, np.float64)
        triangles_uv = None if model.triangles_uv is None else np.asarray(model.triangles_uv, np.int64)
        mask = order = None
        if uv is not None and texture_size is not None:
            triangles = model.triangles.cpu().numpy()
            in_face = np.zeros(model.num_vertices, bool)
            in_face[model.face_vertices.cpu().numpy()] = True
            order = bake_priority(triangles)
            mask = bake_mask(uv, triangles_uv, in_face[triangles].all(axis=1), order, texture_size)
        return MeshExtras(uv=uv, triangles_uv=triangles_uv, bake_mask=mask, bake_order=order,
                          part_labels=None if labels is None else np.asarray(labels, np.int64))


def bake_priority(triangles: np.ndarray) -> np.ndarray:
    """(T,) the order in which triangles claim texels where their UVs overlap: by their smallest vertex index
    (stable).  Models list their parts' vertices in blocks (ICT: face 0..9408, eyeballs 21451..24590) while
    triangulated quads interleave the parts' triangles, so vertex order tells the charts apart."""
    return np.argsort(triangles.min(axis=1), kind="stable")


def bake_mask(uv: np.ndarray, triangles_uv: np.ndarray, candidates: np.ndarray, priority: np.ndarray,
              size: int) -> np.ndarray:
    """(T,) bool: the candidate triangles in the UV tile [0, 1]² that own at least one texel of a ``size``²
    texture when overlaps go to the first in ``priority`` (:func:`bake_priority`).

    A triangle that owns none lies under another chart (ICT maps both eyeballs over its face tile) and must
    not be baked, or it would show through wherever the face above it is hidden in the photo.

    Args:
        uv: (Nuv, 2) texture coordinates; triangles_uv: (T, 3) uv indices.
        candidates: (T,) bool (the fitted face region); priority: (T,) a permutation of the triangles.
    """
    corners = uv[triangles_uv]
    eligible = candidates & ((corners >= 0.0) & (corners <= 1.0)).all(axis=(1, 2))
    ordered = priority[eligible[priority]]
    texel_xy = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=-1)
    fragments = rasterize(torch.from_numpy(texel_xy)[None], torch.ones(1, len(uv), dtype=torch.float64),
                          torch.from_numpy(triangles_uv[ordered]), (size, size))
    owners = torch.unique(fragments.face_index[fragments.face_index >= 0]).numpy()
    mask = np.zeros(len(triangles_uv), bool)
    mask[ordered[owners]] = True
    return mask


@dataclass
class OutputPaths:
    """Where the outputs of one face go (None: not written)."""

    mesh: Path
    params: Path
    overlay: Path | None = None
    npz: Path | None = None
    depth: Path | None = None
    parts: Path | None = None

    @staticmethod
    def for_target(target: str | Path, stem: str = "face", mesh_format: str = ".obj", overlay: bool = True,
                   *, npz: bool = False, depth: bool = False, parts: bool = False) -> OutputPaths:
        """``target`` ending in .obj/.ply/.glb names the mesh (siblings get ``<mesh stem>.json``,
        ``<mesh stem>_overlay.png``...); anything else is a folder holding ``<stem><format>`` etc."""
        target = Path(target)
        if target.suffix.lower() in MESH_FORMATS:
            base, mesh = target.with_suffix(""), target
        else:
            fmt = mesh_format if mesh_format.startswith(".") else "." + mesh_format
            base = target / stem
            mesh = base.with_suffix(fmt.lower())
        return OutputPaths(
            mesh=mesh, params=base.with_suffix(".json"),
            overlay=Path(f"{base}_overlay.png") if overlay else None,
            npz=base.with_suffix(".npz") if npz else None,
            depth=Path(f"{base}_depth.png") if depth else None,
            parts=Path(f"{base}_parts.png") if parts else None,
        )

    @staticmethod
    def for_options(target: str | Path, options: OutputOptions, stem: str = "face") -> OutputPaths:
        """:meth:`for_target` with the files that ``options`` asks for."""
        return OutputPaths.for_target(target, stem, options.mesh_format, options.overlay, npz=options.npz,
                                      depth=options.depth, parts=options.parts)

    def all(self) -> list[Path]:
        """The paths to write (mesh side files such as the texture are added by the writer)."""
        return [p for p in (self.mesh, self.params, self.overlay, self.npz, self.depth, self.parts)
                if p is not None]


def photo_space_vertices(result: FitResult, index: int) -> np.ndarray:
    """(V, 3) vertices in photo pixels with the depth relief (see the module docstring)."""
    pix = result.vertices_photo[index].detach().cpu().double().numpy()
    depth = -result.vertices_cam[index, :, 2].detach().cpu().double().numpy()
    height = float(result.observation.photo_size[index, 1])
    scale = float(result.observation.crop_to_photo[index, 0, 0])
    focal_photo = float(result.camera.focal[index]) * scale
    mean_depth = float(np.mean(depth))
    z = (mean_depth - depth) * focal_photo / mean_depth
    return np.stack([pix[:, 0], height - 1.0 - pix[:, 1], z], axis=1)


Window = tuple[int, int, int, int]
"""A pixel box (x0, y0, x1, y1), end exclusive."""


def projection_window(points: np.ndarray, image_size: tuple[int, int], margin: int = 2) -> Window | None:
    """The pixel box (x0, y0, x1, y1), end exclusive, holding (N, 2) finite points, clipped to the image
    (H, W) and widened by ``margin``; None when no point falls near the image."""
    height, width = image_size
    finite = np.isfinite(points).all(axis=1)
    if not finite.any():
        return None
    lo = np.floor(points[finite].min(axis=0)).astype(np.int64) - margin
    hi = np.ceil(points[finite].max(axis=0)).astype(np.int64) + margin + 1
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), width), min(int(hi[1]), height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def tiles(window: Window, tile: int) -> list[Window]:
    """Split a pixel box (x0, y0, x1, y1), end exclusive, into boxes of at most ``tile`` × ``tile``."""
    if tile < 1:
        raise ValueError(f"tile must be ≥ 1, got {tile}")
    x0, y0, x1, y1 = window
    return [(x, y, min(x + tile, x1), min(y + tile, y1)) for y in range(y0, y1, tile) for x in range(x0, x1, tile)]


def _view(result: FitResult, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Face ``index``: vertex pixels (1, V, 2) and depths (1, V) as float64 CPU tensors, photo (H, W)."""
    pix = result.vertices_photo[index: index + 1].detach().cpu().double()
    depth = -result.vertices_cam[index: index + 1, :, 2].detach().cpu().double()
    width, height = (int(v) for v in result.observation.photo_size[index])
    return pix, depth, (height, width)


def _camera_normals(result: FitResult, index: int) -> torch.Tensor:
    """(1, V, 3) camera-space vertex normals of the full mesh."""
    return vertex_normals(result.vertices_cam[index: index + 1].detach().cpu().double(), result.triangles.cpu())


def visible_vertices(result: FitResult, index: int, max_side: int = VISIBILITY_MAX_SIDE) -> np.ndarray:
    """(V,) bool: full-model vertices facing the camera and unoccluded in the photo.

    The z-buffer covers the projection's window only, shrunk so that its longer side is at most
    ``max_side`` pixels (visibility needs no more; a large photo would need a huge z-buffer).
    """
    pix, depth, size = _view(result, index)
    window = projection_window(pix[0].numpy(), size)
    if window is None:
        return np.zeros(pix.shape[1], bool)
    x0, y0, x1, y1 = window
    scale = min(1.0, max_side / max(x1 - x0, y1 - y0))
    points = (pix - pix.new_tensor([x0, y0]) + 0.5) * scale - 0.5
    shape = (max(1, math.ceil((y1 - y0) * scale)), max(1, math.ceil((x1 - x0) * scale)))
    tri = result.triangles.cpu()
    return vertex_visibility(points, depth, tri, shape, _camera_normals(result, index))[0].numpy()


def render_maps(result: FitResult, index: int, part_labels: np.ndarray | None = None, tile: int = RENDER_TILE
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Depth and part label maps of face ``index`` at photo resolution, from the full mesh.

    Rendered over the projection's window in ``tile``² pieces, so memory does not grow with the photo.

    Returns:
        ``depth`` (H, W) float32 camera depth in cm, +inf on background; ``labels`` (H, W) int64 part
        index (−1 background), None when ``part_labels`` (V,) is None.
    """
    pix, depth, size = _view(result, index)
    depth_map = np.full(size, np.inf, np.float32)
    label_map = None if part_labels is None else np.full(size, -1, np.int64)
    vertex_labels = None if part_labels is None else torch.as_tensor(part_labels, dtype=torch.long)
    window = projection_window(pix[0].numpy(), size)
    tri = result.triangles.cpu()
    for x0, y0, x1, y1 in tiles(window, tile) if window is not None else []:
        points = pix - pix.new_tensor([x0, y0])
        fragments = rasterize(points, depth, tri, (y1 - y0, x1 - x0))
        depth_map[y0:y1, x0:x1] = fragments.zbuf[0].numpy()
        if label_map is not None:
            label_map[y0:y1, x0:x1] = render_labels(points, depth, tri, vertex_labels, (y1 - y0, x1 - x0),
                                                    fragments=fragments)[0].numpy()
    return depth_map, label_map


def render_overlay(photo: np.ndarray, result: FitResult, index: int, tile: int = RENDER_TILE,
                   max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """The overlay preview: the fitted face region with headlight shading over the photo and the fitted 68
    landmarks as green dots; photos longer than ``max_side`` are shrunk to it (area averaging).

    Rendered over the face's window in ``tile``² pieces.  Returns (h, w, 3) uint8.
    """
    pix, depth, size = _view(result, index)
    scale = min(1.0, max_side / max(size))
    if scale < 1.0:
        shape = (max(1, round(size[1] * scale)), max(1, round(size[0] * scale)))
        image = cv2.resize(photo, shape, interpolation=cv2.INTER_AREA)
        scale_xy = np.array([shape[0] / size[1], shape[1] / size[0]])
    else:
        image, scale_xy = photo.copy(), np.ones(2)
    points = (pix[0].numpy() + 0.5) * scale_xy - 0.5
    face_tri = result.face_triangles.cpu().numpy()
    used = np.unique(face_tri)
    window = projection_window(points[used], image.shape[:2]) if used.size else None
    normals = _camera_normals(result, index)[0].numpy()
    for x0, y0, x1, y1 in tiles(window, tile) if window is not None else []:
        piece = np.ascontiguousarray(image[y0:y1, x0:x1])
        image[y0:y1, x0:x1] = overlay_mesh(piece, points - [x0, y0], depth[0].numpy(), face_tri, normals=normals)
    landmarks = (result.landmarks68_photo[index].detach().cpu().numpy() + 0.5) * scale_xy - 0.5
    return draw_points(image, landmarks, (0, 255, 0), 2)


def _texture_mesh(photo: np.ndarray, pix: np.ndarray, visible: np.ndarray, triangles: np.ndarray,
                  extras: MeshExtras, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bake the texture; returns (uv (Nuv + 1, 2), triangles_uv (T, 3), texture (size, size, 3))."""
    uv, triangles_uv, baked, order = extras.uv, extras.triangles_uv, extras.bake_mask, extras.bake_order
    texture, filled = bake_texture(photo, pix, visible, uv, triangles[order], triangles_uv[order], size,
                                   triangle_mask=baked[order])
    # the other triangles share the texel farthest from anything sampled (their fill: the mean face colour)
    if filled.any():
        distance = cv2.distanceTransform((~filled).astype(np.uint8), cv2.DIST_L2, 5)
        row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    else:
        row = col = 0
    fill_uv = np.array([[(col + 0.5) / size, 1.0 - (row + 0.5) / size]])
    out_uv = np.concatenate([uv, fill_uv])
    out_triangles_uv = np.where(baked[:, None], triangles_uv, len(uv))
    return out_uv, out_triangles_uv, texture


def save_outputs(result: FitResult, index: int, photo: np.ndarray, paths: OutputPaths, *,
                 color: str = "vertex", space: str = "photo", extras: MeshExtras | None = None,
                 texture_size: int = 512, params_extra: dict | None = None) -> list[Path]:
    """Write the files of face ``index`` named by ``paths``; returns the paths written (mesh side files too).

    Args:
        result: a (batched) fit.
        photo: the (H, W, 3) uint8 RGB photo the face was found in.
        paths: which files to write (:class:`OutputPaths`); ``paths.parts`` needs ``extras.part_labels``.
        color: ``"texture"`` (needs ``extras`` with UVs; not for PLY), ``"vertex"``, ``"none"``.
        space: ``"photo"`` (line up with the photo) or ``"camera"`` (metric cm).
        extras: the model's UVs and part labels (:meth:`MeshExtras.from_model`).
        texture_size: texture side in pixels.
        params_extra: added to the parameters JSON under ``extra`` (with ``mesh_space``).
    Raises:
        ValueError: bad options, or a texture / part map asked for without the model data it needs.
    """
    if color not in ("texture", "vertex", "none"):
        raise ValueError(f"color must be 'texture', 'vertex' or 'none', got {color!r}")
    if space not in SPACES:
        raise ValueError(f"space must be 'photo' or 'camera', got {space!r}")
    if not 0 <= index < result.batch_size:
        raise IndexError(f"face index {index} is outside the batch of {result.batch_size}")
    photo = np.asarray(photo)
    width, height = (int(v) for v in result.observation.photo_size[index])
    if photo.shape != (height, width, 3) or photo.dtype != np.uint8:
        raise ValueError(f"photo must be ({height}, {width}, 3) uint8 as fitted, got {photo.shape} {photo.dtype}")
    if color == "texture" and (extras is None or extras.bake_mask is None):
        raise ValueError("a texture needs the model's texture coordinates and bake mask "
                         "(MeshExtras.from_model(model, texture_size))")
    if paths.parts is not None and (extras is None or extras.part_labels is None):
        raise ValueError("a part map needs part annotations on the model; build them with "
                         "`fit3dmm models annotate`")
    tri = result.triangles.cpu().numpy()
    verts = photo_space_vertices(result, index) if space == "photo" else \
        result.vertices_cam[index].detach().cpu().double().numpy()
    pix = result.vertices_photo[index].detach().cpu().double().numpy()
    mesh_args: dict[str, np.ndarray] = {}
    if color != "none":
        visible = visible_vertices(result, index)
        if color == "vertex":
            mesh_args["vertex_colors"] = sample_vertex_colors(photo, pix, visible)
        else:
            uv, triangles_uv, texture = _texture_mesh(photo, pix, visible, tri, extras, texture_size)
            mesh_args.update(uv=uv, triangles_uv=triangles_uv, texture=texture)
    for p in paths.all():
        p.parent.mkdir(parents=True, exist_ok=True)
    written = write_mesh(paths.mesh, verts, tri, **mesh_args)
    write_params_json(paths.params, result_to_dict(result, index, {"mesh_space": space, **(params_extra or {})}))
    written.append(paths.params)
    if paths.npz is not None:
        write_params_npz(paths.npz, result, index)
        written.append(paths.npz)
    if paths.depth is not None or paths.parts is not None:
        depth, labels = render_maps(result, index, extras.part_labels if paths.parts is not None else None)
        if paths.depth is not None:
            write_depth_png(paths.depth, depth)
            written.append(paths.depth)
        if paths.parts is not None:
            write_png(paths.parts, colorize_labels(labels))
            written.append(paths.parts)
    if paths.overlay is not None:
        write_png(paths.overlay, render_overlay(photo, result, index))
        written.append(paths.overlay)
    return written
