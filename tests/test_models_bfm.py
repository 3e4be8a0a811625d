"""BFM 2009 loader on tiny synthetic files written in the real formats (.mat, Exp_Pca.bin, std_exp.txt)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from fit3dmm.models.bfm import BFM_RAW_FILES, bfm2009_checksum, load_bfm2009, orient_outward, read_exp_pca
from fit3dmm.models.store import find_model, install_model

N_BFM, N_EXP, N_ID_PC, N_EXP_PC = 12, 10, 199, 79
TRIM = np.array([11, 0, 1, 2, 3, 4, 5, 6, 7, 9])  # expression-model vertex -> BFM vertex (0-based)
FRONT = np.array([2, 3, 4, 5, 6, 7, 8, 9, 0])  # front vertex -> expression-model vertex (0-based)
# front vertices in cm: a 3x3 grid, x right (subject's left), y up, centre pushed 3 cm towards the viewer
GRID = np.array([[(c - 1) * 5.0, (1 - r) * 5.0, 3.0 * (r == c == 1)] for r in range(3) for c in range(3)])
NOSE = 4
OFFSET_CM = np.array([1.0, -2.0, 7.0])  # the files' mean is not centred; the loader recentres it


def grid_triangles() -> np.ndarray:
    """Counter-clockwise seen from +z: (a, c, b) and (b, c, d) for each cell a b / c d."""
    tris = []
    for r in range(2):
        for c in range(2):
            a, b, cc, d = 3 * r + c, 3 * r + c + 1, 3 * (r + 1) + c, 3 * (r + 1) + c + 1
            tris += [[a, cc, b], [b, cc, d]]
    return np.array(tris)


@pytest.fixture
def bfm_raw(tmp_path: Path) -> dict:
    folder = tmp_path / "BFM"
    folder.mkdir()
    rng = np.random.default_rng(0)
    shape_idx = TRIM[FRONT]
    shape_mu = rng.normal(0, 3e4, (N_BFM, 3))  # µm
    shape_mu[shape_idx] = (GRID + OFFSET_CM) * 1e4
    shape_pc = rng.normal(0, 1, (3 * N_BFM, N_ID_PC)).astype(np.float32)
    shape_ev = rng.uniform(100, 900, (N_ID_PC, 1))
    shape_pc[3 * shape_idx[0] + 1, 2] = 2.0  # hand-checked entry: y of front vertex 0, identity mode 2
    shape_ev[2] = 500.0
    tex_mu = rng.uniform(0, 255, (3 * N_BFM, 1)).astype(np.float32)
    tex_pc = rng.normal(0, 1, (3 * N_BFM, N_ID_PC)).astype(np.float32)
    tex_ev = rng.uniform(1, 50, (N_ID_PC, 1))
    exp_mu = rng.normal(0, 1, 3 * N_EXP).astype(np.float32)
    exp_pc = rng.normal(0, 1, (N_EXP_PC, 3 * N_EXP)).astype(np.float32)
    exp_std = rng.uniform(1e3, 5e3, N_EXP_PC)
    exp_pc[5, 3 * FRONT[7] + 2] = -3.0  # hand-checked entry: z of front vertex 7, expression mode 5
    exp_std[5] = 2000.0
    tri = grid_triangles()
    keypoints = np.arange(68) % 9
    scipy.io.savemat(folder / "01_MorphableModel.mat", {
        "shapeMU": shape_mu.reshape(-1, 1).astype(np.float32), "shapePC": shape_pc, "shapeEV": shape_ev,
        "texMU": tex_mu, "texPC": tex_pc, "texEV": tex_ev, "tl": np.array([[1, 2, 3]]),
    })
    with open(folder / "Exp_Pca.bin", "wb") as f:
        f.write(struct.pack("<i", N_EXP_PC))
        f.write(exp_mu.astype("<f4").tobytes())
        f.write(exp_pc.astype("<f4").tobytes())
    np.savetxt(folder / "std_exp.txt", exp_std)
    scipy.io.savemat(folder / "BFM_front_idx.mat", {"idx": (FRONT + 1).reshape(-1, 1)})
    scipy.io.savemat(folder / "BFM_exp_idx.mat", {"trimIndex": (TRIM + 1).reshape(-1, 1)})
    scipy.io.savemat(folder / "facemodel_info.mat", {
        "tri": tri + 1, "keypoints": (keypoints + 1).reshape(1, -1), "point_buf": np.ones((9, 8)),
        "frontmask2_idx": np.arange(1, 10).reshape(-1, 1), "skinmask": np.ones((1, 9)), "tri_mask2": tri + 1,
    })
    return {"dir": folder, "shape_mu": shape_mu.ravel(), "shape_pc": shape_pc, "shape_ev": shape_ev.ravel(),
            "tex_mu": tex_mu.ravel(), "tex_pc": tex_pc, "tex_ev": tex_ev.ravel(), "exp_pc": exp_pc,
            "exp_std": exp_std, "tri": tri, "keypoints": keypoints}


def test_read_exp_pca_layout(bfm_raw: dict) -> None:
    mu, pc = read_exp_pca(bfm_raw["dir"] / "Exp_Pca.bin")
    assert mu.shape == (3 * N_EXP,) and pc.shape == (N_EXP_PC, 3 * N_EXP)
    np.testing.assert_array_equal(pc, bfm_raw["exp_pc"])


def test_read_exp_pca_rejects_truncated(tmp_path: Path) -> None:
    (tmp_path / "Exp_Pca.bin").write_bytes(struct.pack("<i", 79) + b"\0" * 100)
    with pytest.raises(ValueError, match=r"Exp_Pca\.bin"):
        read_exp_pca(tmp_path / "Exp_Pca.bin")


def test_raw_conversion_matches_hand_computed_values(bfm_raw: dict) -> None:
    model = load_bfm2009(bfm_raw["dir"])
    assert model.name == "bfm2009"
    assert (model.num_vertices, model.num_identity, model.num_expression, model.num_albedo) == (9, 80, 64, 80)
    # mean: µm / 1e4 = cm, recentred: the grid itself (its centroid is (0, 0, 1/3))
    np.testing.assert_allclose(model.mean.numpy(), GRID - GRID.mean(0), atol=1e-5)
    # the two hand-set entries: 2.0 · 500 µm = 0.1 cm and −3.0 · 2000 µm = −0.6 cm
    assert model.identity_basis[2, 0, 1].item() == pytest.approx(0.1, rel=1e-6)
    assert model.expression_basis[5, 7, 2].item() == pytest.approx(-0.6, rel=1e-6)
    shape_idx = TRIM[FRONT]
    for j, c, k in [(0, 0, 0), (3, 2, 79), (8, 1, 40)]:
        row = 3 * shape_idx[j] + c
        assert model.identity_basis[k, j, c].item() == pytest.approx(
            bfm_raw["shape_pc"][row, k] * bfm_raw["shape_ev"][k] / 1e4, rel=1e-5)
        assert model.albedo_basis[k, j, c].item() == pytest.approx(
            bfm_raw["tex_pc"][row, k] * bfm_raw["tex_ev"][k] / 255, rel=1e-5)
        assert model.albedo_mean[j, c].item() == pytest.approx(bfm_raw["tex_mu"][row] / 255, rel=1e-6)
    for j, c, e in [(0, 0, 0), (6, 1, 63), (2, 2, 30)]:
        assert model.expression_basis[e, j, c].item() == pytest.approx(
            bfm_raw["exp_pc"][e, 3 * FRONT[j] + c] * bfm_raw["exp_std"][e] / 1e4, rel=1e-5)
    np.testing.assert_array_equal(model.landmarks68.numpy(), bfm_raw["keypoints"])
    np.testing.assert_array_equal(model.triangles.numpy(), bfm_raw["tri"])
    assert torch.all(model.identity_std == 1) and torch.all(model.expression_std == 1)
    assert model.checksum == bfm2009_checksum(bfm_raw["dir"])


def test_forward_uses_deep3d_coefficients(bfm_raw: dict) -> None:
    model = load_bfm2009(bfm_raw["dir"], num_identity=3, num_expression=6)
    beta = torch.tensor([[0.0, 0.0, 1.5]])
    psi = torch.zeros(1, 6)
    psi[0, 5] = 2.0
    verts = model(identity=beta, expression=psi).vertices[0]
    # vertex 0, y: mean + 1.5 · 0.1 cm; vertex 7, z: mean + 2 · (−0.6) cm plus identity mode 2 there
    centred = GRID - GRID.mean(0)
    exp_0y, id_7z = model.expression_basis[5, 0, 1].item(), model.identity_basis[2, 7, 2].item()
    assert verts[0, 1].item() == pytest.approx(centred[0, 1] + 0.15 + 2.0 * exp_0y, abs=1e-5)
    assert verts[7, 2].item() == pytest.approx(centred[7, 2] - 1.2 + 1.5 * id_7z, abs=1e-5)


def test_converted_front_mat_gives_the_same_model(bfm_raw: dict, tmp_path: Path) -> None:
    """BFM_model_front.mat written by Deep3DFaceRecon's recipe (dm, (3V, K), 1-based) loads identically."""
    d = bfm_raw
    id_base = (d["shape_pc"] * d["shape_ev"].reshape(1, -1) / 1e5)[:, :80]
    ex_base = (d["exp_pc"].T * d["exp_std"].reshape(1, -1) / 1e5)[:, :64]
    tex_base = (d["tex_pc"] * d["tex_ev"].reshape(1, -1))[:, :80]
    index_shape = TRIM[FRONT]
    folder = tmp_path / "converted"
    folder.mkdir()
    scipy.io.savemat(folder / "BFM_model_front.mat", {
        "meanshape": (d["shape_mu"].reshape(-1, 3) / 1e5)[index_shape].reshape(1, -1),
        "idBase": id_base.reshape(-1, 3, 80)[index_shape].reshape(-1, 80),
        "exBase": ex_base.reshape(-1, 3, 64)[FRONT].reshape(-1, 64),
        "meantex": d["tex_mu"].reshape(-1, 3)[index_shape].reshape(1, -1),
        "texBase": tex_base.reshape(-1, 3, 80)[index_shape].reshape(-1, 80),
        "tri": d["tri"] + 1, "keypoints": (d["keypoints"] + 1).reshape(-1, 1),
    })
    raw, converted = load_bfm2009(d["dir"]), load_bfm2009(folder)
    for name in ("mean", "identity_basis", "expression_basis", "albedo_mean", "albedo_basis"):
        torch.testing.assert_close(getattr(converted, name), getattr(raw, name), rtol=1e-5, atol=1e-6)
    assert torch.equal(converted.triangles, raw.triangles)


def test_triangles_are_made_outward(bfm_raw: dict) -> None:
    info = bfm_raw["dir"] / "facemodel_info.mat"
    scipy.io.savemat(info, {"tri": bfm_raw["tri"][:, ::-1] + 1, "keypoints": bfm_raw["keypoints"] + 1})
    model = load_bfm2009(bfm_raw["dir"])
    v, t = model.mean.double(), model.triangles
    normals = torch.linalg.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    at_nose = (t == NOSE).any(dim=1)
    assert at_nose.sum() == 6 and torch.all(normals[at_nose, 2] > 0)


def test_orient_outward_keeps_ccw_and_flips_cw() -> None:
    tri = grid_triangles()
    np.testing.assert_array_equal(orient_outward(GRID, tri), tri)
    np.testing.assert_array_equal(orient_outward(GRID, tri[:, ::-1]), tri)  # flipped back


def test_missing_file_is_named(bfm_raw: dict) -> None:
    (bfm_raw["dir"] / "std_exp.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"std_exp\.txt"):
        load_bfm2009(bfm_raw["dir"])


def test_wrong_units_are_rejected(bfm_raw: dict) -> None:
    """A mean shape in mm instead of µm would be 1000× too small: refused, not silently used."""
    mm = scipy.io.loadmat(bfm_raw["dir"] / "01_MorphableModel.mat")
    mm["shapeMU"] = mm["shapeMU"] / 1000.0
    mm = {k: v for k, v in mm.items() if not k.startswith("__")}
    scipy.io.savemat(bfm_raw["dir"] / "01_MorphableModel.mat", mm)
    with pytest.raises(ValueError, match="wrong units"):
        load_bfm2009(bfm_raw["dir"])


def test_install_copies_the_raw_files(bfm_raw: dict, tmp_path: Path) -> None:
    dest = install_model("bfm2009", bfm_raw["dir"], tmp_path / "models")
    assert sorted(p.name for p in dest.iterdir()) == sorted(BFM_RAW_FILES)
    assert find_model(str(dest)) == ("bfm2009", dest)
    assert load_bfm2009(dest).checksum == load_bfm2009(bfm_raw["dir"]).checksum
