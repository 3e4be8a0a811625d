"""Model search path, install, listing and the asset cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fit3dmm.models.assets import Correspondence, FaceModelAssets, SurfaceSamples
from fit3dmm.models.face_model import FaceModel
from fit3dmm.models.store import (
    ModelNotFoundError,
    assets_dir,
    cache_root,
    find_model,
    install_model,
    list_models,
    load_assets,
    load_model,
    models_dir,
    packaged_models_dir,
    save_assets,
    search_path,
)

ICT_SHA256 = "eda565f92179c08ba24851fe6abc040a164061c61a4cd2da0d7a3c624f42258a"  # SOURCE.md


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache of our own and no FIT3DMM_MODELS."""
    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FIT3DMM_MODELS", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def ict_folder(shared_dir: Path) -> Path:
    folder = shared_dir / "face-models" / "ict-facekit-light"
    if not (folder / "ict_facekit_light.npz").is_file():
        pytest.skip(f"ICT-FaceKit Light not found in {folder}")
    return folder


def fake_model(folder: Path, file: str = "face_model.npy", content: bytes = b"x") -> Path:
    """A folder recognised by content (find_model does not load it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_bytes(content)
    return folder


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FIT3DMM_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "fit3dmm"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "fit3dmm"
    monkeypatch.setenv("FIT3DMM_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert models_dir() == tmp_path / "mine" / "models"


def test_search_path_order(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FIT3DMM_MODELS", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert search_path() == [tmp_path / "a", tmp_path / "b", clean_env / "models", packaged_models_dir()]
    first = fake_model(tmp_path / "a" / "v3")
    fake_model(tmp_path / "b" / "v3")
    fake_model(clean_env / "models" / "3ddfa_v3")
    assert find_model("3ddfa_v3") == ("3ddfa_v3", first)
    assert find_model("3DDFA-V3").path == first  # case and '-' are forgiven


def test_find_by_name_in_shared_models(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, ict_folder: Path
) -> None:
    monkeypatch.setenv("FIT3DMM_MODELS", str(ict_folder.parent))
    kind, path = find_model("ict")
    assert (kind, path) == ("ict", ict_folder)
    assert find_model(None) == (kind, path)


def test_find_by_explicit_path(clean_env: Path, ict_folder: Path) -> None:
    assert find_model(str(ict_folder)) == ("ict", ict_folder)
    assert find_model(ict_folder / "ict_facekit_light.npz") == ("ict", ict_folder)
    assert find_model(str(ict_folder.parent)) == ("ict", ict_folder)  # the only model below it
    with pytest.raises(ValueError, match="not a face model file"):
        find_model(ict_folder / "LICENSE")


def test_bfm_folder_is_recognised(clean_env: Path, tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "BFM", "01_MorphableModel.mat")
    with pytest.raises(ModelNotFoundError):  # the .mat alone is not enough
        find_model(str(folder))
    (folder / "Exp_Pca.bin").write_bytes(b"x")
    assert find_model(str(folder)) == ("bfm2009", folder)
    converted = fake_model(tmp_path / "front", "BFM_model_front.mat")
    assert find_model(str(converted)) == ("bfm2009", converted)


def test_missing_model_message(clean_env: Path) -> None:
    assert find_model("ict").path == packaged_models_dir() / "ict-facekit-light"  # always there: shipped
    with pytest.raises(ModelNotFoundError) as info:
        find_model("bfm2009")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "\n" not in message
    assert str(clean_env / "models") in message and str(packaged_models_dir()) in message
    assert "fit3dmm models install bfm2009 /path/to/BFM" in message


def test_unknown_name_and_ambiguous_folder(clean_env: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="ict, bfm2009, 3ddfa_v3"):
        find_model("flame")
    fake_model(tmp_path / "two" / "a")
    fake_model(tmp_path / "two" / "b", "ict_facekit_light.npz")
    with pytest.raises(ValueError, match="several models"):
        find_model(str(tmp_path / "two"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no face model"):
        find_model(str(tmp_path / "empty"))


def tiny_correspondence(vertices=((4, 0), (1, 2), (3, 3))) -> Correspondence:
    n = len(vertices)
    weights = np.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]], np.float32)[:n]
    return Correspondence(np.array(vertices), weights, np.full(n, 2.0, np.float32), np.full(n, 4.0, np.float32),
                          np.array([[0, 1, 4]] * n))


def test_assets_round_trip(clean_env: Path, tiny_model: FaceModel) -> None:
    assert load_assets(tiny_model) is None
    labels = np.array([7, 7, 7, 7, 6])
    eye = SurfaceSamples(np.array([[0, 1, 4]]), np.array([[0.2, 0.3, 0.5]], np.float32))
    assets = FaceModelAssets(labels, tiny_correspondence(), {"left_eye": eye}, {"by": "test"})
    path = save_assets(tiny_model, assets)
    assert path == clean_env / "assets" / f"tiny-{'0' * 12}" / "annotations.npz"
    assert path.parent == assets_dir(tiny_model)
    assert sorted(np.load(path).files) == sorted([
        "landmark_sigma", "landmark_sigma_hidden", "landmark_triangle", "landmark_vertices", "landmark_weights",
        "left_eye_bary", "left_eye_triangles", "part_labels", "source"])
    assert [p.name for p in path.parent.iterdir()] == ["annotations.npz"]  # no temporary file left
    back = load_assets(tiny_model)
    np.testing.assert_array_equal(back.part_labels, labels)
    for name, value in assets.landmarks.arrays().items():
        np.testing.assert_array_equal(back.landmarks.arrays()[name], value)
    np.testing.assert_array_equal(back.eye_openings["left_eye"].bary, eye.bary)
    assert back.source == {"by": "test", "model_checksum": tiny_model.checksum}
    only_landmarks = save_assets(tiny_model, FaceModelAssets(landmarks=tiny_correspondence()))
    assert "part_labels" not in np.load(only_landmarks).files
    assert load_assets(tiny_model).part_labels is None


def test_invalid_assets_are_refused(clean_env: Path, tiny_model: FaceModel) -> None:
    with pytest.raises(ValueError, match="part labels"):
        save_assets(tiny_model, FaceModelAssets(np.array([0, 1, 2, 3, 8])))
    with pytest.raises(ValueError, match="landmark vertices must index"):
        save_assets(tiny_model, FaceModelAssets(landmarks=tiny_correspondence(((5, 0),))))
    with pytest.raises(ValueError, match="sum to 1"):
        Correspondence(np.array([[0, 1]]), np.array([[0.5, 0.6]], np.float32), np.ones(1, np.float32),
                       np.ones(1, np.float32), np.array([[0, 1, 4]]))
    assert not assets_dir(tiny_model).exists() or not any(assets_dir(tiny_model).iterdir())
    tiny_model.checksum = ""
    with pytest.raises(ValueError, match="checksum"):
        assets_dir(tiny_model)


def test_install_list_and_load_ict(clean_env: Path, ict_folder: Path, tmp_path: Path) -> None:
    dest = install_model("ict", ict_folder)
    assert dest == clean_env / "models" / "ict"
    assert sorted(p.name for p in dest.iterdir()) == [
        "LICENSE", "SOURCE.md", "ict_facekit_light.npz", "vertex_indices.json"]
    assert (dest / "LICENSE").read_bytes() == (ict_folder / "LICENSE").read_bytes()
    assert install_model("ict", ict_folder) == dest  # the same model again: a no-op

    entry, shipped = list_models()
    assert (entry.kind, entry.path, entry.checksum, entry.default) == ("ict", dest, ICT_SHA256, True)
    assert (shipped.path, shipped.default, shipped.annotated) == (packaged_models_dir() / "ict-facekit-light",
                                                                  False, True)
    assert entry.size == (ict_folder / "ict_facekit_light.npz").stat().st_size
    assert not entry.annotated and not entry.landmarks

    model = load_model("ict")
    assert model.num_vertices == 26719 and model.checksum == ICT_SHA256
    assert not model.has_parts
    labels = np.full(model.num_vertices, -1)
    labels[:9409] = 7
    save_assets(model, FaceModelAssets(labels, source={"part_labels": "test"}))
    assert list_models()[0].annotated
    again = load_model(str(dest))
    assert again.has_parts and again.assets.source == {"part_labels": "test", "model_checksum": ICT_SHA256}
    np.testing.assert_array_equal(again.assets.part_labels, labels)


def test_failed_install_leaves_nothing(clean_env: Path, ict_folder: Path, tmp_path: Path) -> None:
    no_licence = tmp_path / "no-licence"
    no_licence.mkdir()
    (no_licence / "ict_facekit_light.npz").symlink_to(ict_folder / "ict_facekit_light.npz")
    with pytest.raises(FileNotFoundError, match="LICENSE"):
        install_model("ict", no_licence, tmp_path / "models")
    broken = fake_model(tmp_path / "broken", "ict_facekit_light.npz", b"not an npz")
    (broken / "LICENSE").write_text("MIT")
    with pytest.raises(ValueError, match="not an ICT-FaceKit npz"):
        install_model("ict", broken, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []
    assert sorted(p.name for p in broken.iterdir()) == ["LICENSE", "ict_facekit_light.npz"]


def test_install_refuses_bad_arguments(clean_env: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model kind"):
        install_model("flame", tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        install_model("ict", tmp_path / "missing")
    with pytest.raises(ValueError, match="outside the source"):
        install_model("3ddfa_v3", tmp_path, tmp_path / "models")
