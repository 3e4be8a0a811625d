"""write_animated_glb / read_glb: the GLB layout, morph targets (sparse and dense), the animation channels."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh

from fit3dmm.io.gltf import read_glb, write_animated_glb

# A 4 × 6 cm square in the plane z = 3 cm, counter-clockwise seen from +z (normals +z).
VERTS = np.array([[-1, -2, 3], [3, -2, 3], [3, 4, 3], [-1, 4, 3]], float)
TRIS = np.array([[0, 1, 2], [0, 2, 3]])
TARGETS = np.zeros((2, 4, 3))
TARGETS[0, 1] = [0, -1.5, 0.5]  # "jawOpen" moves one vertex: sparse (1 × 14 bytes < 4 × 12)
TARGETS[1] = [[-0.5, 0, 0], [0.5, 0, 0], [0.25, 0.25, 0], [-0.25, 0.25, 0.125]]  # "smile" moves all: dense
NAMES = ["jawOpen", "smile"]
TIMES = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
WEIGHTS = np.array([[0.0, 0.0], [0.25, 1.0], [np.nan, 0.5], [1.0, 0.75], [0.5, 0.0]])  # frame 2 is a gap
S = np.sqrt(0.5)
DTYPES = {5126: "<f4", 5123: "<u2", 5125: "<u4"}
WIDTHS = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}


def _view(gltf: dict[str, Any], binary: bytes, index: int, component: int, count: int, width: int) -> np.ndarray:
    """(count, width) values of a tightly packed bufferView, checking its alignment and length."""
    view = gltf["bufferViews"][index]
    dtype = np.dtype(DTYPES[component])
    assert view["byteOffset"] % 4 == 0 and "byteStride" not in view
    assert view["byteLength"] == count * width * dtype.itemsize
    return np.frombuffer(binary, dtype, count * width, view["byteOffset"]).reshape(count, width)


def _accessor(gltf: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    """Decode an accessor (dense, sparse, or neither = zeros) as the spec says: (count, width)."""
    acc = gltf["accessors"][index]
    width = WIDTHS[acc["type"]]
    if "bufferView" in acc:
        values = _view(gltf, binary, acc["bufferView"], acc["componentType"], acc["count"], width).copy()
    else:
        values = np.zeros((acc["count"], width), DTYPES[acc["componentType"]])
    if "sparse" in acc:
        sparse = acc["sparse"]
        where = _view(gltf, binary, sparse["indices"]["bufferView"], sparse["indices"]["componentType"],
                      sparse["count"], 1).ravel()
        assert (np.diff(where.astype(np.int64)) > 0).all()  # strictly increasing, as glTF requires
        values[where] = _view(gltf, binary, sparse["values"]["bufferView"], acc["componentType"], sparse["count"],
                              width)
    return values


def _write(path: Path, **kwargs: Any) -> tuple[dict[str, Any], bytes]:
    write_animated_glb(path, VERTS, TRIS, TARGETS, NAMES, TIMES, WEIGHTS, **kwargs)
    return read_glb(path)


def _sampler(gltf: dict[str, Any], binary: bytes, path: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(times, values, input accessor index) of the channel animating ``path`` of node 0."""
    animation = gltf["animations"][0]
    (channel,) = [c for c in animation["channels"] if c["target"]["path"] == path]
    assert channel["target"]["node"] == 0
    sampler = animation["samplers"][channel["sampler"]]
    assert sampler["interpolation"] == "LINEAR"
    return (_accessor(gltf, binary, sampler["input"]).ravel(), _accessor(gltf, binary, sampler["output"]),
            sampler["input"])


def test_glb_layout_header_and_padded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "face.glb"
    gltf, binary = _write(path)
    data = path.read_bytes()
    assert struct.unpack_from("<4sII", data) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    text = data[20:20 + json_length]
    assert text.rstrip(b" ")[-1:] == b"}"  # padded with spaces only
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0 and bin_length == len(binary)
    assert 20 + json_length + 8 + bin_length == len(data)
    assert gltf["buffers"] == [{"byteLength": len(binary)}]
    assert gltf["asset"]["version"] == "2.0"
    assert gltf["scenes"][gltf["scene"]]["nodes"] == [0]


def test_rest_geometry_in_metres_with_bounds_normals_and_indices(tmp_path: Path) -> None:
    gltf, binary = _write(tmp_path / "face.glb", name="actor")
    assert gltf["nodes"] == [{"name": "actor", "mesh": 0}]
    (primitive,) = gltf["meshes"][0]["primitives"]
    position = gltf["accessors"][primitive["attributes"]["POSITION"]]
    assert (position["count"], position["type"], position["componentType"]) == (4, "VEC3", 5126)
    expected = (VERTS * 0.01).astype(np.float32)
    np.testing.assert_array_equal(_accessor(gltf, binary, primitive["attributes"]["POSITION"]), expected)
    assert position["min"] == [float(np.float32(v)) for v in (-0.01, -0.02, 0.03)]
    assert position["max"] == [float(np.float32(v)) for v in (0.03, 0.04, 0.03)]
    np.testing.assert_allclose(_accessor(gltf, binary, primitive["attributes"]["NORMAL"]), [[0, 0, 1]] * 4)
    indices = gltf["accessors"][primitive["indices"]]
    assert (indices["count"], indices["type"], indices["componentType"]) == (6, "SCALAR", 5123)  # uint16: V < 65535
    np.testing.assert_array_equal(_accessor(gltf, binary, primitive["indices"]).ravel(), TRIS.ravel())


def test_normals_are_area_weighted_and_unused_vertices_face_plus_z(tmp_path: Path) -> None:
    # triangle 0 lies in z = 0 (unnormalised normal (0, 0, 4)), triangle 1 leans towards -x ((2, 0, 2));
    # vertex 4 is used by no triangle; a single frame is a valid (still) animation
    verts = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [-1, 0, 1], [5, 5, 5]], float)
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    path = tmp_path / "tent.glb"
    write_animated_glb(path, verts, tris, np.ones((1, 5, 3)), ["a"], np.array([0.5]), np.array([[0.25]]))
    gltf, binary = read_glb(path)
    normals = _accessor(gltf, binary, gltf["meshes"][0]["primitives"][0]["attributes"]["NORMAL"])
    shared = np.array([2, 0, 6]) / np.sqrt(40)
    np.testing.assert_allclose(normals, [shared, [0, 0, 1], shared, [S, 0, S], [0, 0, 1]], atol=1e-7)
    times, values, _ = _sampler(gltf, binary, "weights")
    assert times.tolist() == [0.5] and values.tolist() == [[0.25]]


def test_one_morph_target_per_blendshape_sparse_or_dense(tmp_path: Path) -> None:
    gltf, binary = _write(tmp_path / "face.glb")
    mesh = gltf["meshes"][0]
    assert mesh["extras"]["targetNames"] == NAMES
    assert mesh["weights"] == [0.0, 0.0]
    targets = mesh["primitives"][0]["targets"]
    assert [set(t) for t in targets] == [{"POSITION"}, {"POSITION"}]
    jaw, smile = (gltf["accessors"][t["POSITION"]] for t in targets)
    assert "bufferView" not in jaw and jaw["sparse"]["count"] == 1  # one moved vertex
    assert "sparse" not in smile and "bufferView" in smile
    for target, expected in zip(targets, TARGETS, strict=True):
        accessor = gltf["accessors"][target["POSITION"]]
        assert (accessor["count"], accessor["type"]) == (4, "VEC3")
        decoded = _accessor(gltf, binary, target["POSITION"])
        np.testing.assert_array_equal(decoded, (expected * 0.01).astype(np.float32))
        assert accessor["min"] == decoded.min(axis=0).tolist() and accessor["max"] == decoded.max(axis=0).tolist()
    # jawOpen's bounds include the implicit zeros of the vertices it does not move
    assert jaw["min"] == [0.0, float(np.float32(-0.015)), 0.0]
    assert jaw["max"] == [0.0, 0.0, float(np.float32(0.005))]


def test_weights_animation_skips_gap_frames(tmp_path: Path) -> None:
    gltf, binary = _write(tmp_path / "face.glb")
    assert [c["target"]["path"] for c in gltf["animations"][0]["channels"]] == ["weights"]
    times, values, input_index = _sampler(gltf, binary, "weights")
    np.testing.assert_array_equal(times, np.float32([0.0, 0.1, 0.3, 0.4]))  # frame 2 (a NaN) has no keyframe
    time_accessor = gltf["accessors"][input_index]
    assert time_accessor["min"] == [0.0] and time_accessor["max"] == [float(np.float32(0.4))]
    # output: frames × targets scalars, frame-major
    assert values.shape == (8, 1)
    np.testing.assert_array_equal(values.ravel(), np.float32([0, 0, 0.25, 1, 1, 0.75, 0.5, 0]))


def test_pose_channels_normalise_and_keep_quaternions_on_the_short_arc(tmp_path: Path) -> None:
    rotations = np.array([
        [0, 0, 0, 1],
        [0, 2 * S, 0, 2 * S],  # 90° about y, not normalised
        [0, -S, 0, -S],  # the same rotation with the opposite sign: flipped back
        [np.nan, 0, 0, 1],  # gap
        [S, 0, 0, -S],  # -90° about x; its dot with the previous kept row is -0.5: flipped
    ])
    translations = np.array([[1, 2, 3], [np.nan] * 3, [0, 0, 0], [4, 5, 6], [-1, 0, 2]], float)  # cm
    gltf, binary = _write(tmp_path / "face.glb", rotations=rotations, translations=translations)
    assert [c["target"]["path"] for c in gltf["animations"][0]["channels"]] == ["weights", "rotation", "translation"]
    times, values, rotation_input = _sampler(gltf, binary, "rotation")
    np.testing.assert_array_equal(times, np.float32([0.0, 0.1, 0.2, 0.4]))
    np.testing.assert_allclose(values, [[0, 0, 0, 1], [0, S, 0, S], [0, S, 0, S], [-S, 0, 0, S]], atol=1e-7)
    times, values, translation_input = _sampler(gltf, binary, "translation")
    np.testing.assert_array_equal(times, np.float32([0.0, 0.2, 0.3, 0.4]))
    np.testing.assert_allclose(values, [[0.01, 0.02, 0.03], [0, 0, 0], [0.04, 0.05, 0.06], [-0.01, 0, 0.02]],
                               rtol=1e-6)
    _, _, weights_input = _sampler(gltf, binary, "weights")
    assert len({weights_input, rotation_input, translation_input}) == 3  # three different gaps, three time arrays


def test_channels_with_the_same_gaps_share_their_times(tmp_path: Path) -> None:
    translations = np.array([[1, 2, 3], [0, 0, 0], [np.nan] * 3, [4, 5, 6], [-1, 0, 2]], float)
    gltf, binary = _write(tmp_path / "face.glb", translations=translations)
    _, _, weights_input = _sampler(gltf, binary, "weights")
    _, _, translation_input = _sampler(gltf, binary, "translation")
    assert weights_input == translation_input


def test_tolerance_drops_small_displacements_and_empty_targets_hold_no_data(tmp_path: Path) -> None:
    targets = np.zeros((2, 4, 3))
    targets[0, 0] = [1e-4, 0, -1e-4]
    targets[0, 2] = [0, 0, 1.0]
    targets[1, 3] = [0, 1e-3, 0]  # not above the tolerance: the whole target becomes zero
    path = tmp_path / "face.glb"
    write_animated_glb(path, VERTS, TRIS, targets, NAMES, TIMES, WEIGHTS, tolerance=1e-3)
    gltf, binary = read_glb(path)
    first, second = (t["POSITION"] for t in gltf["meshes"][0]["primitives"][0]["targets"])
    kept = np.float32([[0, 0, 0], [0, 0, 0], [0, 0, 0.01], [0, 0, 0]])  # vertex 0's ±1e-4 cm dropped
    np.testing.assert_array_equal(_accessor(gltf, binary, first), kept)
    assert gltf["accessors"][first]["sparse"]["count"] == 1
    empty = gltf["accessors"][second]
    assert "bufferView" not in empty and "sparse" not in empty
    assert empty["min"] == empty["max"] == [0.0, 0.0, 0.0]
    # without tolerance every non-zero displacement is kept exactly
    write_animated_glb(path, VERTS, TRIS, targets, NAMES, TIMES, WEIGHTS)
    gltf, binary = read_glb(path)
    first, second = (t["POSITION"] for t in gltf["meshes"][0]["primitives"][0]["targets"])
    np.testing.assert_array_equal(_accessor(gltf, binary, first), (targets[0] * 0.01).astype(np.float32))
    np.testing.assert_array_equal(_accessor(gltf, binary, second), (targets[1] * 0.01).astype(np.float32))


def test_trimesh_reads_the_rest_geometry(tmp_path: Path) -> None:
    path = tmp_path / "face.glb"
    _write(path, rotations=np.tile([0, 0, 0, 1.0], (5, 1)))
    scene = trimesh.load(path)
    (mesh,) = scene.geometry.values()
    np.testing.assert_allclose(mesh.vertices, VERTS * 0.01, rtol=1e-6)
    np.testing.assert_array_equal(mesh.faces, TRIS)


def test_pygltflib_reads_targets_and_animation(tmp_path: Path) -> None:
    pygltflib = pytest.importorskip("pygltflib")
    path = tmp_path / "face.glb"
    _write(path)
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    mesh = gltf.meshes[0]
    assert mesh.extras["targetNames"] == NAMES and len(mesh.primitives[0].targets) == 2
    (sampler,) = gltf.animations[0].samplers
    assert gltf.animations[0].channels[0].target.path == "weights"
    times, output = gltf.accessors[sampler.input], gltf.accessors[sampler.output]
    assert (times.count, output.count, output.type) == (4, 8, "SCALAR")
    view = gltf.bufferViews[output.bufferView]
    values = np.frombuffer(blob, "<f4", output.count, view.byteOffset + (output.byteOffset or 0))
    np.testing.assert_array_equal(values, np.float32([0, 0, 0.25, 1, 1, 0.75, 0.5, 0]))


@pytest.mark.parametrize(("change", "message"), [
    ({"path": "face.gltf"}, "writes .glb"),
    ({"times": TIMES[[0, 2, 1, 3, 4]]}, "strictly increasing"),
    ({"times": TIMES - 0.1}, "start at 0"),
    ({"weights": WEIGHTS[:, :1]}, r"weights must have shape \(5, 2\)"),
    ({"weights": np.full((5, 2), np.nan)}, "weights has no valid"),
    ({"weights": np.where(np.isnan(WEIGHTS), np.inf, WEIGHTS)}, "weights holds infinite"),
    ({"names": ["a", "a"]}, "distinct"),
    ({"names": ["a"]}, "2 non-empty strings"),
    ({"targets": TARGETS[:, :3]}, r"targets must have shape \(N, 4, 3\)"),
    ({"triangles": TRIS + 1}, "must index 0..3"),
    ({"rotations": np.zeros((5, 4))}, "non-zero quaternions"),
    ({"translations": np.zeros((4, 3))}, r"translations must have shape \(5, 3\)"),
    ({"tolerance": -1.0}, "tolerance"),
])
def test_invalid_inputs_are_rejected(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    args = {"path": "face.glb", "triangles": TRIS, "targets": TARGETS, "names": NAMES, "times": TIMES,
            "weights": WEIGHTS, **change}
    extra = {k: change[k] for k in ("rotations", "translations", "tolerance") if k in change}
    with pytest.raises(ValueError, match=message):
        write_animated_glb(tmp_path / args["path"], VERTS, args["triangles"], args["targets"], args["names"],
                           args["times"], args["weights"], **extra)
    assert not list(tmp_path.iterdir())


def test_read_glb_rejects_broken_files(tmp_path: Path) -> None:
    path = tmp_path / "face.glb"
    _write(path)
    data = path.read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    for broken, message in ((b"gltf" + data[4:], "not a GLB"), (data[:-4], "header says"),
                            (data[:16] + struct.pack("<I", 0x004E4942) + data[20:], "not JSON"),
                            (data[:12] + struct.pack("<I", json_length + 8) + data[16:], "runs past the end")):
        path.write_bytes(broken)
        with pytest.raises(ValueError, match=message):
            read_glb(path)
