"""write_mesh (OBJ/PLY/GLB read back), split_uv_seams, bake_texture and sample_vertex_colors."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from fit3dmm.io.mesh import bake_texture, sample_vertex_colors, split_uv_seams, write_mesh

# Two unit squares side by side; vertex 1 is used with two different UVs (a seam).
VERTS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0.5], [2, 1, 0.5]], float) * 1.5 + 0.125
TRIS = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
UV = np.array([[0, 0], [0.5, 0], [0.5, 1], [0, 1], [0.6, 0], [1, 0], [1, 1], [0.6, 1]])
TRIS_UV = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
COLORS = (np.arange(18).reshape(6, 3) * 14 + 3).astype(np.uint8)
TEXTURE = np.zeros((4, 6, 3), np.uint8)
TEXTURE[:2] = (255, 0, 0)  # top half red: v > 0.5


def _obj_records(path: Path) -> dict[str, list[list[str]]]:
    records: dict[str, list[list[str]]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, *values = line.split()
            records.setdefault(key, []).append(values)
    return records


def test_split_uv_seams_keeps_first_vertices_in_order() -> None:
    vertex_index, uv_index, faces = split_uv_seams(6, TRIS, TRIS_UV)
    # vertex 1 is first used with UV 1; its corners with UV 4 go to a new vertex 6, and vertex 2 with UV 7
    # (first used with UV 2) to vertex 7.
    np.testing.assert_array_equal(vertex_index, [0, 1, 2, 3, 4, 5, 1, 2])
    np.testing.assert_array_equal(uv_index, [0, 1, 2, 3, 5, 6, 4, 7])
    np.testing.assert_array_equal(faces, [[0, 1, 2], [0, 2, 3], [6, 4, 5], [6, 5, 7]])
    np.testing.assert_array_equal(vertex_index[faces], TRIS)
    np.testing.assert_array_equal(uv_index[faces], TRIS_UV)


def test_obj_with_texture_keeps_order_uvs_and_colors(tmp_path: Path) -> None:
    written = write_mesh(tmp_path / "face.obj", VERTS, TRIS, vertex_colors=COLORS, uv=UV,
                         triangles_uv=TRIS_UV, texture=TEXTURE)
    assert written == [tmp_path / "face_texture.png", tmp_path / "face.mtl", tmp_path / "face.obj"]
    assert sorted(os.listdir(tmp_path)) == ["face.mtl", "face.obj", "face_texture.png"]
    obj = _obj_records(tmp_path / "face.obj")
    v = np.array(obj["v"], float)
    np.testing.assert_allclose(v[:, :3], VERTS, atol=1e-6)
    np.testing.assert_array_equal(np.rint(v[:, 3:] * 255), COLORS)
    np.testing.assert_allclose(np.array(obj["vt"], float), UV, atol=1e-6)
    corners = np.array([[c.split("/") for c in f] for f in obj["f"]], int) - 1
    np.testing.assert_array_equal(corners[..., 0], TRIS)
    np.testing.assert_array_equal(corners[..., 1], TRIS_UV)
    assert obj["mtllib"] == [["face.mtl"]] and obj["usemtl"] == [["material0"]]
    mtl = _obj_records(tmp_path / "face.mtl")
    assert mtl["map_Kd"] == [["face_texture.png"]] and mtl["newmtl"] == [["material0"]]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "face_texture.png"))[..., ::-1], TEXTURE)

    mesh = trimesh.load(tmp_path / "face.obj", process=False, maintain_order=True)
    assert len(mesh.vertices) == 6 and np.asarray(mesh.visual.material.image).shape == (4, 6, 3)
    np.testing.assert_allclose(mesh.vertices, VERTS, atol=1e-6)


def test_obj_with_colors_reads_back_with_trimesh(tmp_path: Path) -> None:
    assert write_mesh(tmp_path / "c.obj", VERTS, TRIS, vertex_colors=COLORS) == [tmp_path / "c.obj"]
    mesh = trimesh.load(tmp_path / "c.obj", process=False, maintain_order=True)
    np.testing.assert_allclose(mesh.vertices, VERTS, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, TRIS)
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], COLORS)


def test_ply_keeps_order_and_colors(tmp_path: Path) -> None:
    write_mesh(tmp_path / "m.PLY", VERTS, TRIS, vertex_colors=COLORS)
    mesh = trimesh.load(tmp_path / "m.PLY", process=False)
    np.testing.assert_allclose(mesh.vertices, VERTS, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, TRIS)
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], COLORS)
    with pytest.raises(ValueError, match="PLY cannot hold"):
        write_mesh(tmp_path / "t.ply", VERTS, TRIS, uv=UV, triangles_uv=TRIS_UV, texture=TEXTURE)
    assert not (tmp_path / "t.ply").exists()


def _glb_accessor(path: Path, attribute: str) -> np.ndarray:
    """Read one vertex attribute of the first primitive straight from a GLB file."""
    data = path.read_bytes()
    json_len = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20:20 + json_len])
    binary = data[20 + json_len + 8:]
    accessor = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"][attribute]]
    view = gltf["bufferViews"][accessor["bufferView"]]
    dtype = {5121: np.uint8, 5126: np.float32}[accessor["componentType"]]
    width = {"VEC2": 2, "VEC3": 3, "VEC4": 4}[accessor["type"]]
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    return np.frombuffer(binary, dtype, accessor["count"] * width, start).reshape(-1, width)


def test_glb_textured_keeps_first_vertices_and_corner_uvs(tmp_path: Path) -> None:
    write_mesh(tmp_path / "m.glb", VERTS, TRIS, vertex_colors=COLORS, uv=UV, triangles_uv=TRIS_UV,
               texture=TEXTURE)
    mesh = trimesh.load(tmp_path / "m.glb", force="mesh", process=False)
    assert len(mesh.vertices) == 8
    np.testing.assert_allclose(mesh.vertices[:6], VERTS, atol=1e-6)
    np.testing.assert_allclose(mesh.vertices[mesh.faces], VERTS[TRIS], atol=1e-6)
    np.testing.assert_allclose(mesh.visual.uv[mesh.faces], UV[TRIS_UV], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")), TEXTURE)
    colors = _glb_accessor(tmp_path / "m.glb", "COLOR_0")
    np.testing.assert_array_equal(colors[:6, :3], COLORS)
    np.testing.assert_array_equal(colors[6:, :3], COLORS[[1, 2]])


def test_glb_with_colors_only(tmp_path: Path) -> None:
    write_mesh(tmp_path / "m.glb", VERTS, TRIS, vertex_colors=COLORS)
    mesh = trimesh.load(tmp_path / "m.glb", force="mesh", process=False)
    np.testing.assert_allclose(mesh.vertices, VERTS, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, TRIS)
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], COLORS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": "m.stl"}, "unsupported mesh format"),
        ({"triangles": TRIS + 3}, r"triangles must index 0\.\.5"),
        ({"vertex_colors": COLORS.astype(float)}, "uint8"),
        ({"vertices": VERTS[:, :2]}, r"shape \(N, 3\)"),
        ({"texture": TEXTURE}, "need uv"),
        ({"uv": UV}, "one row per vertex"),
        ({"vertices": np.where(VERTS == 0.125, np.nan, VERTS)}, "NaN"),
    ],
)
def test_write_mesh_rejects_bad_input(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"path": "m.obj", "vertices": VERTS, "triangles": TRIS} | kwargs
    path = tmp_path / args.pop("path")
    with pytest.raises(ValueError, match=match):
        write_mesh(path, args.pop("vertices"), args.pop("triangles"), **args)
    assert os.listdir(tmp_path) == []


# A linear photo: every bilinear sample of it is exact.
H, W = 40, 50
YY, XX = np.mgrid[0:H, 0:W].astype(float)
PHOTO = np.stack([3 * XX + YY, 2 * YY + 10, np.full_like(XX, 77)], axis=-1).astype(np.uint8)


def _photo_color(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([3 * x + y, 2 * y + 10, np.full_like(x, 77)], axis=-1)


# A square: uv (u, v) ↦ photo (5 + 40 u, 30 − 20 v), split into two triangles along u = v.
SQ_UV = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
SQ_PHOTO = np.stack([5 + 40 * SQ_UV[:, 0], 30 - 20 * SQ_UV[:, 1]], axis=1)
SQ_TRIS = np.array([[0, 1, 2], [0, 2, 3]])


def _texel_photo_positions(size: int) -> tuple[np.ndarray, np.ndarray]:
    ty, tx = np.mgrid[0:size, 0:size].astype(float)
    u, v = (tx + 0.5) / size, 1 - (ty + 0.5) / size
    return 5 + 40 * u, 30 - 20 * v


def test_bake_texture_known_answer() -> None:
    size = 16
    texture, filled = bake_texture(PHOTO, SQ_PHOTO, np.ones(4, bool), SQ_UV, SQ_TRIS, SQ_TRIS, size=size)
    assert texture.shape == (size, size, 3) and texture.dtype == np.uint8 and filled.all()
    expected = _photo_color(*_texel_photo_positions(size))
    assert np.abs(texture - expected).max() <= 0.5 + 1e-6


def test_bake_texture_hidden_triangle_is_filled_not_sampled() -> None:
    size = 16
    visible = np.array([True, True, True, False])  # hides triangle (0, 2, 3), the half where v > u
    texture, filled = bake_texture(PHOTO, SQ_PHOTO, visible, SQ_UV, SQ_TRIS, SQ_TRIS, size=size)
    ty, tx = np.mgrid[0:size, 0:size]
    # v ≤ u  ⇔  1 − (ty + .5)/S ≤ (tx + .5)/S  ⇔  tx + ty ≥ S − 1 (the diagonal is on the visible edge)
    np.testing.assert_array_equal(filled, tx + ty >= size - 1)
    expected = _photo_color(*_texel_photo_positions(size))
    assert np.abs(texture[filled] - expected[filled]).max() <= 0.5 + 1e-6
    low, high = texture[filled].min(axis=0), texture[filled].max(axis=0)
    assert (texture[~filled] >= low).all() and (texture[~filled] <= high).all()

    flat = np.full((H, W, 3), (30, 60, 90), np.uint8)
    texture, _ = bake_texture(flat, SQ_PHOTO, visible, SQ_UV, SQ_TRIS, SQ_TRIS, size=size)
    assert (texture == (30, 60, 90)).all()


def test_bake_texture_only_bakes_the_unit_tile_and_the_photo() -> None:
    next_tile = SQ_UV + np.array([1.0, 0.0])
    texture, filled = bake_texture(PHOTO, SQ_PHOTO, np.ones(4, bool), next_tile, SQ_TRIS, SQ_TRIS, size=8)
    assert not filled.any() and (texture == 128).all()
    outside = SQ_PHOTO + np.array([W, 0.0])  # the whole square lies right of the photo
    _, filled = bake_texture(PHOTO, outside, np.ones(4, bool), SQ_UV, SQ_TRIS, SQ_TRIS, size=8)
    assert not filled.any()


def test_bake_texture_covers_exactly_the_texel_centres_inside_triangles() -> None:
    rng = np.random.default_rng(3)
    size, n = 32, 6
    uv = rng.uniform(0, 1, (3 * n, 2))
    tris = np.arange(3 * n).reshape(n, 3)
    photo_xy = rng.uniform(0, 39, (3 * n, 2))
    _, filled = bake_texture(PHOTO, photo_xy, np.ones(3 * n, bool), uv, tris, tris, size=size)
    # brute force: barycentrics of every texel centre in every triangle by solving a 3 × 3 system
    ty, tx = np.mgrid[0:size, 0:size]
    texel_uv = np.stack([(tx + 0.5) / size, 1 - (ty + 0.5) / size, np.ones((size, size))], -1).reshape(-1, 3)
    inside = np.zeros(size * size, bool)
    margin = np.full(size * size, np.inf)
    for t in tris:
        system = np.vstack([uv[t].T, np.ones(3)])
        bary = np.linalg.solve(system, texel_uv.T).T
        inside |= (bary >= 0).all(1)
        margin = np.minimum(margin, np.abs(bary).min(1))
    clear = margin > 1e-6  # texels not on an edge
    assert inside.sum() > 50
    np.testing.assert_array_equal(filled.ravel()[clear], inside[clear])


def test_bake_texture_triangle_mask_picks_among_overlapping_triangles() -> None:
    # the same UV triangle twice, seen at two places of the photo: the mask decides which one is baked
    uv = SQ_UV[[0, 1, 2, 0, 1, 2]]
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    photo_xy = np.concatenate([SQ_PHOTO[:3], SQ_PHOTO[:3] + np.array([2.0, 5.0])])
    args = (PHOTO, photo_xy, np.ones(6, bool), uv, tris, tris)
    first, filled = bake_texture(*args, size=16, triangle_mask=np.array([True, False]))
    second, _ = bake_texture(*args, size=16, triangle_mask=np.array([False, True]))
    np.testing.assert_array_equal(bake_texture(*args, size=16)[0], first)  # unmasked: the first one wins
    px, py = _texel_photo_positions(16)
    np.testing.assert_array_less(np.abs(first[filled] - _photo_color(px, py)[filled]), 0.5 + 1e-6)
    np.testing.assert_array_less(np.abs(second[filled] - _photo_color(px + 2, py + 5)[filled]), 0.5 + 1e-6)
    with pytest.raises(ValueError, match="triangle_mask"):
        bake_texture(*args, triangle_mask=np.array([1, 0]))


def test_sample_vertex_colors() -> None:
    points = np.array([[10.25, 20.5], [0.0, 0.0], [-3.0, 5.0], [49.0, 39.0]])
    visible = np.array([True, False, True, True])
    colors = sample_vertex_colors(PHOTO, points, visible)
    first = _photo_color(np.array(10.25), np.array(20.5))  # (51.25, 51, 77)
    last = _photo_color(np.array(49.0), np.array(39.0))  # (186, 88, 77)
    np.testing.assert_array_equal(colors[0], [51, 51, 77])
    np.testing.assert_array_equal(colors[3], last)
    mean = np.rint((first + last) / 2)  # invisible and outside-the-photo vertices get the sampled mean
    np.testing.assert_array_equal(colors[1], mean)
    np.testing.assert_array_equal(colors[2], mean)
    with_fallback = sample_vertex_colors(PHOTO, points, visible, fallback=(1, 2, 3))
    np.testing.assert_array_equal(with_fallback[[1, 2]], [[1, 2, 3], [1, 2, 3]])
    assert (sample_vertex_colors(PHOTO, points, np.zeros(4, bool)) == 128).all()
    with pytest.raises(ValueError, match="visible must be"):
        sample_vertex_colors(PHOTO, points, visible.astype(int))
