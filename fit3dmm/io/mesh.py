"""Mesh outputs (OBJ, PLY, GLB) that keep the model's vertex order, and colours taken from the photo.

UV convention: OBJ's, ``(u, v)`` with v up — texture pixel (column x, row y) of a ``size``² texture has its
centre at ``u = (x + 0.5) / size``, ``v = 1 − (y + 0.5) / size``.  Models may spread their UVs over several
unit tiles (ICT puts different materials at u ∈ [0, 8)); only the tile [0, 1]² is baked into a texture.

Photo coordinates are pixels with pixel centres at integer coordinates (x right, y down), as everywhere in
fit3dmm.  Vertices are written in whatever unit they are given (fit3dmm passes centimetres; note that
glTF viewers assume metres).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import trimesh
from PIL import Image

from fit3dmm import __version__
from fit3dmm.io.atomic import atomic_files, atomic_write
from fit3dmm.io.images import encode_png
from fit3dmm.render.rasterize import rasterize

MESH_FORMATS = (".obj", ".ply", ".glb")
_MATERIAL = "material0"
_GREY = np.array([128, 128, 128], np.uint8)


def _as_array(name: str, value: np.ndarray, shape: tuple[int | None, ...], kind: str) -> np.ndarray:
    """Check an array's shape (None = any size) and kind ('f' finite float64, 'u8' uint8, '' any)."""
    array = np.asarray(value)
    if array.ndim != len(shape) or any(s not in (None, n) for s, n in zip(shape, array.shape, strict=True)):
        wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {wanted}, got {array.shape}")
    if kind == "u8" and array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {array.dtype}")
    if kind == "f":
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{name} must be numeric, got {array.dtype}")
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _indices(name: str, value: np.ndarray, rows: int | None, count: int) -> np.ndarray:
    """Check a (rows, 3) integer array of indices into ``count`` items; returns it as int64."""
    indices = _as_array(name, value, (rows, 3), "")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= count):
        lo, hi = indices.min(), indices.max()
        raise ValueError(f"{name} must index 0..{count - 1}, got values in [{lo}, {hi}]")
    return indices.astype(np.int64)


def write_mesh(
    path: str | Path,
    vertices: np.ndarray,
    triangles: np.ndarray,
    *,
    vertex_colors: np.ndarray | None = None,
    uv: np.ndarray | None = None,
    triangles_uv: np.ndarray | None = None,
    texture: np.ndarray | None = None,
) -> list[Path]:
    """Write a triangle mesh atomically, the format chosen by the extension (.obj, .ply or .glb).

    Args:
        vertices: (V, 3) float positions.
        triangles: (T, 3) vertex indices.
        vertex_colors: (V, 3) uint8 RGB, or None.
        uv: (Nuv, 2) texture coordinates (OBJ convention, module docstring), or None.
        triangles_uv: (T, 3) indices into ``uv`` per triangle corner; may be omitted when ``uv`` is per
            vertex (Nuv = V).
        texture: (H, W, 3) uint8 RGB image for ``uv``, or None.

    OBJ is written directly (``v``/``vt``/``f v/vt`` lines, colours as ``v x y z r g b`` with r, g, b in
    [0, 1]) so the vertex order is exactly kept; with a texture, ``<stem>.mtl`` and ``<stem>_texture.png``
    are written next to it, all three as one group.  PLY (binary, via trimesh) holds positions and vertex
    colours only.  GLB (via trimesh) embeds the texture; as glTF stores one UV per vertex, a vertex used
    with several UVs is duplicated: the first V vertices are the input vertices in order (each with the UV
    of its first corner), the duplicates follow.

    Returns:
        The paths written (the mesh last).
    Raises:
        ValueError: an unsupported extension, inconsistent arrays, or a texture/UVs for PLY.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise ValueError(f"unsupported mesh format {path.suffix!r} for {path}; use one of {MESH_FORMATS}")
    vertices = _as_array("vertices", vertices, (None, 3), "f")
    nv = len(vertices)
    triangles = _indices("triangles", triangles, None, nv)
    if vertex_colors is not None:
        vertex_colors = _as_array("vertex_colors", vertex_colors, (nv, 3), "u8")
    if uv is None and (triangles_uv is not None or texture is not None):
        raise ValueError("triangles_uv and texture need uv")
    if uv is not None:
        uv = _as_array("uv", uv, (None, 2), "f")
        if triangles_uv is None:
            if len(uv) != nv:
                raise ValueError(f"without triangles_uv, uv needs one row per vertex ({nv}), got {len(uv)}")
            triangles_uv = triangles
        triangles_uv = _indices("triangles_uv", triangles_uv, len(triangles), len(uv))
    if texture is not None:
        texture = _as_array("texture", texture, (None, None, 3), "u8")
    if suffix == ".obj":
        return _write_obj(path, vertices, triangles, vertex_colors, uv, triangles_uv, texture)
    if suffix == ".ply":
        if uv is not None:
            raise ValueError(f"PLY cannot hold UVs or a texture ({path}); write .obj or .glb instead")
        mesh = _trimesh(vertices, triangles, vertex_colors=vertex_colors)
        data = mesh.export(file_type="ply", encoding="binary")
    else:
        data = _glb_bytes(vertices, triangles, vertex_colors, uv, triangles_uv, texture)
    with atomic_write(path) as handle:
        handle.write(data)
    return [path]


def _obj_text(vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None, uv: np.ndarray | None,
              triangles_uv: np.ndarray | None, mtl_name: str | None) -> str:
    """The OBJ file body (1-based indices)."""
    lines = [f"# fit3dmm {__version__}: {len(vertices)} vertices, {len(triangles)} triangles\n"]
    if mtl_name is not None:
        lines.append(f"mtllib {mtl_name}\n")
    if colors is None:
        lines.append(("v %.6f %.6f %.6f\n" * len(vertices)) % tuple(vertices.ravel()))
    else:
        rows = np.concatenate([vertices, colors / 255.0], axis=1)
        lines.append(("v %.6f %.6f %.6f %.6f %.6f %.6f\n" * len(rows)) % tuple(rows.ravel()))
    if uv is None:
        lines.append(("f %d %d %d\n" * len(triangles)) % tuple((triangles + 1).ravel()))
    else:
        lines.append(("vt %.6f %.6f\n" * len(uv)) % tuple(uv.ravel()))
        if mtl_name is not None:
            lines.append(f"usemtl {_MATERIAL}\n")
        corners = np.stack([triangles + 1, triangles_uv + 1], axis=-1)
        lines.append(("f %d/%d %d/%d %d/%d\n" * len(corners)) % tuple(corners.ravel()))
    return "".join(lines)


def _write_obj(path: Path, vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None,
               uv: np.ndarray | None, triangles_uv: np.ndarray | None, texture: np.ndarray | None
               ) -> list[Path]:
    """OBJ alone, or texture PNG + MTL + OBJ as one atomic group."""
    if texture is None:
        with atomic_write(path, "w") as handle:
            handle.write(_obj_text(vertices, triangles, colors, uv, triangles_uv, None))
        return [path]
    texture_path = path.with_name(f"{path.stem}_texture.png")
    mtl_path = path.with_suffix(".mtl")
    mtl = (f"# fit3dmm {__version__}\nnewmtl {_MATERIAL}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
           f"map_Kd {texture_path.name}\n")
    obj = _obj_text(vertices, triangles, colors, uv, triangles_uv, mtl_path.name)
    group = [texture_path, mtl_path, path]
    with atomic_files(group) as (tmp_texture, tmp_mtl, tmp_obj):
        tmp_texture.write_bytes(encode_png(texture))
        tmp_mtl.write_text(mtl, encoding="utf-8")
        tmp_obj.write_text(obj, encoding="utf-8")
    return group


def split_uv_seams(num_vertices: int, triangles: np.ndarray, triangles_uv: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One UV per vertex: duplicate the vertices used with several UVs, keeping the first V in order.

    Args:
        num_vertices: V.
        triangles, triangles_uv: (T, 3) vertex and UV indices per corner.
    Returns:
        ``vertex_index`` (V',) original vertex of each output vertex (``vertex_index[:V] = arange(V)``),
        ``uv_index`` (V',) its UV (a vertex used by no triangle gets UV 0), and the re-indexed triangles
        (T, 3).
    """
    corner_v, corner_uv = triangles.ravel(), triangles_uv.ravel()
    used, first_corner = np.unique(corner_v, return_index=True)
    primary_uv = np.zeros(num_vertices, np.int64)
    primary_uv[used] = corner_uv[first_corner]
    extra = corner_uv != primary_uv[corner_v]
    pairs, inverse = np.unique(np.stack([corner_v[extra], corner_uv[extra]], axis=1), axis=0,
                               return_inverse=True)
    new_corner = corner_v.copy()
    new_corner[extra] = num_vertices + inverse.ravel()
    vertex_index = np.concatenate([np.arange(num_vertices), pairs[:, 0]])
    uv_index = np.concatenate([primary_uv, pairs[:, 1]])
    return vertex_index, uv_index, new_corner.reshape(-1, 3)


def _glb_bytes(vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None, uv: np.ndarray | None,
               triangles_uv: np.ndarray | None, texture: np.ndarray | None) -> bytes:
    """Binary glTF via trimesh; textured meshes get seams split (see :func:`split_uv_seams`)."""
    if uv is None:
        return _trimesh(vertices, triangles, vertex_colors=colors).export(file_type="glb")
    vertex_index, uv_index, faces = split_uv_seams(len(vertices), triangles, triangles_uv)
    image = None if texture is None else Image.fromarray(texture)
    visual = trimesh.visual.TextureVisuals(uv=uv[uv_index], image=image)
    if colors is not None:
        alpha = np.full((len(vertex_index), 1), 255, np.uint8)
        visual.vertex_attributes["color"] = np.concatenate([colors[vertex_index], alpha], axis=1)
    return _trimesh(vertices[vertex_index], faces, visual=visual).export(file_type="glb")


def _trimesh(vertices: np.ndarray, faces: np.ndarray, **visuals: object) -> trimesh.Trimesh:
    """A trimesh that keeps vertices and faces exactly as given (no merging, no reordering)."""
    return trimesh.Trimesh(vertices, faces, process=False, validate=False, **visuals)


def _sample_bilinear(photo: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear colours of (H, W, C) ``photo`` at (N, 2) pixel positions → ((N, C) float, (N,) inside).

    ``inside`` is False for points more than half a pixel outside the photo; the others are clamped to the
    outermost pixel centres.
    """
    h, w = photo.shape[:2]
    x, y = points[:, 0], points[:, 1]
    inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = photo[y0, x0] * (1 - fx) + photo[y0, x1] * fx
    bottom = photo[y1, x0] * (1 - fx) + photo[y1, x1] * fx
    return top * (1 - fy) + bottom * fy, inside


def _check_photo_inputs(photo: np.ndarray, vertices_photo: np.ndarray, visible: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    photo = _as_array("photo", photo, (None, None, 3), "u8")
    if min(photo.shape[:2]) < 1:
        raise ValueError(f"photo is empty: {photo.shape}")
    vertices_photo = _as_array("vertices_photo", vertices_photo, (None, 2), "f")
    return photo, vertices_photo, _bool_mask("visible", visible, len(vertices_photo))


def _bool_mask(name: str, value: np.ndarray, count: int) -> np.ndarray:
    mask = np.asarray(value)
    if mask.shape != (count,) or mask.dtype != np.bool_:
        raise ValueError(f"{name} must be a ({count},) bool array, got {mask.shape} {mask.dtype}")
    return mask


def sample_vertex_colors(photo: np.ndarray, vertices_photo: np.ndarray, visible: np.ndarray,
                         fallback: tuple[int, int, int] | np.ndarray | None = None) -> np.ndarray:
    """Per-vertex colours read from the photo: (V, 3) uint8.

    Args:
        photo: (H, W, 3) uint8 RGB.
        vertices_photo: (V, 2) vertex positions in photo pixels.
        visible: (V,) bool, the vertices seen in the photo.
        fallback: RGB given to invisible vertices (and those outside the photo); default the mean colour
            of the sampled vertices (mid-grey when none is sampled).
    """
    photo, vertices_photo, visible = _check_photo_inputs(photo, vertices_photo, visible)
    colors, inside = _sample_bilinear(photo, vertices_photo)
    sampled = visible & inside
    if fallback is not None:
        fill = _as_array("fallback", np.asarray(fallback), (3,), "f")
        if fill.min() < 0 or fill.max() > 255:
            raise ValueError(f"fallback must be RGB in 0..255, got {fill}")
    else:
        fill = colors[sampled].mean(axis=0) if sampled.any() else _GREY
    out = np.where(sampled[:, None], colors, fill)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _fill_holes(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Pull-push hole filling: unknown pixels of (H, W, C) float ``image`` get a smooth blend of the known.

    Known pixels are averaged down a 2 × 2 pyramid; going back up, each unknown pixel takes the bilinear
    upsampling of the coarser level.  O(H W), no iterations.
    """
    h, w = known.shape
    if known.all() or not known.any() or max(h, w) == 1:
        return image
    weight = known.astype(np.float32)
    total = image * weight[..., None]
    ph, pw = h + h % 2, w + w % 2
    pad = ((0, ph - h), (0, pw - w))
    weight = np.pad(weight, pad)
    total = np.pad(total, (*pad, (0, 0)))
    coarse_weight = weight.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    coarse_total = total.reshape(ph // 2, 2, pw // 2, 2, -1).sum(axis=(1, 3))
    coarse_known = coarse_weight > 0
    coarse = coarse_total / np.maximum(coarse_weight, 1e-12)[..., None]
    coarse = _fill_holes(coarse.astype(np.float32), coarse_known)
    up = cv2.resize(coarse, (pw, ph), interpolation=cv2.INTER_LINEAR).reshape(ph, pw, -1)[:h, :w]
    return np.where(known[..., None], image, up)


def bake_texture(
    photo: np.ndarray,
    vertices_photo: np.ndarray,
    visible: np.ndarray,
    uv: np.ndarray,
    triangles: np.ndarray,
    triangles_uv: np.ndarray,
    size: int = 1024,
    *,
    triangle_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Project the photo onto the UV map.

    Every texel of a triangle in the tile [0, 1]² whose three vertices are visible takes the photo colour
    (bilinear) at the barycentric interpolation of its vertices' photo positions.  All other texels (hidden
    or outside the photo, other triangles, gaps between UV islands) are filled smoothly from the sampled
    ones by pull-push, so seams do not bleed black; with nothing sampled the texture is mid-grey.  Where
    baked triangles overlap in UV space the first (lowest index) wins: pass ``triangle_mask`` to bake one
    material only (ICT maps its eyeballs over the whole tile [0, 1]², on top of the face: bake the face
    triangles, e.g. those of :meth:`~fit3dmm.models.face_model.FaceModel.face_triangles`).

    Args:
        photo: (H, W, 3) uint8 RGB.
        vertices_photo: (V, 2) vertex positions in photo pixels.
        visible: (V,) bool.
        uv: (Nuv, 2) texture coordinates (module docstring); triangles outside [0, 1]² are not baked.
        triangles, triangles_uv: (T, 3) vertex and UV indices.
        size: texture side in pixels.
        triangle_mask: (T,) bool, the triangles that may be baked; default all.
    Returns:
        ``texture`` (size, size, 3) uint8 and ``filled`` (size, size) bool, True where sampled from the photo.
    """
    photo, vertices_photo, visible = _check_photo_inputs(photo, vertices_photo, visible)
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    uv = _as_array("uv", uv, (None, 2), "f")
    triangles = _indices("triangles", triangles, None, len(vertices_photo))
    triangles_uv = _indices("triangles_uv", triangles_uv, len(triangles), len(uv))

    corners_uv = uv[triangles_uv]
    in_tile = ((corners_uv >= 0.0) & (corners_uv <= 1.0)).all(axis=(1, 2))
    bake = in_tile & visible[triangles].all(axis=1)
    if triangle_mask is not None:
        bake &= _bool_mask("triangle_mask", triangle_mask, len(triangles))
    # rasterize the baked triangles in texel space (flat depth: overlaps go to the lowest triangle index)
    texel_xy = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=-1)
    fragments = rasterize(torch.from_numpy(texel_xy)[None], torch.ones(1, len(uv), dtype=torch.float64),
                          torch.from_numpy(triangles_uv[bake]), (size, size))
    face = fragments.face_index[0].numpy()
    y, x = np.nonzero(face >= 0)
    bary = fragments.bary[0, y, x].numpy()
    photo_xy = np.einsum("nk,nkd->nd", bary, vertices_photo[triangles[bake][face[y, x]]])
    colors, inside = _sample_bilinear(photo, photo_xy)
    texture = np.zeros((size, size, 3), np.float32)
    filled = np.zeros((size, size), bool)
    texture[y[inside], x[inside]] = colors[inside]
    filled[y[inside], x[inside]] = True
    if not filled.any():
        return np.broadcast_to(_GREY, (size, size, 3)).copy(), filled
    texture = _fill_holes(texture, filled)
    return np.clip(np.rint(texture), 0, 255).astype(np.uint8), filled
