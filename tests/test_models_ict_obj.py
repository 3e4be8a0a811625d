"""Conversion of an original ICT-FaceKit checkout (OBJ files) to the npz layout, on a tiny synthetic one."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fit3dmm.models.ict_obj import convert_ict_checkout, read_obj
from fit3dmm.models.store import install_model

NEUTRAL = np.array([[0.1, 0.2, 0.3], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 1.25]])
UV = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [2.5, 0.5], [3.5, 0.5]])
LISTED = ["browDown_L", "jawOpen"]
EXTRA = ["cheekRaiser_L", "PupilDilate_L"]  # not in the json: appended sorted by code point
LANDMARKS = [i % 5 for i in range(68)]


def obj_text(vertices: np.ndarray, header: bool = True) -> str:
    lines = ["# ICT-FaceKit licence header", "mtllib x.mtl"] if header else []
    lines += [f"v {x:.6g} {y:.6g} {z:.6g}" for x, y, z in vertices]
    lines += [f"vt {u:.6g} {v:.6g}" for u, v in UV]
    lines += ["vn 0 0 1", "usemtl M_Face", "f 1/1/1 2/2/1 3/3/1 4/4/1", "usemtl M_Teeth", "f 3/3 4/4 5/5",
              "usemtl M_Face", "f 1/6/1 2/5/1 5/5/1"]
    return "\n".join(lines) + "\n"


def shifted(k: int) -> np.ndarray:
    out = NEUTRAL.copy()
    out[k % 5] += [0.5, -0.25, 0.125 * (k + 1)]
    return out


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "ICT-FaceKit"
    facex = root / "FaceXModel"
    facex.mkdir(parents=True)
    (facex / "generic_neutral_mesh.obj").write_text(obj_text(NEUTRAL))
    for k in range(2):
        (facex / f"identity{k:03d}.obj").write_text(obj_text(shifted(k)))
    for e, name in enumerate(LISTED + EXTRA):
        (facex / f"{name}.obj").write_text(obj_text(shifted(10 + e), header=e % 2 == 0))
    (facex / "vertex_indices.json").write_text(json.dumps(
        {"expressions": LISTED, "fitting_expressions": LISTED, "idx_to_landmark_verts": LANDMARKS}))
    (root / "LICENSE").write_text("MIT License\n\nCopyright (c) 2020 USC ICT\n")
    return root


def test_read_obj_quads_triangles_and_materials(checkout: Path) -> None:
    mesh = read_obj(checkout / "FaceXModel" / "generic_neutral_mesh.obj")
    np.testing.assert_array_equal(mesh.vertices, NEUTRAL.astype(np.float32))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2, 3], [2, 3, 4, -1], [0, 1, 4, -1]])
    np.testing.assert_array_equal(mesh.faces_uv, [[0, 1, 2, 3], [2, 3, 4, -1], [5, 4, 4, -1]])
    assert mesh.material_names == ["M_Face", "M_Teeth"]
    np.testing.assert_array_equal(mesh.face_material, [0, 1, 0])


def test_convert_checkout_matches_the_npz_layout(checkout: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    npz = convert_ict_checkout(checkout, dest)
    data = np.load(npz)
    assert data["neutral"].dtype == np.float32 and data["faces"].dtype == np.int32
    np.testing.assert_array_equal(data["neutral"], NEUTRAL.astype(np.float32))
    np.testing.assert_array_equal(data["faces"], [[0, 1, 2, 3], [2, 3, 4, -1], [0, 1, 4, -1]])
    np.testing.assert_array_equal(data["uv"], UV.astype(np.float32))
    assert list(data["expression_names"]) == [*LISTED, "PupilDilate_L", "cheekRaiser_L"]
    assert data["identity"].shape == (2, 5, 3) and data["expression"].shape == (4, 5, 3)
    # identity 1 moves vertex 1 by (0.5, −0.25, 0.25); every other delta of it is exactly 0
    expected = np.zeros((5, 3), np.float32)
    expected[1] = [0.5, -0.25, 0.25]
    np.testing.assert_array_equal(data["identity"][1], expected)
    # 'PupilDilate_L' was written 4th (k = 13: vertex 3, z + 0.125 · 14) and sorts before 'cheekRaiser_L'
    # (k = 12: vertex 2, z + 0.125 · 13)
    assert data["expression"][2, 3, 2] == pytest.approx(1.75)
    assert data["expression"][3, 2, 2] == pytest.approx(1.625)
    assert list(data["material_names"]) == ["M_Face", "M_Teeth"]
    np.testing.assert_array_equal(data["landmarks_multipie68"], LANDMARKS)
    original = checkout / "FaceXModel" / "vertex_indices.json"
    assert (dest / "vertex_indices.json").read_bytes() == original.read_bytes()


def test_same_keys_and_dtypes_as_the_shared_npz(checkout: Path, tmp_path: Path, shared_dir: Path) -> None:
    shared = shared_dir / "face-models" / "ict-facekit-light" / "ict_facekit_light.npz"
    if not shared.is_file():
        pytest.skip(f"{shared} not found")
    dest = tmp_path / "out"
    dest.mkdir()
    ours = convert_ict_checkout(checkout / "FaceXModel", dest)

    def headers(path: Path) -> dict[str, str]:
        out = {}
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as f:
                    fmt = np.lib.format
                    v1 = fmt.read_magic(f) == (1, 0)
                    _, _, dtype = (fmt.read_array_header_1_0 if v1 else fmt.read_array_header_2_0)(f)
                    out[name] = dtype.kind + (str(dtype.itemsize) if dtype.kind != "U" else "")
        return out

    assert headers(ours) == headers(shared)


def test_install_converts_checkout_and_copies_licence(checkout: Path, tmp_path: Path) -> None:
    before = sorted((p.relative_to(checkout), p.stat().st_mtime_ns) for p in checkout.rglob("*"))
    dest = install_model("ict", checkout, tmp_path / "models")
    assert dest == tmp_path / "models" / "ict"
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["LICENSE", "ict_facekit_light.npz", "vertex_indices.json"]
    assert (dest / "LICENSE").read_bytes() == (checkout / "LICENSE").read_bytes()
    assert sorted((p.relative_to(checkout), p.stat().st_mtime_ns) for p in checkout.rglob("*")) == before
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["ict"]  # no temporary folder left


def test_topology_mismatch_is_refused(checkout: Path, tmp_path: Path) -> None:
    facex = checkout / "FaceXModel"
    (facex / "jawOpen.obj").write_text(obj_text(NEUTRAL[:4]).replace("f 3/3 4/4 5/5\n", ""))
    with pytest.raises(ValueError, match="jawOpen"):
        install_model("ict", checkout, tmp_path / "models")
    assert not (tmp_path / "models" / "ict").exists()
    assert list((tmp_path / "models").iterdir()) == []
