"""3DDFA-V3 face_model.npy loader on a tiny synthetic pickled dict in the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fit3dmm.models.assets import Correspondence, FaceModelAssets
from fit3dmm.models.ddfa_v3 import load_ddfa_v3
from fit3dmm.models.face_model import file_checksum
from fit3dmm.models.store import install_model, load_model, save_assets
from fit3dmm.types.parts import PART_INDEX

# 3x3 grid in cm (x towards the subject's left, y up), centre (vertex 4, the "nose") 3 cm towards the viewer
GRID = np.array([[(c - 1) * 5.0, (1 - r) * 5.0, 3.0 * (r == c == 1)] for r in range(3) for c in range(3)])
TRI = np.array([[0, 3, 1], [1, 3, 4], [1, 4, 2], [2, 4, 5], [3, 6, 4], [4, 6, 7], [4, 7, 5], [5, 7, 8]])
# file order: right_eye, left_eye, right_eyebrow, left_eyebrow, nose, up_lip, down_lip, skin
ANNOTATION = [[3], [5], [0], [2], [4], [7], [8], list(range(9))]


def write_face_model(folder: Path, annotation: list[list[int]] = ANNOTATION, tri: np.ndarray = TRI) -> dict:
    rng = np.random.default_rng(1)
    data = {
        "u": (GRID / 10.0).reshape(-1, 1).astype(np.float32),  # dm, (3V, 1)
        "id": rng.normal(0, 0.01, (27, 80)).astype(np.float32),
        "exp": rng.normal(0, 0.01, (27, 64)).astype(np.float32),
        "u_alb": rng.uniform(0, 255, (27, 1)).astype(np.float32),
        "alb": rng.normal(0, 10, (27, 80)).astype(np.float32),
        "tri": tri.astype(np.int64),
        "ldm68": (np.arange(68) % 9).astype(np.int64),
        "ldm106": np.zeros(106, np.int64),
        "annotation": [np.array(a, dtype=np.int64) for a in annotation],
        "annotation_tri": [TRI[:1] for _ in range(8)],
        "parallel": [np.array([i % 9, (i + 1) % 9]) for i in range(33)],
        "point_buf": np.zeros((9, 8), np.int64),
        "uv_coords": rng.uniform(0, 1, (9, 3)).astype(np.float32),
    }
    data["id"][3 * 4 + 2, 7] = 0.05  # hand-checked: z of vertex 4, identity mode 7: 0.05 dm = 0.5 cm
    data["alb"][3 * 2 + 0, 1] = 51.0  # red of vertex 2, albedo mode 1: 51 / 255 = 0.2
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "face_model.npy", data, allow_pickle=True)
    return data


def test_units_layout_and_indices(tmp_path: Path) -> None:
    data = write_face_model(tmp_path)
    model = load_ddfa_v3(tmp_path)
    assert model.name == "3ddfa_v3"
    assert (model.num_vertices, model.num_identity, model.num_expression, model.num_albedo) == (9, 80, 64, 80)
    np.testing.assert_allclose(model.mean.numpy(), GRID, atol=1e-5)  # dm → cm, not recentred
    assert model.identity_basis[7, 4, 2].item() == pytest.approx(0.5, rel=1e-6)
    assert model.albedo_basis[1, 2, 0].item() == pytest.approx(0.2, rel=1e-6)
    for j, c, k in [(0, 0, 0), (8, 1, 63), (5, 2, 20)]:
        expected = data["exp"][3 * j + c, k] * 10.0
        assert model.expression_basis[k, j, c].item() == pytest.approx(expected, rel=1e-6)
        assert model.albedo_mean[j, c].item() == pytest.approx(data["u_alb"][3 * j + c, 0] / 255, rel=1e-6)
    np.testing.assert_array_equal(model.landmarks68.numpy(), np.arange(68) % 9)
    np.testing.assert_array_equal(model.triangles.numpy(), TRI)  # 0-based, already outward
    np.testing.assert_allclose(model.uv, data["uv_coords"][:, :2])
    assert model.checksum == file_checksum(str(tmp_path / "face_model.npy"))
    # the file path works as well as the folder
    assert load_ddfa_v3(tmp_path / "face_model.npy").num_vertices == 9


def test_normals_point_to_the_viewer_at_the_nose(tmp_path: Path) -> None:
    write_face_model(tmp_path, tri=TRI[:, ::-1])  # inward winding in the file: corrected on load
    model = load_ddfa_v3(tmp_path)
    v, t = model.mean.double(), model.triangles
    normals = torch.linalg.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    at_nose = (t == 4).any(dim=1)
    assert at_nose.sum() == 6 and torch.all(normals[at_nose, 2] > 0)


def test_part_labels_follow_parts_order_and_geometry(tmp_path: Path) -> None:
    write_face_model(tmp_path)
    labels = load_ddfa_v3(tmp_path).assets.part_labels
    expected = ["right_eyebrow", "skin", "left_eyebrow", "right_eye", "nose", "left_eye", "skin", "up_lip",
                "down_lip"]
    np.testing.assert_array_equal(labels, [PART_INDEX[n] for n in expected])
    # vertex 3 (x = −5 cm) is the subject's right eye whatever the file calls it
    swapped = [ANNOTATION[1], ANNOTATION[0], ANNOTATION[3], ANNOTATION[2], *ANNOTATION[4:]]
    write_face_model(tmp_path / "swapped", annotation=swapped)
    np.testing.assert_array_equal(load_ddfa_v3(tmp_path / "swapped").assets.part_labels, labels)


def test_unannotated_vertices_get_minus_one(tmp_path: Path) -> None:
    write_face_model(tmp_path, annotation=[*ANNOTATION[:7], [1]])
    labels = load_ddfa_v3(tmp_path).assets.part_labels
    assert labels[6] == -1 and labels[1] == PART_INDEX["skin"]


def test_bad_files_raise_value_error_naming_the_file(tmp_path: Path) -> None:
    data = write_face_model(tmp_path)
    del data["annotation"]
    np.save(tmp_path / "face_model.npy", data, allow_pickle=True)
    with pytest.raises(ValueError, match="annotation") as info:
        load_ddfa_v3(tmp_path)
    assert "face_model.npy" in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_ddfa_v3(tmp_path / "nowhere")


def test_install_and_load_keeps_file_parts_and_adds_cached_landmarks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FIT3DMM_MODELS", raising=False)
    write_face_model(tmp_path / "src")
    (tmp_path / "src" / "net_recon.pth").write_bytes(b"weights")  # not part of the model: not copied
    dest = install_model("3ddfa_v3", tmp_path / "src")
    assert dest == tmp_path / "cache" / "models" / "3ddfa_v3"
    assert [p.name for p in dest.iterdir()] == ["face_model.npy"]
    model = load_model("3ddfa_v3")
    file_labels = model.assets.part_labels.copy()
    cached = Correspondence(np.array([[4], [0]]), np.ones((2, 1), np.float32), np.ones(2, np.float32),
                            np.ones(2, np.float32), np.array([[0, 1, 2], [0, 1, 2]]))
    save_assets(model, FaceModelAssets(np.full(9, 7), cached, source={"landmarks": "test"}))
    again = load_model("3ddfa_v3")
    np.testing.assert_array_equal(again.assets.part_labels, file_labels)
    np.testing.assert_array_equal(again.assets.landmarks.vertices, [[4], [0]])
    assert set(again.assets.source) == {"part_labels", "landmarks", "model_checksum"}
