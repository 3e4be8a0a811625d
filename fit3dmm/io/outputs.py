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
| ``face_overlay.png`` | by default | the fitted face region shaded over the photo, fitted landmarks in green |
| ``face.npz`` | ``npz`` | the parameters as arrays (:func:`~fit3dmm.io.params.write_params_npz`) |
| ``face_depth.png`` | ``depth`` | 16-bit depth at photo resolution (:func:`~fit3dmm.io.images.write_depth_png`) |
| ``face_parts.png`` | ``parts`` | colour-coded part map at photo size (:func:`~fit3dmm.io.images.colorize_labels`) |

Colour: ``"vertex"`` samples the photo at the visible vertices (the others get the mean colour);
``"texture"`` bakes the photo into the model's UV tile [0, 1]² (:func:`~fit3dmm.io.mesh.bake_texture`, the
face region's triangles only).  Triangles outside that tile or region (ICT: the other material tiles, u in
1..7, eyes, mouth interior, back of the head) all get one texture coordinate, the texel farthest from
everything sampled, whose pull-push fill is the face's average colour.

Depth and part maps render the full mesh, but only over the bounding box of its projection: a very large
photo costs memory for its own size, not for a full-resolution z-buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from fit3dmm.fitting.result import FitResult
from fit3dmm.io.images import colorize_labels, write_depth_png, write_png
from fit3dmm.io.mesh import MESH_FORMATS, bake_texture, sample_vertex_colors, write_mesh
from fit3dmm.io.params import result_to_dict, write_params_json, write_params_npz
from fit3dmm.render.overlay import draw_points, overlay_mesh
from fit3dmm.render.rasterize import Fragments, rasterize, render_labels, vertex_visibility
from fit3dmm.render.shading import vertex_normals

if TYPE_CHECKING:
    from fit3dmm.models.face_model import FaceModel

COLOR_MODES = ("auto", "texture", "vertex", "none")
SPACES = ("photo", "camera")


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
        part_labels: (V,) int64 part index per vertex (−1 none), or None when the model is not annotated.
    """

    uv: np.ndarray | None
    triangles_uv: np.ndarray | None
    bake_mask: np.ndarray | None
    part_labels: np.ndarray | None

    @staticmethod
    def from_model(model: FaceModel, texture_size: int | None = None) -> MeshExtras:
        """From a :class:`~fit3dmm.models.face_model.FaceModel`; ``texture_size`` given (and UVs present):
        also the bake mask for textures of that size (:func:`bake_mask`)."""
        labels = model.assets.part_labels
        uv = None if model.uv is None else np.asarray(model.uv, np.float64)
        triangles_uv = None if model.triangles_uv is None else np.asarray(model.triangles_uv, np.int64)
        mask = None
        if uv is not None and texture_size is not None:
            in_face = np.zeros(model.num_vertices, bool)
            in_face[model.face_vertices.cpu().numpy()] = True
            mask = bake_mask(uv, triangles_uv, in_face[model.triangles.cpu().numpy()].all(axis=1), texture_size)
        return MeshExtras(uv=uv, triangles_uv=triangles_uv, bake_mask=mask,
                          part_labels=None if labels is None else np.asarray(labels, np.int64))


def bake_mask(uv: np.ndarray, triangles_uv: np.ndarray, face_triangles: np.ndarray, size: int) -> np.ndarray:
    """(T,) bool: the face triangles in the UV tile [0, 1]² that own at least one texel of a ``size``² texture.

    Where triangles overlap in UV space the lowest index owns the texel (the rule of
    :func:`~fit3dmm.io.mesh.bake_texture`); a triangle that owns none lies under another chart (ICT maps
    both eyeballs over its face tile) and must not be baked, or it would show through wherever the face
    above it is hidden in the photo.

    Args:
        uv: (Nuv, 2) texture coordinates; triangles_uv: (T, 3) uv indices.
        face_triangles: (T,) bool, the candidates (the fitted face region).
    """
    corners = uv[triangles_uv]
    candidates = np.nonzero(face_triangles & ((corners >= 0.0) & (corners <= 1.0)).all(axis=(1, 2)))[0]
    texel_xy = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=-1)
    fragments = rasterize(torch.from_numpy(texel_xy)[None], torch.ones(1, len(uv), dtype=torch.float64),
                          torch.from_numpy(triangles_uv[candidates]), (size, size))
    owners = torch.unique(fragments.face_index[fragments.face_index >= 0]).numpy()
    mask = np.zeros(len(triangles_uv), bool)
    mask[candidates[owners]] = True
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


def projection_window(points: np.ndarray, image_size: tuple[int, int], margin: int = 2
                      ) -> tuple[int, int, int, int] | None:
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


_Drawn = tuple[Fragments, torch.Tensor, torch.Tensor, tuple[int, int, int, int]]


def _rasterize_window(result: FitResult, index: int, triangles: torch.Tensor) -> _Drawn | None:
    """Rasterize face ``index`` over the window of its projection: (fragments, shifted points (1, V, 2),
    depth (1, V), window), or None when the mesh misses the photo."""
    pix = result.vertices_photo[index].detach().cpu().double()
    depth = -result.vertices_cam[index, :, 2].detach().cpu().double()
    width, height = (int(v) for v in result.observation.photo_size[index])
    window = projection_window(pix.numpy(), (height, width))
    if window is None:
        return None
    x0, y0, x1, y1 = window
    shifted = (pix - pix.new_tensor([x0, y0]))[None]
    fragments = rasterize(shifted, depth[None], triangles.cpu(), (y1 - y0, x1 - x0))
    return fragments, shifted, depth[None], window


def visible_vertices(result: FitResult, index: int, drawn: _Drawn | None = None) -> np.ndarray:
    """(V,) bool: full-model vertices facing the camera and unoccluded in the photo.

    ``drawn``: the full mesh's window rasterization (of :func:`_rasterize_window`), reused when given.
    """
    verts_cam = result.vertices_cam[index: index + 1].detach().cpu().double()
    tri = result.triangles.cpu()
    drawn = drawn or _rasterize_window(result, index, tri)
    if drawn is None:
        return np.zeros(verts_cam.shape[1], bool)
    fragments, shifted, depth, (x0, y0, x1, y1) = drawn
    normals = vertex_normals(verts_cam, tri)
    return vertex_visibility(shifted, depth, tri, (y1 - y0, x1 - x0), normals, fragments=fragments)[0].numpy()


def _paste(window_values: np.ndarray, window: tuple[int, int, int, int], image_size: tuple[int, int],
           fill: float) -> np.ndarray:
    """Place an (h, w) window into an (H, W) array filled with ``fill``."""
    x0, y0, x1, y1 = window
    out = np.full(image_size, fill, dtype=window_values.dtype)
    out[y0:y1, x0:x1] = window_values
    return out


def _overlay(photo: np.ndarray, result: FitResult, index: int) -> np.ndarray:
    """The overlay image: face region shaded over the photo (rendered over its window only) + landmarks."""
    pix = result.vertices_photo[index].detach().cpu().double().numpy()
    depth = -result.vertices_cam[index, :, 2].detach().cpu().double().numpy()
    tri = result.face_triangles.cpu().numpy()
    image = photo.copy()
    used = np.unique(tri)
    window = projection_window(pix[used], photo.shape[:2]) if used.size else None
    if window is not None:
        x0, y0, x1, y1 = window
        crop = np.ascontiguousarray(photo[y0:y1, x0:x1])
        image[y0:y1, x0:x1] = overlay_mesh(crop, pix - [x0, y0], depth, tri)
    return draw_points(image, result.landmarks68_photo[index].detach().cpu().numpy(), (0, 255, 0), 2)


def _texture_mesh(photo: np.ndarray, pix: np.ndarray, visible: np.ndarray, triangles: np.ndarray,
                  extras: MeshExtras, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bake the texture; returns (uv (Nuv + 1, 2), triangles_uv (T, 3), texture (size, size, 3))."""
    uv, triangles_uv, baked = extras.uv, extras.triangles_uv, extras.bake_mask
    texture, filled = bake_texture(photo, pix, visible, uv, triangles, triangles_uv, size, triangle_mask=baked)
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
    drawn = None
    if color != "none" or paths.depth is not None or paths.parts is not None:
        drawn = _rasterize_window(result, index, result.triangles.cpu())
    if color != "none":
        visible = visible_vertices(result, index, drawn) if drawn is not None else np.zeros(len(pix), bool)
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
        written += _write_maps(result, index, paths, extras, drawn)
    if paths.overlay is not None:
        write_png(paths.overlay, _overlay(photo, result, index))
        written.append(paths.overlay)
    return written


def _write_maps(result: FitResult, index: int, paths: OutputPaths, extras: MeshExtras | None,
                drawn: _Drawn | None) -> list[Path]:
    """The depth and/or part map of face ``index`` at photo resolution from the full mesh's window
    rasterization ``drawn`` (None: the mesh misses the photo)."""
    width, height = (int(v) for v in result.observation.photo_size[index])
    tri = result.triangles.cpu()
    written = []
    if paths.depth is not None:
        depth = np.full((height, width), np.inf)
        if drawn is not None:
            depth = _paste(drawn[0].zbuf[0].numpy(), drawn[3], (height, width), np.inf)
        write_depth_png(paths.depth, depth)
        written.append(paths.depth)
    if paths.parts is not None:
        labels = np.full((height, width), -1, np.int64)
        if drawn is not None:
            fragments, shifted, depth_v, window = drawn
            x0, y0, x1, y1 = window
            part_labels = torch.as_tensor(extras.part_labels, dtype=torch.long)
            window_labels = render_labels(shifted, depth_v, tri, part_labels, (y1 - y0, x1 - x0),
                                          fragments=fragments)[0].numpy()
            labels = _paste(window_labels, window, (height, width), -1)
        write_png(paths.parts, colorize_labels(labels))
        written.append(paths.parts)
    return written
