"""Write everything a fit produces for one face: mesh, parameters, landmarks, overlay (and extras).

Meshes are written in *photo space* by default so that they line up with the input photo: x and y are
photo pixel coordinates (y flipped so that +y is up, i.e. y_mesh = H − 1 − y_photo) and z is the depth
relief in the same pixel scale (camera-space depth × focal / mean depth, larger towards the viewer), the
convention of 3DDFA and PRNet but with the crop undone.  ``space="camera"`` writes metric camera-space
vertices (cm) instead; the camera that projects them onto the photo is in the parameters JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fit3dmm.fitting.result import FitResult
from fit3dmm.io.images import write_png
from fit3dmm.io.mesh import sample_vertex_colors, write_mesh
from fit3dmm.io.params import result_to_dict, write_params_json
from fit3dmm.render.overlay import draw_points, overlay_mesh

MESH_FORMATS = (".obj", ".ply", ".glb")


@dataclass
class OutputPaths:
    """Where the outputs of one face go."""

    mesh: Path
    params: Path
    overlay: Path | None
    extra: dict[str, Path] = field(default_factory=dict)

    @staticmethod
    def for_target(target: str | Path, stem: str = "face", mesh_format: str = ".obj",
                   overlay: bool = True) -> OutputPaths:
        """``target`` ending in .obj/.ply/.glb names the mesh (siblings get ``<stem>.json`` and
        ``<stem>_overlay.png``); anything else is a folder holding ``<stem><format>`` etc."""
        target = Path(target)
        if target.suffix.lower() in MESH_FORMATS:
            base = target.with_suffix("")
            mesh = target
        else:
            base = target / stem
            mesh = base.with_suffix(mesh_format)
        return OutputPaths(mesh=mesh, params=base.with_suffix(".json"),
                           overlay=Path(f"{base}_overlay.png") if overlay else None)

    def all(self) -> list[Path]:
        return [p for p in (self.mesh, self.params, self.overlay, *self.extra.values()) if p is not None]


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


def visible_vertices(result: FitResult, index: int) -> np.ndarray:
    """(V,) bool: full-model vertices facing the camera and unoccluded in the photo."""
    from fit3dmm.render.rasterize import vertex_visibility
    from fit3dmm.render.shading import vertex_normals

    verts_cam = result.vertices_cam[index: index + 1]
    pix = result.vertices_photo[index: index + 1].to(verts_cam.dtype)
    tri = result.triangles.to(verts_cam.device)
    width, height = (int(v) for v in result.observation.photo_size[index])
    normals = vertex_normals(verts_cam, tri)
    return vertex_visibility(pix, -verts_cam[..., 2], tri, (height, width), normals)[0].cpu().numpy()


def save_outputs(result: FitResult, index: int, photo: np.ndarray, paths: OutputPaths, *,
                 color: str = "vertex", space: str = "photo") -> list[Path]:
    """Write the mesh, the parameters JSON and the overlay PNG of face ``index``; returns the paths written.

    Args:
        photo: the (H, W, 3) uint8 RGB photo the face was found in.
        color: ``"vertex"`` (colours sampled from the photo), ``"none"``.
        space: ``"photo"`` (line up with the photo) or ``"camera"`` (metric cm).
    """
    if color not in ("vertex", "none"):
        raise ValueError(f"color must be 'vertex' or 'none', got {color!r}")
    if space not in ("photo", "camera"):
        raise ValueError(f"space must be 'photo' or 'camera', got {space!r}")
    tri = result.triangles.cpu().numpy()
    verts = photo_space_vertices(result, index) if space == "photo" else \
        result.vertices_cam[index].detach().cpu().double().numpy()
    pix = result.vertices_photo[index].detach().cpu().double().numpy()
    colors = None
    if color == "vertex":
        colors = sample_vertex_colors(photo, pix, visible_vertices(result, index))
    for p in paths.all():
        p.parent.mkdir(parents=True, exist_ok=True)
    write_mesh(paths.mesh, verts, tri, vertex_colors=colors)
    write_params_json(paths.params, result_to_dict(result, index, {"mesh_space": space}))
    written = [paths.mesh, paths.params]
    if paths.overlay is not None:
        depth = -result.vertices_cam[index, :, 2].detach().cpu().numpy()
        image = overlay_mesh(photo, pix, depth, result.face_triangles.cpu().numpy())
        image = draw_points(image, result.landmarks68_photo[index].detach().cpu().numpy(), (0, 255, 0), 2)
        write_png(paths.overlay, image)
        written.append(paths.overlay)
    return written
